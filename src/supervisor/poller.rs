//! The poller: one task per node runs its readiness and liveness rounds on their periods
//! (evenly out of phase, so a large cluster is not probed in lockstep) and reports to the
//! cluster.

use crate::cluster::Cluster;
use crate::config::{LivenessConfig, ReadinessConfig};
use crate::health::NodeState;
use crate::health::probe::{self, HealthConnection, ProbeOutcome};
use crate::routing::Backend;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;
use tokio::time::{Instant, sleep_until};

/// The nodes' first probes are spread over at least this long (at most a period)...
const MIN_START_SPREAD: Duration = Duration::from_secs(1);
/// ...or this much per node, if that is longer.
const START_SPREAD_PER_NODE: Duration = Duration::from_millis(2);
/// Rounds fall on a grid of this step: the nodes due in one step are probed in one wake-up of
/// the runtime (and of the nodes' side), not one wake-up each (measured at 5000 nodes: see
/// docs/bench/health-cost.md).
const PHASE_STEP: Duration = Duration::from_millis(10);

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
    let origin = Instant::now();
    ids.iter()
        .enumerate()
        .map(|(i, &id)| {
            let phase = Phase {
                origin,
                spread,
                share: i as f64 / count,
            };
            let task = poll_node(cluster.clone(), id, phase, shutdown.clone());
            (id, tokio::spawn(task))
        })
        .collect()
}

/// Where a node's rounds fall: at `share` (0–1) of the start-up `spread` after `origin`.
#[derive(Clone, Copy, Debug)]
struct Phase {
    origin: Instant,
    spread: Duration,
    share: f64,
}

impl Phase {
    /// The first round: after the initial delay, at this node's point of the spread
    /// (capped at one period), rounded down to the [`PHASE_STEP`] grid.
    fn first(self, initial_delay: Duration, period: Duration) -> Instant {
        let offset = self.spread.min(period).mul_f64(self.share);
        let steps = offset.as_nanos() / PHASE_STEP.as_nanos();
        self.origin + initial_delay + PHASE_STEP * u32::try_from(steps).unwrap_or(u32::MAX)
    }
}

/// When the round after one that `started` is due: the first point of the round's grid (`due`
/// plus or minus whole periods) more than half a period after it started. A round on time
/// is followed a period later; a late one, or an extra one asked for by a recheck, keeps
/// the grid without bunching two rounds together.
fn next_round(due: Instant, period: Duration, started: Instant) -> Instant {
    let not_before = started + period / 2;
    if due > not_before {
        return due;
    }
    let step = period.as_nanos().max(1);
    let ahead = ((not_before - due).as_nanos() / step + 1) * step;
    u64::try_from(ahead)
        .ok()
        .and_then(|ahead| due.checked_add(Duration::from_nanos(ahead)))
        .unwrap_or(not_before + period)
}

async fn poll_node(
    cluster: Arc<Cluster>,
    id: usize,
    phase: Phase,
    mut shutdown: watch::Receiver<bool>,
) {
    let settings = cluster.probe_settings();
    let (r, l) = (&settings.readiness, &settings.liveness);
    let mut next_readiness = phase.first(r.initial_delay, r.period);
    let mut next_liveness = phase.first(l.initial_delay, l.period);
    // Readiness and liveness both ask the health port: one kept connection serves both.
    let mut connection = HealthConnection::default();
    // When the last readiness round passed (None: it did not).
    let mut passed_readiness: Option<Instant> = None;
    // The rounds below are boxed while they run: their futures are large (they were
    // kilobytes with hyper's inside), which every idle task would otherwise hold between
    // rounds (measured at 5000 nodes: RSS 69 → 56.5 MiB, CPU 20 → 18.5 % of a core).
    while cluster.backend(id).is_some() {
        // A reload may have changed the settings: each round uses the latest.
        let settings = cluster.probe_settings();
        let (r, l) = (&settings.readiness, &settings.liveness);
        // The select only says which round is due; the rounds run after it.
        let readiness_due = tokio::select! {
            _ = shutdown.changed() => {
                if shutdown.has_changed().is_err() || *shutdown.borrow() {
                    return;
                }
                continue;
            }
            // Each round is due a period after the previous one was: a probe that waits
            // out its timeout does not stretch the period (a hung node is out after
            // failure_threshold periods, not that many periods plus timeouts).
            _ = sleep_until(next_readiness) => true,
            _ = cluster.recheck_requested(id) => true,
            _ = sleep_until(next_liveness) => false,
        };
        let started = Instant::now();
        if readiness_due {
            let passed = Box::pin(readiness_round(&cluster, id, r, &mut connection)).await;
            passed_readiness = passed.then_some(started);
            next_readiness = next_round(next_readiness, r.period, started);
        } else {
            // A ready node whose `/healthz` said 200 within the liveness period has shown
            // what `/liveness` would (its process answers): asking again would tell its
            // state machine nothing (a readiness pass already cleared its liveness
            // failures), so only the traffic-port connect, if any, is made.
            let shown_alive = cluster.state(id).is_some_and(NodeState::is_routable)
                && passed_readiness.is_some_and(|at| started - at < l.period);
            Box::pin(liveness_round(
                &cluster,
                id,
                l,
                &mut connection,
                shown_alive,
            ))
            .await;
            next_liveness = next_round(next_liveness, l.period, started);
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
        Some(traffic_check(&backend, r.timeout).await)
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
    cluster.record_readiness(id, &healthz, traffic.as_ref())
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
        Some(traffic_check(&backend, l.timeout).await)
    } else {
        None
    };
    if liveness.is_some() || traffic.is_some() {
        cluster.record_liveness(id, liveness.as_ref(), traffic.as_ref());
    }
}

/// The traffic-port check: a connect, and the TLS handshake of an https node.
async fn traffic_check(backend: &Backend, timeout: Duration) -> ProbeOutcome {
    let tls = backend.tls();
    let tls = tls.as_deref().map(|t| (&*t.connector, &t.server_name));
    probe::tcp(backend.traffic_addr, tls, timeout).await
}

#[cfg(test)]
mod tests {
    use super::*;

    const PERIOD: Duration = Duration::from_secs(1);
    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn first_rounds_fall_on_the_step_grid_spread_over_the_period() {
        let origin = Instant::now();
        let at = |share| {
            let phase = Phase {
                origin,
                spread: Duration::from_secs(10),
                share,
            };
            phase.first(Duration::ZERO, PERIOD) - origin
        };
        assert_eq!(at(0.0), Duration::ZERO);
        // 0.5 % of the period is 5 ms: inside the first step.
        assert_eq!(at(0.005), Duration::ZERO);
        assert_eq!(at(0.0123), 10 * MS);
        // The spread is capped at one period.
        assert_eq!(at(0.999), 990 * MS);
    }

    #[test]
    fn rounds_keep_their_grid_whether_on_time_late_or_rechecked() {
        let due = Instant::now();
        // On time (a little after its due time, as timers fire): a period later.
        assert_eq!(next_round(due, PERIOD, due + 3 * MS), due + PERIOD);
        // Ran 1.7 periods late: the next grid point more than half a period on.
        assert_eq!(next_round(due, PERIOD, due + 1700 * MS), due + 3 * PERIOD);
        // A recheck 100 ms before the due round: that round is too close, the next is kept.
        assert_eq!(next_round(due, PERIOD, due - 100 * MS), due + PERIOD);
        // A recheck 900 ms before it: the due round stays.
        assert_eq!(next_round(due, PERIOD, due - 900 * MS), due);
        // A tiny period after a long freeze: still ahead, on the grid, no overflow.
        let ns = Duration::from_nanos(1);
        let late = due + Duration::from_secs(3 * 3600);
        assert_eq!(next_round(due, ns, late), late + ns);
    }
}
