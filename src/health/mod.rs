//! Health checking as pure knowledge about one node: the probes (HTTP on the health port, TCP
//! on the traffic port) and their outcomes, the lenient `/healthz` body reader, and the pure
//! state machine that turns observations into flips. Nothing here schedules probes (that is
//! the supervisor's poller) or knows about other nodes (that is the cluster).

mod answer;
pub mod body;
mod http_get;
pub mod probe;
mod state;

pub use probe::{HealthConnection, ProbeKind, ProbeOutcome, ProbeResult};
pub use state::{Flip, HealthMachine, Healthz, NodeState, Observation, Thresholds};

use crate::config::{Config, LivenessConfig, ReadinessConfig};

/// The probe settings every node's rounds use (a reload may change them).
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
