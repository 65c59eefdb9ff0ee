//! The poller: one task per node runs its readiness and liveness rounds on their periods
//! (with jitter, so a large cluster is not probed in lockstep) and reports to the cluster.

use super::{NodeState, probe};
use crate::cluster::Cluster;
use crate::config::{Config, LivenessConfig, ReadinessConfig};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;
use tokio::time::{Instant, sleep_until};

/// Periods vary by up to ± this share, so probes of many nodes spread out over time.
const JITTER: f64 = 0.1;
/// Several nodes' first probes are spread over at least this long (at most a period)...
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
    // Several nodes' first probes fall at random points of the spread (capped at a period),
    // and their rounds keep those phases: 5000 nodes are not all connected to in one
    // instant (measured: such a burst took peak RSS from ~50 to 140 MiB), and when a whole
    // cluster recovers at once, some node is probed soon after, not all of them a period
    // later (measured in the all-faulty scenario: spread over 2 ms per node, healthgate
    // answered 15–20 % more 503s than HAProxy, whose checks are spread over the interval).
    let spread = if ids.len() > 1 {
        START_SPREAD_PER_NODE
            .saturating_mul(ids.len() as u32)
            .max(MIN_START_SPREAD)
    } else {
        Duration::ZERO
    };
    ids.iter()
        .map(|&id| {
            let task = poll_node(cluster.clone(), id, spread, shutdown.clone());
            (id, tokio::spawn(task))
        })
        .collect()
}

/// `period` varied by ± [`JITTER`].
fn jittered(period: Duration) -> Duration {
    let factor = 1.0 + JITTER * (2.0 * fastrand::f64() - 1.0);
    period.mul_f64(factor)
}

/// The first probe: after the initial delay, at a random point of the start-up spread
/// (capped at one period), so nodes configured together are not probed together.
fn first_at(now: Instant, initial_delay: Duration, period: Duration, spread: Duration) -> Instant {
    now + initial_delay + spread.min(period).mul_f64(fastrand::f64())
}

async fn poll_node(
    cluster: Arc<Cluster>,
    id: usize,
    spread: Duration,
    mut shutdown: watch::Receiver<bool>,
) {
    let now = Instant::now();
    let settings = cluster.probe_settings();
    let (r, l) = (&settings.readiness, &settings.liveness);
    let mut next_readiness = first_at(now, r.initial_delay, r.period, spread);
    let mut next_liveness = first_at(now, l.initial_delay, l.period, spread);
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
                readiness_round(&cluster, id, r).await;
                next_readiness = started + jittered(r.period);
            }
            _ = cluster.recheck_requested(id) => {
                let started = Instant::now();
                readiness_round(&cluster, id, r).await;
                next_readiness = started + jittered(r.period);
            }
            _ = sleep_until(next_liveness) => {
                let started = Instant::now();
                liveness_round(&cluster, id, l).await;
                next_liveness = started + jittered(l.period);
            }
        }
    }
}

/// `/healthz`, and, while the node is out of the table, a connect to its traffic port:
/// readmission needs both.
async fn readiness_round(cluster: &Cluster, id: usize, r: &ReadinessConfig) {
    let Some(backend) = cluster.backend(id) else {
        return;
    };
    let traffic = if cluster.needs_traffic_check(id) {
        Some(probe::tcp(backend.traffic_addr, r.timeout).await)
    } else {
        None
    };
    let healthz = probe::readiness(backend.health_addr, &backend.host, &r.path, r.timeout).await;
    cluster.record_readiness(id, &healthz, traffic.as_ref());
}

/// `/liveness`, and a connect to the traffic port if `tcp` is on or the node is dead: MI's
/// `/liveness` keeps answering during a shutdown, so without the connect a dead node would
/// bounce to `not_ready` and back every round.
async fn liveness_round(cluster: &Cluster, id: usize, l: &LivenessConfig) {
    let Some(backend) = cluster.backend(id) else {
        return;
    };
    let liveness = probe::liveness(backend.health_addr, &backend.host, &l.path, l.timeout).await;
    let traffic = if l.tcp || cluster.state(id) == Some(NodeState::Dead) {
        Some(probe::tcp(backend.traffic_addr, l.timeout).await)
    } else {
        None
    };
    cluster.record_liveness(id, &liveness, traffic.as_ref());
}
