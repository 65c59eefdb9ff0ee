//! What the cluster tells `/status` and the status page about each node.

use super::Cluster;
use crate::health::{NodeState, ProbeKind, ProbeOutcome, ProbeResult};
use std::net::SocketAddr;
use std::time::{Duration, SystemTime};

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
    pub(super) fn of(outcome: &ProbeOutcome) -> LastProbe {
        LastProbe {
            result: outcome.result,
            elapsed: outcome.elapsed,
            at: SystemTime::now(),
        }
    }
}

/// What is known about one member, for `/status` and the status page.
#[derive(Clone, Debug)]
pub struct MemberReport {
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
    /// The latest probe of each kind, indexed like [`ProbeKind::ALL`].
    pub last_probes: [Option<LastProbe>; ProbeKind::ALL.len()],
    /// Requests the node answered or failed, all status classes.
    pub requests: u64,
    /// Of those, 5xx answers and attempts that got no answer.
    pub errors: u64,
    /// Taken out of the routing table by the operator.
    pub drained: bool,
    /// How much longer outlier detection keeps the node out, if it does.
    pub ejected_for: Option<Duration>,
}

impl Cluster {
    /// A report of every node, in configuration order.
    pub fn reports(&self) -> Vec<MemberReport> {
        let members = self.members.load();
        members
            .list
            .iter()
            .map(|m| {
                let b = &m.backend;
                let h = m.lock();
                MemberReport {
                    name: b.name.clone(),
                    address: b.traffic_addr,
                    health_address: b.health_addr,
                    state: h.machine.state(),
                    since: h.since,
                    faulty_capps: h.faulty_capps.clone(),
                    last_error: h.last_error.clone(),
                    weight: b.weight(),
                    in_flight: b.in_flight(),
                    last_probes: h.last_probes,
                    requests: b.counters.requests_total(),
                    errors: b.counters.errors_total(),
                    drained: m.is_drained(),
                    ejected_for: self.outliers.as_ref().and_then(|o| o.remaining(&m.outlier)),
                }
            })
            .collect()
    }
}
