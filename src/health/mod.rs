//! Health checking: probes (HTTP on the health port, TCP on the traffic port), the lenient
//! `/healthz` body reader, the pure state machine, and the per-node poller.

mod answer;
pub mod body;
mod http_get;
pub mod poller;
pub mod probe;
pub mod service;
mod state;

pub use poller::ProbeSettings;
pub use probe::{ProbeOutcome, ProbeResult};
pub use state::{Flip, HealthMachine, NodeState, Observation, Thresholds};
