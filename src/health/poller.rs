//! The poller: one task per node runs its readiness and liveness rounds on their periods
//! (evenly out of phase, so a large cluster is not probed in lockstep) and reports to the
//! cluster.

use super::NodeState;
use super::probe::{self, HealthConnection};
use crate::cluster::Cluster;
use crate::config::{Config, LivenessConfig, ReadinessConfig};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;
use tokio::time::{Instant, sleep_until};

/// The nodes' first probes are spread over at least this long (at most a period)...
const MIN_START_SPREAD: Duration = Duration::from_secs(1);
/// ...or this much per node, if that is longer.
const START_SPREAD_PER_NODE: Duration = Duration::from_millis(2);

/// Probe settings shared by every node's task.
#[derive(Clone, Debug)]
pub struct ProbeSettings {
    /// Readiness probe.
    pub readiness: ReadinessConfig,
    /// Liveness probe.
    pub liveness: LivenessConfig,
}

impl ProbeSettings {
    /// The probe settings of `config`.
    pub fn of(config: &Config) -> ProbeSettings {
        ProbeSettings {
            readiness: config.readiness.clone(),
            liveness: config.liveness.clone(),
        }
    }
}

/// Start a polling task on the current runtime for each node in `ids`; each stops when
/// `shutdown` turns true or its sender is dropped, or when a reload removed its node.
pub fn spawn(
    cluster: &Arc<Cluster>,
    ids: &[usize],
    shutdown: &watch::Receiver<bool>,
) -> Vec<(usize, tokio::task::JoinHandle<()>)> {
    // The nodes' first probes are spaced evenly over the spread (capped at a period), and
    // their rounds keep those phases (each is due a period after the last started): 5000
    // nodes are not all connected to in one instant (measured: such a burst took peak RSS
    // from ~50 to 140 MiB), and when a whole cluster recovers at once some node is probed
    // soon after, not all of them a period later (measured in the all-faulty scenario:
    // with first probes 2 ms per node apart, healthgate answered 15–20 % more 503s than
    // HAProxy, which spaces its checks over the interval as this does).
    let spread = START_SPREAD_PER_NODE
        .saturating_mul(ids.len() as u32)
        .max(MIN_START_SPREAD);
    let count = ids.len().max(1) as f64;
    ids.iter()
        .enumerate()
        .map(|(i, &id)| {
            let phase = Phase {
                spread,
                share: i as f64 / count,
            };
            let task = poll_node(cluster.clone(), id, phase, shutdown.clone());
            (id, tokio::spawn(task))
        })
        .collect()
}

/// Where a node's rounds fall: at `share` (0–1) of the start-up `spread`.
#[derive(Clone, Copy, Debug)]
struct Phase {
    spread: Duration,
    share: f64,
}

impl Phase {
    /// The first round: after the initial delay, at this node's point of the spread
    /// (capped at one period).
    fn first(self, now: Instant, initial_delay: Duration, period: Duration) -> Instant {
        now + initial_delay + self.spread.min(period).mul_f64(self.share)
    }
}

async fn poll_node(
    cluster: Arc<Cluster>,
    id: usize,
    phase: Phase,
    mut shutdown: watch::Receiver<bool>,
) {
    let now = Instant::now();
    let settings = cluster.probe_settings();
    let (r, l) = (&settings.readiness, &settings.liveness);
    let mut next_readiness = phase.first(now, r.initial_delay, r.period);
    let mut next_liveness = phase.first(now, l.initial_delay, l.period);
    // Readiness and liveness both ask the health port: one kept connection serves both.
    let mut connection = HealthConnection::default();
    // When the last readiness round passed (None: it did not).
    let mut passed_readiness: Option<Instant> = None;
    // The rounds below are boxed while they run: their futures (hyper's inside) are
    // kilobytes, which every idle task would otherwise hold between rounds (measured at
    // 5000 nodes: RSS 69 → 56.5 MiB, CPU 20 → 18.5 % of a core).
    while cluster.backend(id).is_some() {
        // A reload may have changed the settings: each round uses the latest.
        let settings = cluster.probe_settings();
        let (r, l) = (&settings.readiness, &settings.liveness);
        tokio::select! {
            _ = shutdown.changed() => {
                if shutdown.has_changed().is_err() || *shutdown.borrow() {
                    return;
                }
            }
            // Each round is due a period after the previous one started: a probe that
            // waits out its timeout does not stretch the period (a hung node is out after
            // failure_threshold periods, not that many periods plus timeouts).
            _ = sleep_until(next_readiness) => {
                let started = Instant::now();
                let passed = Box::pin(readiness_round(&cluster, id, r, &mut connection)).await;
                passed_readiness = passed.then_some(started);
                next_readiness = started + r.period;
            }
            _ = cluster.recheck_requested(id) => {
                let started = Instant::now();
                let passed = Box::pin(readiness_round(&cluster, id, r, &mut connection)).await;
                passed_readiness = passed.then_some(started);
                next_readiness = started + r.period;
            }
            _ = sleep_until(next_liveness) => {
                let started = Instant::now();
                // A ready node whose `/healthz` said 200 within the liveness period has
                // shown what `/liveness` would (its process answers): asking again would
                // tell its state machine nothing (a readiness pass already cleared its
                // liveness failures), so only the traffic-port connect, if any, is made.
                let shown_alive = cluster.state(id) == Some(NodeState::Ready)
                    && passed_readiness.is_some_and(|at| started - at < l.period);
                Box::pin(liveness_round(&cluster, id, l, &mut connection, shown_alive)).await;
                next_liveness = started + l.period;
            }
        }
    }
}

/// `/healthz`, and, while the node is out of the table, a connect to its traffic port:
/// readmission needs both. Returns whether `/healthz` passed.
async fn readiness_round(
    cluster: &Cluster,
    id: usize,
    r: &ReadinessConfig,
    connection: &mut HealthConnection,
) -> bool {
    let Some(backend) = cluster.backend(id) else {
        return false;
    };
    let traffic = if cluster.needs_traffic_check(id) {
        Some(probe::tcp(backend.traffic_addr, r.timeout).await)
    } else {
        None
    };
    let healthz = probe::readiness(
        connection,
        backend.health_addr,
        &backend.host,
        &r.path,
        r.timeout,
    )
    .await;
    cluster.record_readiness(id, &healthz, traffic.as_ref());
    healthz.passed()
}

/// `/liveness` (unless the node was `shown_alive`), and a connect to the traffic port if
/// `tcp` is on or the node is dead: MI's `/liveness` keeps answering during a shutdown, so
/// without the connect a dead node would bounce to `not_ready` and back every round.
async fn liveness_round(
    cluster: &Cluster,
    id: usize,
    l: &LivenessConfig,
    connection: &mut HealthConnection,
    shown_alive: bool,
) {
    let Some(backend) = cluster.backend(id) else {
        return;
    };
    let liveness = if shown_alive {
        None
    } else {
        let host = &backend.host;
        Some(probe::liveness(connection, backend.health_addr, host, &l.path, l.timeout).await)
    };
    let traffic = if l.tcp || cluster.state(id) == Some(NodeState::Dead) {
        Some(probe::tcp(backend.traffic_addr, l.timeout).await)
    } else {
        None
    };
    if liveness.is_some() || traffic.is_some() {
        cluster.record_liveness(id, liveness.as_ref(), traffic.as_ref());
    }
}
