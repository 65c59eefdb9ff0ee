//! DNS, asked on a schedule by an async resolver (hickory): the names under `discovery`,
//! each standing for every node at its addresses, and the host names of `nodes`, followed
//! when they move. A failed, empty or NXDOMAIN answer keeps a name's last known set: a DNS
//! hiccup never empties the routing table. No runtime thread waits in `getaddrinfo`.

use crate::cluster::{Addresses, Planned};
use crate::config::{Config, DiscoveryConfig, NodeConfig};
use crate::telemetry::{Metrics, Resolution};
use hickory_resolver::TokioResolver;
use hickory_resolver::config::{LookupIpStrategy, NameServerConfigGroup, ResolverConfig};
use hickory_resolver::name_server::TokioConnectionProvider;
use std::collections::{BTreeSet, HashMap, HashSet};
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;
use tokio::task::JoinSet;
use tokio::time::Instant;

/// How often the host names of `nodes` are resolved again when no `discovery` entry sets a
/// shorter period.
const HOST_INTERVAL: Duration = Duration::from_secs(5);
/// A DNS message holds at most 65,535 bytes: about 4,090 A or 2,340 AAAA records. An
/// answer this close to that may have been cut (hickory takes a truncated TCP answer
/// silently), and a server that shuffles its records would hand out a different subset
/// each round: warned, so the operator splits the set over several names.
const NEAR_MESSAGE_LIMIT: (usize, usize) = (4000, 2300);
/// A resolution may take at most this long (and never longer than its name's interval).
const RESOLVE_TIMEOUT: Duration = Duration::from_secs(2);

/// What DNS said about every name healthgate follows, and when each is asked next.
pub struct Discovery {
    resolver: TokioResolver,
    metrics: Metrics,
    /// Each discovery name's last known addresses (kept through failed answers).
    known: HashMap<String, BTreeSet<IpAddr>>,
    /// Each discovery name's last outcome, so a change is logged once.
    outcomes: HashMap<String, String>,
    /// Each node host name's last known address.
    hosts: HashMap<String, IpAddr>,
    /// When each name (discovery or host) is asked next.
    due: HashMap<String, Instant>,
}

/// One answer: the name, and its addresses or why there are none.
type Answer = (String, Result<BTreeSet<IpAddr>, (Resolution, String)>);

impl Discovery {
    /// A resolver asking `config.resolver`, or the servers of `/etc/resolv.conf`.
    pub fn new(config: &Config, metrics: Metrics) -> Result<Discovery, String> {
        let (resolver_config, mut options) = match config.resolver {
            Some(server) => {
                let servers =
                    NameServerConfigGroup::from_ips_clear(&[server.ip()], server.port(), true);
                let config = ResolverConfig::from_parts(None, Vec::new(), servers);
                (config, Default::default())
            }
            None => hickory_resolver::system_conf::read_system_conf().map_err(|e| {
                format!("cannot read the system's DNS configuration ({e}); set `resolver`")
            })?,
        };
        // Every round asks again: a cached answer would hide a pod that moved.
        options.cache_size = 0;
        options.ip_strategy = LookupIpStrategy::Ipv4AndIpv6;
        options.timeout = shortest_interval(config).min(RESOLVE_TIMEOUT);
        options.attempts = 1;
        let resolver =
            TokioResolver::builder_with_config(resolver_config, TokioConnectionProvider::default())
                .with_options(options)
                .build();
        Ok(Discovery {
            resolver,
            metrics,
            known: HashMap::new(),
            outcomes: HashMap::new(),
            hosts: HashMap::new(),
            due: HashMap::new(),
        })
    }

    /// The same state with a resolver of its own: for the runtime that uses it from now on
    /// (a resolver keeps connections on the runtime it was first used on).
    pub fn renewed(self, config: &Config) -> Result<Discovery, String> {
        let fresh = Discovery::new(config, self.metrics.clone())?;
        Ok(Discovery {
            resolver: fresh.resolver,
            ..self
        })
    }

    /// `config`'s own nodes at their addresses, every host name asked now (all at once).
    /// Fails on the first that does not resolve (a start or reload stops there).
    pub async fn configured(&mut self, config: &Config) -> Result<Vec<Planned>, String> {
        let mut asking = JoinSet::new();
        let hosts: BTreeSet<String> = followed(config)
            .filter(|(_, _, is_discovery)| !is_discovery)
            .map(|(name, _, _)| name)
            .collect();
        for host in hosts {
            let resolver = self.resolver.clone();
            asking.spawn(async move { ask(&resolver, host).await });
        }
        let mut failed = HashMap::new();
        while let Some(done) = asking.join_next().await {
            let Ok((host, answer)) = done else {
                continue;
            };
            match answer {
                Ok(_) => {
                    self.host_resolved((host, answer));
                }
                Err((_, why)) => {
                    failed.insert(host, why);
                }
            }
        }
        if let Some((index, node)) = config
            .nodes
            .iter()
            .enumerate()
            .find(|(_, n)| failed.contains_key(&n.host))
        {
            let why = failed.get(&node.host).map_or("", String::as_str);
            return Err(format!(
                "nodes[{index}] ({}): cannot resolve {:?}: {why}",
                node.name, node.host
            ));
        }
        Ok(self.planned_configured(config, |_| None))
    }

    /// When the next name is due; `None` if nothing is followed.
    pub fn next_due(&self, config: &Config) -> Option<Instant> {
        followed(config)
            .map(|(name, _, _)| self.due.get(&name).copied().unwrap_or_else(Instant::now))
            .min()
    }

    /// Forget what `config` no longer names (a reload): its series go too.
    pub fn retain(&mut self, config: &Config) {
        let names: HashSet<String> = followed(config).map(|(name, _, _)| name).collect();
        for gone in self.known.keys().filter(|n| !names.contains(*n)) {
            self.metrics.forget_discovery(gone);
        }
        self.known.retain(|name, _| names.contains(name));
        self.outcomes.retain(|name, _| names.contains(name));
        self.hosts.retain(|name, _| names.contains(name));
        self.due.retain(|name, _| names.contains(name));
    }

    /// Ask DNS for every name that is due, all at once; whether any node set changed.
    pub async fn refresh(&mut self, config: &Config) -> bool {
        let now = Instant::now();
        let mut asking = JoinSet::new();
        for (name, interval, is_discovery) in followed(config) {
            if self.due.get(&name).is_some_and(|due| *due > now) {
                continue;
            }
            self.due.insert(name.clone(), now + interval);
            let resolver = self.resolver.clone();
            asking.spawn(async move { (is_discovery, ask(&resolver, name).await) });
        }
        let mut changed = false;
        while let Some(done) = asking.join_next().await {
            let Ok((is_discovery, answer)) = done else {
                continue;
            };
            changed |= match is_discovery {
                true => self.discovered(config, answer),
                false => self.host_resolved(answer),
            };
        }
        changed
    }

    /// Record a discovery name's answer; whether its node set changed.
    fn discovered(&mut self, config: &Config, (name, answer): Answer) -> bool {
        let cap = config
            .discovery
            .iter()
            .filter(|d| d.dns == name)
            .map(|d| d.max_nodes)
            .max()
            .unwrap_or(usize::MAX);
        let (result, outcome, addresses) = match answer {
            Ok(mut addresses) => {
                let v6 = addresses.iter().filter(|a| a.is_ipv6()).count();
                let v4 = addresses.len() - v6;
                if (v4 >= NEAR_MESSAGE_LIMIT.0 || v6 >= NEAR_MESSAGE_LIMIT.1)
                    && self.known.get(&name).map(BTreeSet::len) != Some(addresses.len())
                {
                    log::warn!(
                        "discovery {name}: {} addresses in one answer, near what one DNS message holds; \
                         some may be cut off: split the nodes over several names",
                        addresses.len()
                    );
                }
                if addresses.len() > cap {
                    log::warn!(
                        "discovery {name}: {} addresses, more than max_nodes {cap}; the first {cap} are used",
                        addresses.len()
                    );
                    addresses = addresses.into_iter().take(cap).collect();
                }
                let outcome = format!("{} address(es)", addresses.len());
                (Resolution::Success, outcome, Some(addresses))
            }
            Err((result, why)) => (result, why, None),
        };
        self.metrics.count_resolution(&name, result);
        let previous = self.known.get(&name);
        let changed = addresses.as_ref().is_some_and(|a| previous != Some(a));
        if self.outcomes.get(&name) != Some(&outcome) || changed {
            match &addresses {
                Some(a) => log::info!("discovery {name}: {}", describe(previous, a)),
                None => log::warn!(
                    "discovery {name}: {outcome}; the last known {} node(s) stay",
                    previous.map_or(0, BTreeSet::len)
                ),
            }
            self.outcomes.insert(name.clone(), outcome);
        }
        let known = match addresses {
            Some(addresses) => self
                .known
                .entry(name.clone())
                .insert_entry(addresses)
                .into_mut(),
            None => self.known.entry(name.clone()).or_default(),
        };
        self.metrics.set_discovered(&name, known.len());
        changed
    }

    /// Record a node host name's answer; whether its address changed. One address is used
    /// (the one it had, while DNS still lists it); a failed answer keeps the last.
    fn host_resolved(&mut self, (name, answer): Answer) -> bool {
        let addresses = match answer {
            Ok(addresses) => addresses,
            Err((_, why)) => {
                log::debug!("node host {name}: {why}; its last address stays");
                return false;
            }
        };
        let current = self.hosts.get(&name).copied();
        let next = match current {
            Some(ip) if addresses.contains(&ip) => ip,
            _ => match addresses.iter().next() {
                Some(ip) => *ip,
                None => return false,
            },
        };
        if current == Some(next) {
            return false;
        }
        if let Some(old) = current {
            log::info!("node host {name} moved from {old} to {next}");
        }
        self.hosts.insert(name, next);
        current.is_some()
    }

    /// Every node to run with: the configured ones at their addresses (a host name at its
    /// last resolved address, else at `current`'s), and one per discovered address. A
    /// discovered node whose name or traffic address a configured node has is left out.
    pub fn planned(
        &self,
        config: &Config,
        current: impl Fn(&str) -> Option<Addresses>,
    ) -> Vec<Planned> {
        let mut out = self.planned_configured(config, current);
        out.extend(self.discovered_nodes(config, &out));
        out
    }

    /// The configured part of [`Discovery::planned`].
    fn planned_configured(
        &self,
        config: &Config,
        current: impl Fn(&str) -> Option<Addresses>,
    ) -> Vec<Planned> {
        let mut out: Vec<Planned> = Vec::new();
        for (index, node) in config.nodes.iter().enumerate() {
            let ip = node
                .host
                .parse::<IpAddr>()
                .ok()
                .or_else(|| self.hosts.get(&node.host).copied());
            let addresses = match ip {
                Some(ip) => (at(ip, node.traffic_port), at(ip, node.health_port)),
                None => match current(&node.name) {
                    Some(addresses) => addresses,
                    None => continue,
                },
            };
            out.push(Planned {
                node: node.clone(),
                addresses,
                origin: format!("nodes[{index}]"),
            });
        }
        out
    }

    /// The discovered part of [`Discovery::planned`], given the configured part.
    pub fn discovered_nodes(&self, config: &Config, configured: &[Planned]) -> Vec<Planned> {
        let mut names: HashSet<String> = configured.iter().map(|p| p.node.name.clone()).collect();
        let mut traffic: HashSet<SocketAddr> = configured.iter().map(|p| p.addresses.0).collect();
        let mut out = Vec::new();
        for (index, entry) in config.discovery.iter().enumerate() {
            for ip in self.known.get(&entry.dns).into_iter().flatten() {
                let node = entry.node(*ip);
                let addresses = (at(*ip, entry.traffic_port), at(*ip, entry.health_port));
                if !traffic.insert(addresses.0) || !names.insert(node.name.clone()) {
                    continue;
                }
                out.push(discovered(index, entry, node, addresses));
            }
        }
        out
    }
}

fn discovered(
    index: usize,
    entry: &DiscoveryConfig,
    node: NodeConfig,
    addresses: Addresses,
) -> Planned {
    Planned {
        node,
        addresses,
        origin: format!("discovery[{index}] ({})", entry.dns),
    }
}

fn at(ip: IpAddr, port: u16) -> SocketAddr {
    SocketAddr::new(ip, port)
}

/// Every name followed: (name, interval, whether it is a discovery name). A node host name
/// that is an IP address is not followed.
fn followed(config: &Config) -> impl Iterator<Item = (String, Duration, bool)> + '_ {
    let host_interval = shortest_interval(config);
    let names = config
        .discovery
        .iter()
        .map(|d| (d.dns.clone(), d.interval, true));
    let hosts = config
        .nodes
        .iter()
        .filter(|n| n.host.parse::<IpAddr>().is_err())
        .map(move |n| (n.host.clone(), host_interval, false));
    names.chain(hosts)
}

fn shortest_interval(config: &Config) -> Duration {
    config
        .discovery
        .iter()
        .map(|d| d.interval)
        .min()
        .unwrap_or(HOST_INTERVAL)
}

/// One lookup of `name`'s A and AAAA records. A name with a dot is asked as written (no
/// search domains); a single label goes through the search list, as `/etc/resolv.conf`
/// would have it.
async fn ask(resolver: &TokioResolver, name: String) -> Answer {
    let query = match name.contains('.') {
        true => format!("{name}."),
        false => name.clone(),
    };
    let answer = match resolver.lookup_ip(query.as_str()).await {
        Ok(lookup) => {
            let addresses: BTreeSet<IpAddr> = lookup.iter().collect();
            match addresses.is_empty() {
                true => Err((Resolution::Empty, "no address in the answer".to_string())),
                false => Ok(addresses),
            }
        }
        Err(e) => Err(classify(&e)),
    };
    (name, answer)
}

/// Why a lookup gave no address. hickory reports NXDOMAIN, NODATA and SERVFAIL alike as
/// "no records found": the response code tells them apart.
fn classify(e: &hickory_resolver::ResolveError) -> (Resolution, String) {
    use hickory_resolver::proto::ProtoErrorKind;
    use hickory_resolver::proto::op::ResponseCode;
    let code = e.proto().and_then(|p| match p.kind() {
        ProtoErrorKind::NoRecordsFound { response_code, .. } => Some(*response_code),
        _ => None,
    });
    match code {
        Some(ResponseCode::NXDomain) => (Resolution::NxDomain, "NXDOMAIN".to_string()),
        Some(ResponseCode::NoError) => (Resolution::Empty, "no address in the answer".to_string()),
        Some(code) => (Resolution::Error, format!("the DNS server answered {code}")),
        None => (Resolution::Error, format!("resolution failed: {e}")),
    }
}

/// `3 node(s): +127.0.0.4 -127.0.0.2`.
fn describe(previous: Option<&BTreeSet<IpAddr>>, now: &BTreeSet<IpAddr>) -> String {
    let empty = BTreeSet::new();
    let previous = previous.unwrap_or(&empty);
    let mut text = format!("{} node(s)", now.len());
    let added: Vec<String> = now.difference(previous).map(ToString::to_string).collect();
    let removed: Vec<String> = previous.difference(now).map(ToString::to_string).collect();
    // A long list is summed up: 5000 addresses do not belong in one log line.
    for (sign, list) in [("+", added), ("-", removed)] {
        match list.len() {
            0 => {}
            1..=8 => text.push_str(&format!(" {sign}{}", list.join(&format!(" {sign}")))),
            n => text.push_str(&format!(" {sign}{n} addresses")),
        }
    }
    text
}
