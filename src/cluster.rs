//! The cluster: every configured node's health record plus the router. Probes and the proxy
//! report evidence here; a flip of a node's state is logged, counted, and rebuilds the
//! routing table — nothing else does.

use crate::admin::{Metrics, Probe};
use crate::config::{Config, NoneReadyPolicy};
use crate::health::{
    Flip, HealthMachine, NodeState, Observation, ProbeOutcome, ProbeResult, Thresholds,
};
use crate::outlier::Outliers;
use crate::routing::{Backend, Members, Router, RoutingTable};
use std::net::{SocketAddr, ToSocketAddrs};
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime};
use tokio::sync::Notify;

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

/// The latest result of one kind of probe.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LastProbe {
    /// How it ended.
    pub result: ProbeResult,
    /// How long it took.
    pub elapsed: Duration,
    /// When it ended.
    pub at: SystemTime,
}

impl LastProbe {
    fn of(outcome: &ProbeOutcome) -> LastProbe {
        LastProbe {
            result: outcome.result,
            elapsed: outcome.elapsed,
            at: SystemTime::now(),
        }
    }
}

/// What is known about one node, for `/status` and the status page.
#[derive(Clone, Debug)]
pub struct NodeReport {
    /// Node name.
    pub name: String,
    /// Traffic address.
    pub address: SocketAddr,
    /// Health (internal API) address.
    pub health_address: SocketAddr,
    /// Current state.
    pub state: NodeState,
    /// When the node entered its current state.
    pub since: SystemTime,
    /// Faulty CApps from the last readiness answer.
    pub faulty_capps: Vec<String>,
    /// The most recent failure reason, if the last evidence was a failure.
    pub last_error: Option<String>,
    /// Weight under `weighted`.
    pub weight: u32,
    /// Requests in flight to the node.
    pub in_flight: usize,
    /// The latest readiness, liveness and TCP probe, indexed like [`Probe::ALL`].
    pub last_probes: [Option<LastProbe>; 3],
    /// Requests the node answered or failed, all status classes.
    pub requests: u64,
    /// Of those, 5xx answers and attempts that got no answer.
    pub errors: u64,
    /// Taken out of the routing table by the operator.
    pub drained: bool,
    /// How much longer outlier detection keeps the node out, if it does.
    pub ejected_for: Option<Duration>,
}

#[derive(Debug)]
struct NodeHealth {
    machine: HealthMachine,
    since: SystemTime,
    faulty_capps: Vec<String>,
    last_error: Option<String>,
    last_probes: [Option<LastProbe>; 3],
}

#[derive(Debug)]
struct Slot {
    health: Mutex<NodeHealth>,
    /// Mirror of the state for lock-free reads by table rebuilds.
    state: AtomicU8,
    /// Wakes the node's poller for an immediate readiness round (after a passive eviction).
    recheck: Notify,
    /// Taken out of the routing table by the operator, whatever its health.
    drained: AtomicBool,
}

/// Every node's health and the routing table built from it.
pub struct Cluster {
    backends: Box<[Arc<Backend>]>,
    slots: Box<[Slot]>,
    router: Router,
    thresholds: Thresholds,
    when_none_ready: NoneReadyPolicy,
    outliers: Option<Outliers>,
    metrics: Metrics,
}

impl Cluster {
    /// Resolve every node and build the cluster; every node starts in `starting`.
    pub fn new(config: &Config, metrics: Metrics) -> Result<Cluster, ClusterError> {
        let mut backends = Vec::with_capacity(config.nodes.len());
        for (index, node) in config.nodes.iter().enumerate() {
            let resolve = |port: u16| -> Result<SocketAddr, ClusterError> {
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
            let series = metrics.register_node(&node.name);
            let mut backend = Backend::new(
                index,
                node.name.clone(),
                node.host.clone(),
                resolve(node.traffic_port)?,
                resolve(node.health_port)?,
                node.weight,
                series,
            );
            backend.peer.options.connection_timeout = Some(config.timeouts.connect);
            backend.peer.options.read_timeout = Some(config.timeouts.read);
            backends.push(Arc::new(backend));
        }
        let now = SystemTime::now();
        let slots = backends
            .iter()
            .map(|_| Slot {
                health: Mutex::new(NodeHealth {
                    machine: HealthMachine::new(),
                    since: now,
                    faulty_capps: Vec::new(),
                    last_error: None,
                    last_probes: [None; 3],
                }),
                state: AtomicU8::new(NodeState::Starting.to_u8()),
                recheck: Notify::new(),
                drained: AtomicBool::new(false),
            })
            .collect();
        Ok(Cluster {
            backends: backends.into_boxed_slice(),
            slots,
            router: Router::new(config.balancing.algorithm)
                .with_slow_start(config.balancing.slow_start),
            thresholds: Thresholds {
                success: config.readiness.success_threshold,
                failure: config.readiness.failure_threshold,
                liveness_failure: config.liveness.failure_threshold,
            },
            when_none_ready: config.balancing.when_none_ready,
            outliers: config
                .outlier_detection
                .map(|o| Outliers::new(o, config.nodes.len())),
            metrics,
        })
    }

    /// Every configured node, indexed by id.
    pub fn backends(&self) -> &[Arc<Backend>] {
        &self.backends
    }

    /// The metrics this cluster reports into.
    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    /// The current routing table (one lock-free load).
    pub fn table(&self) -> arc_swap::Guard<Arc<RoutingTable>> {
        self.router.load()
    }

    /// The node's current state.
    pub fn state(&self, id: usize) -> NodeState {
        NodeState::from_u8(self.slots[id].state.load(Ordering::Acquire))
    }

    /// Whether the node's next readiness round must also connect to its traffic port.
    pub fn needs_traffic_check(&self, id: usize) -> bool {
        self.lock(id).machine.needs_traffic_check()
    }

    /// Resolves when someone asked for an immediate readiness round of this node.
    pub async fn recheck_requested(&self, id: usize) {
        self.slots[id].recheck.notified().await;
    }

    /// A readiness round: `/healthz`, plus the traffic-port connect if the round made one.
    pub fn record_readiness(
        &self,
        id: usize,
        healthz: &ProbeOutcome,
        traffic: Option<&ProbeOutcome>,
    ) {
        let series = &self.backends[id].series;
        series.observe_probe(
            Probe::Readiness,
            healthz.result,
            healthz.elapsed.as_secs_f64(),
        );
        if let Some(t) = traffic {
            series.observe_probe(Probe::Tcp, t.result, t.elapsed.as_secs_f64());
        }
        self.remember_probes(id, Probe::Readiness, healthz, traffic);
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
        let capps = healthz.status.map(|_| healthz.faulty_capps.clone());
        self.observe(id, observation, reason, capps);
    }

    /// A liveness round: `/liveness`, plus the traffic-port connect if configured. A failed
    /// connect is evidence on its own and evicts at once.
    pub fn record_liveness(
        &self,
        id: usize,
        liveness: &ProbeOutcome,
        traffic: Option<&ProbeOutcome>,
    ) {
        let series = &self.backends[id].series;
        series.observe_probe(
            Probe::Liveness,
            liveness.result,
            liveness.elapsed.as_secs_f64(),
        );
        self.remember_probes(id, Probe::Liveness, liveness, traffic);
        if let Some(t) = traffic {
            series.observe_probe(Probe::Tcp, t.result, t.elapsed.as_secs_f64());
            if !t.passed() {
                self.observe(id, Observation::TrafficFailed, Some(t.reason.clone()), None);
                return;
            }
        }
        let reason = (!liveness.passed()).then(|| liveness.reason.clone());
        self.observe(id, Observation::Liveness(liveness.passed()), reason, None);
    }

    /// Live traffic could not use the node (connect failed, or a pooled connection broke):
    /// evict at once and ask its poller to verify right away.
    pub fn traffic_failed(&self, id: usize, reason: String) {
        self.backends[id].series.count_connect_failure();
        self.observe(id, Observation::TrafficFailed, Some(reason), None);
        self.slots[id].recheck.notify_one();
    }

    /// Drain (`true`) or undrain a node by name: a drained node leaves the routing table at
    /// once, whatever its health; requests in flight to it finish. `None` if no such node.
    pub fn set_drained(&self, name: &str, drained: bool) -> Option<()> {
        let backend = self.backends.iter().find(|b| b.name == name)?;
        self.slots[backend.id]
            .drained
            .store(drained, Ordering::Release);
        backend.series.set_drained(drained);
        self.rebuild_table();
        Some(())
    }

    /// Whether outlier detection has ejected the node.
    pub fn is_ejected(&self, id: usize) -> bool {
        self.outliers.as_ref().is_some_and(|o| o.is_ejected(id))
    }

    /// A live-traffic answer from node `id` (`None`: none came): feeds outlier detection,
    /// which may eject the node for a while.
    pub fn record_answer(self: &Arc<Self>, id: usize, status: Option<u16>) {
        let Some(outliers) = &self.outliers else {
            return;
        };
        let failed = status.is_none_or(|s| s >= 500);
        let Some(length) = outliers.record(id, failed) else {
            return;
        };
        let backend = &self.backends[id];
        backend.series.record_ejection();
        log::warn!(
            "node={} ejected for {length:?} by outlier detection: failed answers in a row (last: {})",
            backend.name,
            status.map_or_else(|| "no answer".to_string(), |s| s.to_string())
        );
        self.rebuild_table();
        let cluster = self.clone();
        tokio::spawn(async move {
            tokio::time::sleep(length).await;
            let backend = &cluster.backends[id];
            backend.series.end_ejection();
            log::info!("node={} ejection over", backend.name);
            cluster.rebuild_table();
        });
    }

    /// Whether the operator drained the node.
    pub fn is_drained(&self, id: usize) -> bool {
        self.slots[id].drained.load(Ordering::Acquire)
    }

    /// Keep a round's outcomes for the status page.
    fn remember_probes(
        &self,
        id: usize,
        probe: Probe,
        outcome: &ProbeOutcome,
        traffic: Option<&ProbeOutcome>,
    ) {
        let mut h = self.lock(id);
        h.last_probes[probe as usize] = Some(LastProbe::of(outcome));
        if let Some(t) = traffic {
            h.last_probes[Probe::Tcp as usize] = Some(LastProbe::of(t));
        }
    }

    /// A report of every node, in configuration order.
    pub fn reports(&self) -> Vec<NodeReport> {
        self.backends
            .iter()
            .map(|b| {
                let h = self.lock(b.id);
                NodeReport {
                    name: b.name.clone(),
                    address: b.traffic_addr,
                    health_address: b.health_addr,
                    state: h.machine.state(),
                    since: h.since,
                    faulty_capps: h.faulty_capps.clone(),
                    last_error: h.last_error.clone(),
                    weight: b.weight,
                    in_flight: b.in_flight(),
                    last_probes: h.last_probes,
                    requests: b.series.requests_total(),
                    errors: b.series.errors_total(),
                    drained: self.is_drained(b.id),
                    ejected_for: self.outliers.as_ref().and_then(|o| o.remaining(b.id)),
                }
            })
            .collect()
    }

    fn lock(&self, id: usize) -> MutexGuard<'_, NodeHealth> {
        // A poisoned lock only means a panic elsewhere; the record itself stays consistent.
        self.slots[id]
            .health
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn observe(
        &self,
        id: usize,
        observation: Observation,
        reason: Option<String>,
        capps: Option<Vec<String>>,
    ) {
        let flip = {
            let mut h = self.lock(id);
            if let Some(capps) = capps {
                h.faulty_capps = capps;
            }
            if reason.is_some() {
                h.last_error = reason.clone();
            }
            let flip = h.machine.observe(observation, &self.thresholds);
            if let Some(f) = flip {
                h.since = SystemTime::now();
                // Slow start is for readmission; at start-up every node starts together.
                if f.to == NodeState::Ready && f.from != NodeState::Starting {
                    self.backends[id].begin_ramp();
                }
                if f.to == NodeState::Ready {
                    h.last_error = None;
                }
                self.slots[id].state.store(f.to.to_u8(), Ordering::Release);
                // Under the node's lock, so concurrent flips cannot leave gauges out of order.
                self.record_flip(id, f, reason.as_deref());
            }
            flip
        };
        // Any flip may change the members (under `any_alive` a not-ready node may be
        // routable); `publish` makes no new table when they did not change.
        if flip.is_some() {
            self.rebuild_table();
        }
    }

    fn record_flip(&self, id: usize, flip: Flip, reason: Option<&str>) {
        let name = &self.backends[id].name;
        let reason = reason.unwrap_or(match flip.to {
            NodeState::Ready => "readiness passed and traffic port accepts",
            NodeState::NotReady => "alive again; readiness not yet passed",
            _ => "no reason recorded",
        });
        log::info!(
            "node={name} from={} to={} reason={reason:?}",
            flip.from,
            flip.to
        );
        self.backends[id].series.record_transition(flip.to);
    }

    /// The nodes to route to now: the ready ones; under `any_alive`, when none is ready,
    /// the alive but not ready ones.
    fn members(&self) -> Members {
        let in_state = |state: NodeState| -> Vec<Arc<Backend>> {
            self.backends
                .iter()
                .filter(|b| self.state(b.id) == state && !self.is_drained(b.id))
                .filter(|b| !self.is_ejected(b.id))
                .cloned()
                .collect()
        };
        let ready = in_state(NodeState::Ready);
        if ready.is_empty() && self.when_none_ready == NoneReadyPolicy::AnyAlive {
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

    /// Publish a new table of the nodes to route to now.
    fn rebuild_table(&self) {
        self.router.publish(
            || self.members(),
            |previous, table| {
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
