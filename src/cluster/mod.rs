//! The cluster: every configured node's health record plus the router. Probes and the proxy
//! report evidence here; a flip of a node's state is logged, counted, and rebuilds the
//! routing table — nothing else does.

mod member;
mod reload;
mod report;

use crate::admin::{Metrics, Probe};
use crate::config::{Config, NodeConfig, NoneReadyPolicy, TimeoutsConfig};
use crate::health::{Flip, NodeState, Observation, ProbeOutcome, ProbeSettings, Thresholds};
use crate::outlier::Outliers;
use crate::routing::{Backend, Members, Router, RoutingTable};
use arc_swap::ArcSwap;
use member::{Member, MemberSet};
pub use reload::{ReloadSummary, restart_only_changes};
pub use report::{LastProbe, NodeReport};
use std::collections::HashSet;
use std::net::{SocketAddr, ToSocketAddrs};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant, SystemTime};

/// Why the cluster could not be built.
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    /// A node's host did not resolve to an address.
    #[error("nodes[{index}] ({name}): cannot resolve {host:?}: {reason}")]
    Resolve {
        /// Index in the node list.
        index: usize,
        /// Node name.
        name: String,
        /// Host as configured.
        host: String,
        /// Resolver message.
        reason: String,
    },
    /// The metrics registry rejected a metric (a bug, not an input problem).
    #[error("metrics: {0}")]
    Metrics(#[from] prometheus::Error),
}

/// The settings evidence is judged by (a reload may change them).
#[derive(Clone, Debug)]
struct Judgement {
    thresholds: Thresholds,
    when_none_ready: NoneReadyPolicy,
}

impl Judgement {
    fn of(config: &Config) -> Judgement {
        Judgement {
            thresholds: Thresholds {
                success: config.readiness.success_threshold,
                failure: config.readiness.failure_threshold,
                liveness_failure: config.liveness.failure_threshold,
            },
            when_none_ready: config.balancing.when_none_ready,
        }
    }
}

/// Every configured node's health and the routing table built from it.
pub struct Cluster {
    members: ArcSwap<MemberSet>,
    /// The next node id (ids are never reused).
    next_id: AtomicUsize,
    router: Router,
    judgement: ArcSwap<Judgement>,
    probes: ArcSwap<ProbeSettings>,
    /// Peers of nodes added by a reload get the timeouts the proxy started with.
    timeouts: TimeoutsConfig,
    outliers: Option<Outliers>,
    metrics: Metrics,
    /// One reload at a time.
    reloading: Mutex<()>,
    /// Nodes removed by a reload while requests were in flight to them.
    retired: Mutex<Vec<Arc<Backend>>>,
    /// When probing started (the health service sets it), and how long the nodes' first
    /// verdicts may take from then.
    probing_since: OnceLock<Instant>,
    warm_up: Duration,
}

impl Cluster {
    /// Resolve every node and build the cluster; every node starts in `starting`.
    pub fn new(config: &Config, metrics: Metrics) -> Result<Cluster, ClusterError> {
        let cluster = Cluster {
            members: ArcSwap::from_pointee(MemberSet::default()),
            next_id: AtomicUsize::new(0),
            router: Router::new(config.balancing.algorithm)
                .with_slow_start(config.balancing.slow_start),
            judgement: ArcSwap::from_pointee(Judgement::of(config)),
            probes: ArcSwap::from_pointee(ProbeSettings::of(config)),
            timeouts: config.timeouts,
            outliers: config.outlier_detection.map(Outliers::new),
            metrics,
            reloading: Mutex::new(()),
            retired: Mutex::new(Vec::new()),
            probing_since: OnceLock::new(),
            warm_up: warm_up(config),
        };
        let mut list = Vec::with_capacity(config.nodes.len());
        for (index, node) in config.nodes.iter().enumerate() {
            list.push(Arc::new(Member::new(cluster.new_backend(index, node)?)));
        }
        cluster.members.store(Arc::new(MemberSet::new(list)));
        Ok(cluster)
    }

    /// Resolve `node` (entry `index` of the node list) and build its backend with a new id.
    fn new_backend(&self, index: usize, node: &NodeConfig) -> Result<Arc<Backend>, ClusterError> {
        let (traffic, health) = resolve(index, node)?;
        let series = self.metrics.register_node(&node.name);
        let mut backend = Backend::new(
            self.next_id.fetch_add(1, Ordering::Relaxed),
            node.name.clone(),
            node.host.clone(),
            traffic,
            health,
            node.weight,
            series,
        );
        backend.peer.options.connection_timeout = Some(self.timeouts.connect);
        backend.peer.options.read_timeout = Some(self.timeouts.read);
        Ok(Arc::new(backend))
    }

    /// The ids of the configured nodes, in configuration order.
    pub fn node_ids(&self) -> Vec<usize> {
        self.members
            .load()
            .list
            .iter()
            .map(|m| m.backend.id)
            .collect()
    }

    /// Node `id`'s backend, unless a reload removed it.
    pub fn backend(&self, id: usize) -> Option<Arc<Backend>> {
        self.member(id).map(|m| m.backend.clone())
    }

    /// The probe settings now in force.
    pub fn probe_settings(&self) -> Arc<ProbeSettings> {
        self.probes.load_full()
    }

    /// Probing has started: the first verdicts are due within the warm-up time. (Not at
    /// build time: with `--upgrade` the process waits for its listeners before it probes.)
    pub fn probing_started(&self) {
        let _ = self.probing_since.set(Instant::now());
    }

    /// Whether probing started recently (or not yet) and some node has had no verdict.
    pub fn awaiting_first_verdicts(&self) -> bool {
        self.probing_since
            .get()
            .is_none_or(|since| since.elapsed() < self.warm_up)
            && self
                .members
                .load()
                .list
                .iter()
                .any(|m| m.state() == NodeState::Starting)
    }

    /// Resolves once a node is routable, every node has had a verdict, or the warm-up time
    /// is over.
    pub async fn first_verdicts(&self) {
        while self.table().is_empty() && self.awaiting_first_verdicts() {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    /// Requests being proxied right now, to any node, removed ones included.
    pub fn requests_in_flight(&self) -> usize {
        let current: usize = self
            .members
            .load()
            .list
            .iter()
            .map(|m| m.backend.in_flight())
            .sum();
        let retired: usize = self
            .retired
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .iter()
            .map(|b| b.in_flight())
            .sum();
        current + retired
    }

    fn member(&self, id: usize) -> Option<Arc<Member>> {
        self.members.load().get(id).cloned()
    }

    /// The metrics this cluster reports into.
    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    /// The current routing table (one lock-free load).
    pub fn table(&self) -> arc_swap::Guard<Arc<RoutingTable>> {
        self.router.load()
    }

    /// The node's current state (`None`: removed by a reload).
    pub fn state(&self, id: usize) -> Option<NodeState> {
        self.member(id).map(|m| m.state())
    }

    /// Whether the node's next readiness round must also connect to its traffic port.
    pub fn needs_traffic_check(&self, id: usize) -> bool {
        self.member(id)
            .is_some_and(|m| m.lock().machine.needs_traffic_check())
    }

    /// Resolves when someone asked for an immediate readiness round of this node.
    pub async fn recheck_requested(&self, id: usize) {
        match self.member(id) {
            Some(m) => m.recheck.notified().await,
            None => std::future::pending().await,
        }
    }

    /// A readiness round: `/healthz`, plus the traffic-port connect if the round made one.
    pub fn record_readiness(
        &self,
        id: usize,
        healthz: &ProbeOutcome,
        traffic: Option<&ProbeOutcome>,
    ) {
        let Some(member) = self.member(id) else {
            return;
        };
        let series = &member.backend.series;
        series.observe_probe(
            Probe::Readiness,
            healthz.result,
            healthz.elapsed.as_secs_f64(),
        );
        if let Some(t) = traffic {
            series.observe_probe(Probe::Tcp, t.result, t.elapsed.as_secs_f64());
        }
        // The status code is the truth; faulty CApps are whatever the last answer listed.
        if healthz.status.is_some() {
            series.set_faulty_capps(healthz.faulty_capps.len());
        }
        let observation = Observation::Readiness {
            healthz_ok: healthz.passed(),
            traffic_ok: traffic.map(ProbeOutcome::passed),
        };
        let reason = traffic
            .filter(|t| !t.passed())
            .or((!healthz.passed()).then_some(healthz))
            .map(|o| o.reason.clone());
        let evidence = Evidence {
            observation,
            reason,
            capps: healthz.status.map(|_| healthz.faulty_capps.clone()),
            probes: (Probe::Readiness, healthz, traffic),
        };
        self.observe(&member, evidence);
    }

    /// A liveness round: `/liveness`, plus the traffic-port connect if configured. A failed
    /// connect is evidence on its own and evicts at once.
    pub fn record_liveness(
        &self,
        id: usize,
        liveness: &ProbeOutcome,
        traffic: Option<&ProbeOutcome>,
    ) {
        let Some(member) = self.member(id) else {
            return;
        };
        let series = &member.backend.series;
        series.observe_probe(
            Probe::Liveness,
            liveness.result,
            liveness.elapsed.as_secs_f64(),
        );
        if let Some(t) = traffic {
            series.observe_probe(Probe::Tcp, t.result, t.elapsed.as_secs_f64());
        }
        let (observation, reason) = match traffic.filter(|t| !t.passed()) {
            Some(t) => (Observation::TrafficFailed, Some(t.reason.clone())),
            None => (
                Observation::Liveness(liveness.passed()),
                (!liveness.passed()).then(|| liveness.reason.clone()),
            ),
        };
        let evidence = Evidence {
            observation,
            reason,
            capps: None,
            probes: (Probe::Liveness, liveness, traffic),
        };
        self.observe(&member, evidence);
    }

    /// Live traffic could not use the node (connect failed, or a pooled connection broke):
    /// evict at once and ask its poller to verify right away.
    pub fn traffic_failed(&self, id: usize, reason: String) {
        let Some(member) = self.member(id) else {
            return;
        };
        member.backend.series.count_connect_failure();
        let flip = {
            let mut h = member.lock();
            h.last_error = Some(reason.clone());
            self.apply(&member, &mut h, Observation::TrafficFailed, Some(&reason))
        };
        if flip.is_some() {
            self.rebuild_table(false);
        }
        member.recheck.notify_one();
    }

    /// Drain (`true`) or undrain a node by name: a drained node leaves the routing table at
    /// once, whatever its health; requests in flight to it finish. `None` if no such node.
    pub fn set_drained(&self, name: &str, drained: bool) -> Option<()> {
        let members = self.members.load();
        let member = members.list.iter().find(|m| m.backend.name == name)?;
        member
            .drained
            .store(drained, std::sync::atomic::Ordering::Release);
        member.backend.series.set_drained(drained);
        self.rebuild_table(false);
        Some(())
    }

    /// A live-traffic answer from node `id` (`None`: none came): feeds outlier detection,
    /// which may eject the node for a while.
    pub fn record_answer(self: &Arc<Self>, id: usize, status: Option<u16>) {
        let Some(outliers) = &self.outliers else {
            return;
        };
        let members = self.members.load();
        let Some(member) = members.get(id) else {
            return;
        };
        let failed = status.is_none_or(|s| s >= 500);
        let everyone = || members.list.iter().map(|m| &m.outlier);
        let Some(length) = outliers.record(&member.outlier, failed, everyone) else {
            return;
        };
        let backend = member.backend.clone();
        backend.series.record_ejection();
        log::warn!(
            "node={} ejected for {length:?} by outlier detection: failed answers in a row (last: {})",
            backend.name,
            status.map_or_else(|| "no answer".to_string(), |s| s.to_string())
        );
        self.rebuild_table(false);
        let cluster = self.clone();
        tokio::spawn(async move {
            tokio::time::sleep(length).await;
            backend.series.end_ejection();
            log::info!("node={} ejection over", backend.name);
            cluster.rebuild_table(false);
        });
    }

    /// Record a probe round's evidence and outcomes, all under the node's lock, and
    /// rebuild the table if the node flipped.
    fn observe(&self, member: &Member, evidence: Evidence<'_>) {
        let flip = {
            let mut h = member.lock();
            let (probe, outcome, traffic) = evidence.probes;
            h.last_probes[probe as usize] = Some(LastProbe::of(outcome));
            if let Some(t) = traffic {
                h.last_probes[Probe::Tcp as usize] = Some(LastProbe::of(t));
            }
            if let Some(capps) = evidence.capps {
                h.faulty_capps = capps;
            }
            if evidence.reason.is_some() {
                h.last_error = evidence.reason.clone();
            }
            self.apply(
                member,
                &mut h,
                evidence.observation,
                evidence.reason.as_deref(),
            )
        };
        // Any flip may change the members (under `any_alive` a not-ready node may be
        // routable); `publish` makes no new table when they did not change.
        if flip.is_some() {
            self.rebuild_table(false);
        }
    }

    /// Feed the state machine (under the node's lock, so concurrent flips cannot leave
    /// gauges out of order); log and count a flip.
    fn apply(
        &self,
        member: &Member,
        h: &mut member::NodeHealth,
        observation: Observation,
        reason: Option<&str>,
    ) -> Option<Flip> {
        let flip = h
            .machine
            .observe(observation, &self.judgement.load().thresholds)?;
        h.since = SystemTime::now();
        // Slow start is for readmission; at start-up every node starts together.
        if flip.to == NodeState::Ready && flip.from != NodeState::Starting {
            member.backend.begin_ramp();
        }
        if flip.to == NodeState::Ready {
            h.last_error = None;
        }
        member.set_state(flip.to);
        let reason = reason.unwrap_or(match flip.to {
            NodeState::Ready => "readiness passed and traffic port accepts",
            NodeState::NotReady => "alive again; readiness not yet passed",
            _ => "no reason recorded",
        });
        log::info!(
            "node={} from={} to={} reason={reason:?}",
            member.backend.name,
            flip.from,
            flip.to
        );
        member.backend.series.record_transition(flip.to);
        Some(flip)
    }

    /// The nodes to route to now: the ready ones; under `any_alive`, when none is ready,
    /// the alive but not ready ones.
    fn members(&self) -> Members {
        let members = self.members.load();
        let in_state = |state: NodeState| -> Vec<Arc<Backend>> {
            members
                .list
                .iter()
                .filter(|m| m.state() == state && !m.is_drained())
                .filter(|m| {
                    !self
                        .outliers
                        .as_ref()
                        .is_some_and(|o| o.is_ejected(&m.outlier))
                })
                .map(|m| m.backend.clone())
                .collect()
        };
        let ready = in_state(NodeState::Ready);
        if ready.is_empty() && self.judgement.load().when_none_ready == NoneReadyPolicy::AnyAlive {
            let alive = in_state(NodeState::NotReady);
            if !alive.is_empty() {
                return Members {
                    nodes: alive,
                    fallback: true,
                };
            }
        }
        Members::ready(ready)
    }

    /// Publish a new table of the nodes to route to now (`force`: even if they are the
    /// ones already published, because a weight or the policy changed).
    fn rebuild_table(&self, force: bool) {
        self.router.publish(
            force,
            || self.members(),
            |previous, table| {
                let routed: HashSet<usize> = table.nodes().iter().map(|b| b.id).collect();
                for m in &self.members.load().list {
                    m.backend.series.set_routed(routed.contains(&m.backend.id));
                }
                self.metrics.ready_backends.set(table.ready() as i64);
                self.metrics
                    .routing_table_generation
                    .set(table.generation() as i64);
                self.metrics
                    .routing_fallback
                    .set(i64::from(table.is_fallback()));
                if table.is_fallback() {
                    let names: Vec<&str> = table.nodes().iter().map(|b| b.name.as_str()).collect();
                    log::warn!(
                        "no node is ready: routing to {} alive but not ready node(s) ({}) under when_none_ready: any_alive",
                        names.len(),
                        names.join(", ")
                    );
                } else if previous.is_fallback() {
                    log::info!(
                        "routing to ready nodes again ({} ready); fallback ended",
                        table.ready()
                    );
                }
                log::debug!(
                    "routing table generation {} with {} node(s), {} ready",
                    table.generation(),
                    table.len(),
                    table.ready()
                );
            },
        );
    }
}

/// One probe round's findings about a node.
struct Evidence<'a> {
    observation: Observation,
    reason: Option<String>,
    /// The faulty CApps the readiness answer listed (`None`: no answer to read them from).
    capps: Option<Vec<String>>,
    /// The probe, its outcome and the traffic-port connect, kept for the status page.
    probes: (Probe, &'a ProbeOutcome, Option<&'a ProbeOutcome>),
}

/// Longest a request waits at start-up for the first verdicts.
const MAX_WARM_UP: Duration = Duration::from_secs(10);

/// How long the first verdicts may take: the initial delay, the start-up spread (at most a
/// period), enough readiness rounds to pass the threshold, and one timeout (capped at
/// [`MAX_WARM_UP`]).
fn warm_up(config: &Config) -> Duration {
    let r = &config.readiness;
    let rounds = r.success_threshold.saturating_add(1);
    (r.initial_delay + r.period.saturating_mul(rounds) + r.timeout).min(MAX_WARM_UP)
}

/// The traffic and health addresses of `node` (entry `index` of the node list).
fn resolve(index: usize, node: &NodeConfig) -> Result<(SocketAddr, SocketAddr), ClusterError> {
    let one = |port: u16| -> Result<SocketAddr, ClusterError> {
        (node.host.as_str(), port)
            .to_socket_addrs()
            .map_err(|e| e.to_string())
            .and_then(|mut addrs| addrs.next().ok_or_else(|| "no address".to_string()))
            .map_err(|reason| ClusterError::Resolve {
                index,
                name: node.name.clone(),
                host: node.host.clone(),
                reason,
            })
    };
    Ok((one(node.traffic_port)?, one(node.health_port)?))
}
