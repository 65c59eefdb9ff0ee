//! Running with a new node set (a reload, or DNS changed a name's addresses). Nodes are
//! matched by name: a node whose host, addresses and scheme are unchanged keeps its state,
//! counters and pooled connections (a new weight applies at once); a new or moved node
//! starts in `starting`; a removed node leaves the routing table at once while requests in
//! flight to it finish. It is all or nothing: it either applies whole or changes nothing.

use super::member::{Member, MemberSet};
use super::node_tls::Connectors;
use super::{Addresses, Cluster, ClusterError, Judgement};
use crate::config::{Config, NodeConfig};
use crate::health::ProbeSettings;
use crate::routing::NodeTls;
use std::collections::{HashMap, HashSet};
use std::sync::Arc;

/// What a reload changed.
#[derive(Debug, Default)]
pub struct ReloadSummary {
    /// Ids of the nodes added (their pollers must start).
    pub added: Vec<usize>,
    /// Ids of the nodes removed (their pollers must stop).
    pub removed: Vec<usize>,
    /// Nodes kept with their state.
    pub kept: usize,
    /// Of those, nodes whose weight changed.
    pub reweighted: usize,
}

impl ReloadSummary {
    /// One line for the log.
    pub fn describe(&self) -> String {
        format!(
            "{} node(s) kept ({} reweighted), {} added, {} removed",
            self.kept,
            self.reweighted,
            self.added.len(),
            self.removed.len()
        )
    }
}

/// A node to run with and the addresses it resolved to: a configured node, or one that
/// discovery found.
#[derive(Debug, Clone)]
pub struct Planned {
    /// The node.
    pub node: NodeConfig,
    /// Its traffic and health addresses.
    pub addresses: Addresses,
    /// Where it comes from, for messages: `nodes[2]`, `discovery[0]`.
    pub origin: String,
}

/// Why the cluster is given a node set.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Occasion {
    /// The process starts: no table is published yet.
    Start,
    /// A reload: TLS warnings are logged again.
    Reload,
    /// DNS changed a node set: quietly.
    Discovery,
}

/// `config`'s own nodes at their addresses. Blocking: a host name is resolved by the
/// system's resolver. Fails on the first that does not resolve.
pub fn resolve_configured(config: &Config) -> Result<Vec<Planned>, ClusterError> {
    let mut planned = Vec::with_capacity(config.nodes.len());
    for (index, node) in config.nodes.iter().enumerate() {
        planned.push(Planned {
            node: node.clone(),
            addresses: super::resolve(index, node)?,
            origin: format!("nodes[{index}]"),
        });
    }
    Ok(planned)
}

impl Cluster {
    /// The addresses of the member named `name`, if there is one.
    pub fn addresses_of(&self, name: &str) -> Option<Addresses> {
        let members = self.members.load();
        let b = &members.named(name)?.backend;
        Some((b.traffic_addr, b.health_addr))
    }

    /// Run with exactly the `planned` nodes, under `config`'s settings. A node whose name,
    /// addresses and scheme stay keeps its member (state, counters, pooled connections);
    /// any other is new and starts in `starting`; a member not planned leaves the table at
    /// once while its requests in flight finish. `occasion` says why (see [`Occasion`]).
    pub fn run_with(
        &self,
        config: &Config,
        planned: Vec<Planned>,
        occasion: Occasion,
    ) -> Result<ReloadSummary, ClusterError> {
        let _one_at_a_time = self.one_change_at_a_time();
        let current = self.members.load_full();
        let mut by_name: HashMap<&str, &Arc<Member>> = current
            .list
            .iter()
            .map(|m| (m.backend.name.as_str(), m))
            .collect();
        // Which entries keep their member, and which need a new one. Building TLS is the
        // only step that can fail here, and nothing has changed until the plan is whole.
        // TLS connectors are built anew (the CA and client files are read again).
        let mut plan = Vec::with_capacity(planned.len());
        let mut connectors = Connectors::default();
        for Planned {
            node,
            addresses,
            origin,
        } in planned
        {
            let previous = by_name.remove(node.name.as_str());
            let tls = connectors.for_node(&origin, &node)?;
            let kept = previous.filter(|m| {
                let b = &m.backend;
                b.host == node.host
                    && (b.traffic_addr, b.health_addr) == addresses
                    && b.tls().is_some() == tls.is_some()
            });
            plan.push(match kept {
                Some(member) => Entry::Kept(member.clone(), node.weight, tls),
                None => Entry::New {
                    // A moved node keeps its drain: the operator drained the name.
                    drained: previous.is_some_and(|m| m.is_drained()),
                    node: Box::new(node),
                    tls,
                    addresses,
                },
            });
        }
        if occasion != Occasion::Discovery {
            for warning in &connectors.warnings {
                log::warn!("{warning}");
            }
        }
        // From here on nothing can fail: apply.
        let mut summary = ReloadSummary::default();
        let mut list = Vec::with_capacity(plan.len());
        let mut reweigh = Vec::new();
        for entry in plan {
            match entry {
                Entry::Kept(member, weight, tls) => {
                    member.backend.set_tls(tls);
                    if member.backend.weight() != weight {
                        reweigh.push((member.clone(), weight));
                    }
                    summary.kept += 1;
                    list.push(member);
                }
                Entry::New {
                    node,
                    tls,
                    addresses,
                    drained,
                } => {
                    let backend = self.new_backend(&node, addresses, tls);
                    let member = Arc::new(Member::new(backend, drained));
                    summary.added.push(member.backend.id);
                    list.push(member);
                }
            }
        }
        // Whatever was not claimed by name, or moved, is gone.
        let listed: HashSet<usize> = list.iter().map(|m| m.backend.id).collect();
        let mut retired = self
            .retired
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        retired.retain(|b| b.in_flight() > 0);
        for m in &current.list {
            if !listed.contains(&m.backend.id) {
                log::info!(
                    "node={} removed by reload; {} request(s) in flight to it finish",
                    m.backend.name,
                    m.backend.in_flight()
                );
                summary.removed.push(m.backend.id);
                retired.push(m.backend.clone());
            }
        }
        drop(retired);
        summary.reweighted = reweigh.len();
        for (member, weight) in reweigh {
            member.backend.set_weight(weight);
        }
        self.judgement.store(Arc::new(Judgement::of(config)));
        self.probes.store(Arc::new(ProbeSettings::of(config)));
        self.router.set_policy(
            config.balancing.algorithm,
            config.balancing.slow_start,
            &config.capps,
        );
        self.members.store(Arc::new(MemberSet::new(list)));
        // At start the first table comes with the first verdicts (generation 0 until then).
        if occasion != Occasion::Start {
            self.rebuild_table(true);
        }
        Ok(summary)
    }
}

/// One entry of the new node list: a member kept (with its new weight and TLS), or a node
/// to add at its resolved addresses (with its TLS, and whether it starts drained).
enum Entry {
    Kept(Arc<Member>, u32, Option<Arc<NodeTls>>),
    New {
        node: Box<NodeConfig>,
        tls: Option<Arc<NodeTls>>,
        addresses: Addresses,
        drained: bool,
    },
}

/// The keys `old` and `new` differ in that a reload cannot apply: they take effect at the
/// next start (or `--upgrade`).
pub fn restart_only_changes(old: &Config, new: &Config) -> Vec<&'static str> {
    let mut keys = Vec::new();
    let mut differs = |key: &'static str, changed: bool| {
        if changed {
            keys.push(key);
        }
    };
    // A listener's certificate files are read again on reload; its address and whether it
    // speaks TLS are not.
    let shape = |c: &Config| -> Vec<_> {
        c.listen
            .iter()
            .map(|l| (l.address, l.tls.is_some()))
            .collect()
    };
    differs("listen", shape(old) != shape(new));
    differs("admin", old.admin != new.admin);
    differs("admin_token", old.admin_token != new.admin_token);
    differs("threads", old.threads != new.threads);
    differs(
        "balancing.retries",
        old.balancing.retries != new.balancing.retries,
    );
    differs("log", old.log != new.log);
    differs("shutdown", old.shutdown != new.shutdown);
    differs("timeouts", old.timeouts != new.timeouts);
    differs("limits", old.limits != new.limits);
    differs(
        "outlier_detection",
        old.outlier_detection != new.outlier_detection,
    );
    differs("upgrade_socket", old.upgrade_socket != new.upgrade_socket);
    differs("drain_file", old.drain_file != new.drain_file);
    keys
}
