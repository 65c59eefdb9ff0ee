//! The cluster: every configured node as a [`member`](self) (its backend, health record,
//! drain and outlier record) and the router. Probes and the proxy report evidence here; a flip
//! of a node's state is logged, counted, and rebuilds the routing table — nothing else does.
//! What a scrape or `/status` shows is read from the members when asked ([`Cluster::scrape`],
//! [`Cluster::reports`]): nothing here is mirrored for them.

mod drains;
mod evidence;
mod member;
mod node_tls;
pub use node_tls::check as check_upstream_tls;
mod reload;
mod report;
mod scrape;

use crate::config::{Config, NodeConfig, NoneReadyPolicy};
use crate::health::{NodeState, ProbeSettings, Thresholds};
use crate::routing::outlier::Outliers;
use crate::routing::{
    Backend, DEFAULT_ROUTE, NodeTls, Routable, Route, RouteMap, RouteNodes, Router, RoutingTable,
};
use crate::telemetry::{LocalErrorSource, Metrics};
use arc_swap::ArcSwap;
use drains::DrainFile;
pub use drains::{DrainError, Drained};
use member::{Member, MemberSet};
pub use reload::{Occasion, Planned, ReloadSummary, resolve_configured, restart_only_changes};
pub use report::{LastProbe, MemberReport};
use std::net::{SocketAddr, ToSocketAddrs};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

/// Why the cluster could not be built, or a reload not applied.
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
    /// An https node's TLS settings cannot be used (a CA file, a client certificate, a name).
    #[error("{origin} ({name}): {source}")]
    Tls {
        /// Where the node comes from: `nodes[2]`, `discovery[0]`.
        origin: String,
        /// Node name.
        name: String,
        /// What is wrong.
        #[source]
        source: crate::tls::TlsError,
    },
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

/// A quiet spell this long after a local connect error ends its burst: the next one is
/// logged again.
const LOCAL_ERROR_BURST_GAP: Duration = Duration::from_secs(10);

/// Every configured node's health and the routing table built from it.
pub struct Cluster {
    members: ArcSwap<MemberSet>,
    /// The next member id (ids are never reused).
    next_id: AtomicUsize,
    router: Router,
    judgement: ArcSwap<Judgement>,
    probes: ArcSwap<ProbeSettings>,
    outliers: Option<Outliers>,
    metrics: Metrics,
    /// Where drains are kept across hand-overs and restarts (`drain_file`), if anywhere.
    drains: Option<DrainFile>,
    /// One reload or drain at a time ([`Cluster::one_change_at_a_time`]).
    reloading: Mutex<()>,
    /// Nodes removed by a reload while requests were in flight to them.
    retired: Mutex<Vec<Arc<Backend>>>,
    /// When probing started (the supervisor sets it), and how long the nodes' first verdicts
    /// may take from then.
    probing_since: OnceLock<Instant>,
    warm_up: Duration,
    /// Nodes whose first verdict is in but whose table is not published yet.
    first_verdicts_unpublished: AtomicUsize,
    /// Milliseconds since `started` of the latest local connect error (0: none yet).
    last_local_error_ms: AtomicU64,
    started: Instant,
}

impl Cluster {
    /// Build the cluster with the `planned` nodes (resolved by the caller); every node
    /// starts in `starting`, undrained (the drain file is read when probing starts:
    /// [`Cluster::restore_drains`]).
    pub fn new(
        config: &Config,
        metrics: Metrics,
        planned: Vec<Planned>,
    ) -> Result<Cluster, ClusterError> {
        let drains = config.drain_file.clone().map(DrainFile::new);
        let cluster = Cluster {
            members: ArcSwap::from_pointee(MemberSet::default()),
            next_id: AtomicUsize::new(0),
            router: Router::new(config.balancing.algorithm)
                .with_slow_start(config.balancing.slow_start)
                .with_capps(&config.capps),
            judgement: ArcSwap::from_pointee(Judgement::of(config)),
            probes: ArcSwap::from_pointee(ProbeSettings::of(config)),
            outliers: config.outlier_detection.map(Outliers::new),
            metrics,
            drains,
            reloading: Mutex::new(()),
            retired: Mutex::new(Vec::new()),
            probing_since: OnceLock::new(),
            warm_up: warm_up(config),
            first_verdicts_unpublished: AtomicUsize::new(0),
            last_local_error_ms: AtomicU64::new(0),
            started: Instant::now(),
        };
        cluster.run_with(config, planned, Occasion::Start)?;
        Ok(cluster)
    }

    /// The backend of `node` at `addrs` (traffic, health), with a new id.
    fn new_backend(
        &self,
        node: &NodeConfig,
        addresses: Addresses,
        tls: Option<Arc<NodeTls>>,
    ) -> Arc<Backend> {
        let backend = Backend::new(
            self.next_id.fetch_add(1, Ordering::Relaxed),
            node.name.clone(),
            node.host.clone(),
            addresses,
            node.weight,
            tls,
        );
        Arc::new(backend)
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

    /// Whether probing started recently (or not yet) and some node has had no verdict, or
    /// has had one whose table is not out yet.
    pub fn awaiting_first_verdicts(&self) -> bool {
        self.probing_since
            .get()
            .is_none_or(|since| since.elapsed() < self.warm_up)
            && (self
                .members
                .load()
                .list
                .iter()
                .any(|m| m.state() == NodeState::Starting)
                || self.first_verdicts_unpublished.load(Ordering::SeqCst) > 0)
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

    /// Held while the node list or a drain changes: reloads and operator actions apply one at
    /// a time, so neither loses the other's change.
    fn one_change_at_a_time(&self) -> std::sync::MutexGuard<'_, ()> {
        // A poisoned lock guards nothing (the unit): a panic elsewhere changes no rule here.
        self.reloading
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn member(&self, id: usize) -> Option<Arc<Member>> {
        self.members.load().get(id).cloned()
    }

    /// The metrics this cluster counts into.
    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    /// The current routing table (one lock-free load).
    pub fn table(&self) -> arc_swap::Guard<Arc<RoutingTable>> {
        self.router.load()
    }

    /// Run `read` on the current routing table without touching a shared count (the
    /// request path's way to it; see [`Router::with_table`]).
    pub fn with_table<R>(&self, read: impl FnMut(&RoutingTable) -> R) -> R {
        self.router.with_table(read)
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

    /// A connect failed for want of this host's own resources: count it, and log it if it
    /// begins a burst. It is evidence about no node.
    pub fn local_connect_error(&self, source: LocalErrorSource, detail: &str) {
        let count = self.metrics.count_local_connect_error(source);
        let now = (self.started.elapsed().as_millis() as u64).max(1);
        let previous = self.last_local_error_ms.swap(now, Ordering::Relaxed);
        if previous == 0 || now.saturating_sub(previous) >= LOCAL_ERROR_BURST_GAP.as_millis() as u64
        {
            log::warn!(
                "a connect failed for want of this host's resources ({detail}); no node is \
                 evicted for it. Until they stop for {LOCAL_ERROR_BURST_GAP:?} such errors are only \
                 counted (healthgate_local_connect_errors_total, {count} so far from {source:?})"
            );
        }
    }

    /// Whether outlier detection keeps `member` out now.
    fn is_ejected(&self, member: &Member) -> bool {
        self.outliers
            .as_ref()
            .is_some_and(|o| o.is_ejected(&member.outlier))
    }

    /// The nodes to route to now, per route of `routes`: the ready and partly ready ones,
    /// less those whose last `/healthz` listed the route's CApp as faulty; under
    /// `any_alive`, for a route no such node serves, the alive but not ready ones that do
    /// not list it. Drained and ejected nodes never.
    fn routable(&self, routes: &RouteMap) -> Routable {
        let members = self.members.load();
        // Each member's state and the routes its faulty CApps serve (read once, under its
        // lock, so every route sees the same verdicts).
        let standings: Vec<(NodeState, Vec<Route>)> = members
            .list
            .iter()
            .map(|m| {
                let h = m.lock();
                let mut state = h.machine.state();
                let faulty: Vec<Route> = h
                    .faulty_capps
                    .iter()
                    .filter_map(|c| routes.route_of_faulty(c))
                    .collect();
                // Partly ready under a map that no longer maps all its faulty CApps (a
                // reload unmapped one, or raced its verdict): it serves nothing until its
                // next answers make it not ready, as an unmapped faulty CApp does.
                if state == NodeState::PartlyReady && faulty.len() < h.faulty_capps.len() {
                    state = NodeState::NotReady;
                }
                (state, faulty)
            })
            .collect();
        let any_alive = self.judgement.load().when_none_ready == NoneReadyPolicy::AnyAlive;
        let serving = |route: Route, routable: bool| -> Vec<Arc<Backend>> {
            members
                .list
                .iter()
                .zip(&standings)
                .filter(|(m, (state, faulty))| {
                    let wanted = match routable {
                        true => state.is_routable(),
                        false => *state == NodeState::NotReady,
                    };
                    wanted && !faulty.contains(&route) && !m.is_drained() && !self.is_ejected(m)
                })
                .map(|(m, _)| m.backend.clone())
                .collect()
        };
        let nodes_for = |route: Route| -> RouteNodes {
            let ready = serving(route, true);
            if ready.is_empty() && any_alive {
                let alive = serving(route, false);
                if !alive.is_empty() {
                    return RouteNodes {
                        backends: alive,
                        fallback: true,
                    };
                }
            }
            RouteNodes {
                backends: ready,
                fallback: false,
            }
        };
        // A CApp's route differs from the default one only where a node lists it faulty.
        let capps = (1..routes.len())
            .map(|route| {
                let listed = standings.iter().any(|(_, faulty)| faulty.contains(&route));
                listed.then(|| nodes_for(route))
            })
            .collect();
        Routable {
            default: nodes_for(DEFAULT_ROUTE),
            capps,
        }
    }

    /// Publish a new table of the nodes to route to now (`force`: even if they are the
    /// ones already published, because a weight or the policy changed).
    fn rebuild_table(&self, force: bool) {
        self.router.publish(
            force,
            |routes| self.routable(routes),
            |previous, table| {
                if table.is_fallback() {
                    let names: Vec<&str> = table.backends().iter().map(|b| b.name.as_str()).collect();
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

/// A node's traffic and health addresses.
pub type Addresses = (SocketAddr, SocketAddr);

/// The traffic and health addresses of `node` (entry `index` of the node list). Blocking: it
/// may ask the system resolver.
fn resolve(index: usize, node: &NodeConfig) -> Result<Addresses, ClusterError> {
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
