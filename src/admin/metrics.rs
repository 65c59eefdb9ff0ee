//! Every metric healthgate exports, in one struct that owns its own `Registry` (no global
//! state, so tests and several instances in one process never collide). Label values come
//! only from the configured node list and fixed enums, never from client input.

use crate::health::{NodeState, ProbeResult};
use crate::routing::{BackendCounters, STATUS_CLASSES};
use prometheus::{
    Encoder, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge,
    IntGaugeVec, Opts, Registry, TextEncoder,
};

/// Probe kinds: the `probe` label.
pub const PROBES: [&str; 3] = ["readiness", "liveness", "tcp"];

/// Buckets for probe and request durations, in seconds (1 ms … 10 s).
const DURATION_BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// The metrics registry and its typed handles.
#[derive(Clone)]
pub struct Metrics {
    registry: Registry,
    /// `healthgate_backend_up{node}`: 1 when the node is in the routing table.
    pub backend_up: IntGaugeVec,
    /// `healthgate_backend_state{node,state}`: one-hot over the four states.
    pub backend_state: IntGaugeVec,
    /// `healthgate_backend_faulty_capps{node}`: faulty CApps in the last readiness answer.
    pub backend_faulty_capps: IntGaugeVec,
    /// `healthgate_ready_backends`: nodes in the routing table.
    pub ready_backends: IntGauge,
    /// `healthgate_routing_table_generation`: bumped on every table rebuild.
    pub routing_table_generation: IntGauge,
    /// `healthgate_probes_total{node,probe,result}`.
    pub probes_total: IntCounterVec,
    /// `healthgate_probe_duration_seconds{node,probe}`.
    pub probe_duration_seconds: HistogramVec,
    /// `healthgate_backend_transitions_total{node,to}`.
    pub backend_transitions_total: IntCounterVec,
    /// `healthgate_upstream_requests_total{node,class}`.
    pub upstream_requests_total: IntCounterVec,
    /// `healthgate_upstream_connect_failures_total{node}`.
    pub upstream_connect_failures_total: IntCounterVec,
    /// `healthgate_retries_total`: requests re-sent to another node.
    pub retries_total: IntCounter,
    /// `healthgate_no_ready_backend_total`: requests answered 503 because no node was ready.
    pub no_ready_backend_total: IntCounter,
    /// `healthgate_request_duration_seconds`: client request time through the proxy.
    pub request_duration_seconds: Histogram,
}

impl Metrics {
    /// Create and register every metric.
    pub fn new() -> Result<Metrics, prometheus::Error> {
        let registry = Registry::new();
        let gauge_vec =
            |name: &str, help: &str, labels: &[&str]| -> Result<IntGaugeVec, prometheus::Error> {
                let v = IntGaugeVec::new(Opts::new(name, help), labels)?;
                registry.register(Box::new(v.clone()))?;
                Ok(v)
            };
        let counter_vec =
            |name: &str, help: &str, labels: &[&str]| -> Result<IntCounterVec, prometheus::Error> {
                let v = IntCounterVec::new(Opts::new(name, help), labels)?;
                registry.register(Box::new(v.clone()))?;
                Ok(v)
            };
        let metrics = Metrics {
            backend_up: gauge_vec(
                "healthgate_backend_up",
                "1 when the node is in the routing table, else 0",
                &["node"],
            )?,
            backend_state: gauge_vec(
                "healthgate_backend_state",
                "1 for the node's current state (starting, ready, not_ready, dead), else 0",
                &["node", "state"],
            )?,
            backend_faulty_capps: gauge_vec(
                "healthgate_backend_faulty_capps",
                "Number of faulty CApps in the node's last readiness answer",
                &["node"],
            )?,
            ready_backends: IntGauge::new(
                "healthgate_ready_backends",
                "Nodes in the routing table",
            )?,
            routing_table_generation: IntGauge::new(
                "healthgate_routing_table_generation",
                "Generation of the current routing table; bumped on every rebuild",
            )?,
            probes_total: counter_vec(
                "healthgate_probes_total",
                "Health probes by node, probe (readiness, liveness, tcp) and result",
                &["node", "probe", "result"],
            )?,
            probe_duration_seconds: HistogramVec::new(
                HistogramOpts::new(
                    "healthgate_probe_duration_seconds",
                    "Health probe duration by node and probe",
                )
                .buckets(DURATION_BUCKETS.to_vec()),
                &["node", "probe"],
            )?,
            backend_transitions_total: counter_vec(
                "healthgate_backend_transitions_total",
                "State changes by node and new state",
                &["node", "to"],
            )?,
            upstream_requests_total: counter_vec(
                "healthgate_upstream_requests_total",
                "Requests proxied by node and status class (1xx..5xx, error for no response)",
                &["node", "class"],
            )?,
            upstream_connect_failures_total: counter_vec(
                "healthgate_upstream_connect_failures_total",
                "Failed connections to a node's traffic port from live traffic",
                &["node"],
            )?,
            retries_total: IntCounter::new(
                "healthgate_retries_total",
                "Requests re-sent to another node after a failure",
            )?,
            no_ready_backend_total: IntCounter::new(
                "healthgate_no_ready_backend_total",
                "Requests answered 503 because no node was ready",
            )?,
            request_duration_seconds: Histogram::with_opts(
                HistogramOpts::new(
                    "healthgate_request_duration_seconds",
                    "Time from request to end of response, through the proxy",
                )
                .buckets(DURATION_BUCKETS.to_vec()),
            )?,
            registry,
        };
        for c in [
            Box::new(metrics.ready_backends.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(metrics.routing_table_generation.clone()),
            Box::new(metrics.probe_duration_seconds.clone()),
            Box::new(metrics.retries_total.clone()),
            Box::new(metrics.no_ready_backend_total.clone()),
            Box::new(metrics.request_duration_seconds.clone()),
        ] {
            metrics.registry.register(c)?;
        }
        Ok(metrics)
    }

    /// Create every labelled series of a node at zero, so dashboards see it from the start,
    /// and return its hot-path counters.
    pub fn register_node(&self, node: &str) -> BackendCounters {
        self.backend_up.with_label_values(&[node]).set(0);
        self.backend_faulty_capps.with_label_values(&[node]).set(0);
        for state in NodeState::ALL {
            self.backend_state
                .with_label_values(&[node, state.as_str()])
                .set(i64::from(state == NodeState::Starting));
            self.backend_transitions_total
                .with_label_values(&[node, state.as_str()]);
        }
        for probe in PROBES {
            for result in ProbeResult::ALL {
                self.probes_total
                    .with_label_values(&[node, probe, result.as_str()]);
            }
            self.probe_duration_seconds
                .with_label_values(&[node, probe]);
        }
        BackendCounters {
            requests: STATUS_CLASSES.map(|class| {
                self.upstream_requests_total
                    .with_label_values(&[node, class])
            }),
            connect_failures: self
                .upstream_connect_failures_total
                .with_label_values(&[node]),
        }
    }

    /// Record a node's new state in the state and up gauges.
    pub fn set_state(&self, node: &str, state: NodeState) {
        for s in NodeState::ALL {
            self.backend_state
                .with_label_values(&[node, s.as_str()])
                .set(i64::from(s == state));
        }
        self.backend_up
            .with_label_values(&[node])
            .set(i64::from(state == NodeState::Ready));
    }

    /// Count a probe and observe its duration.
    pub fn observe_probe(&self, node: &str, probe: &str, result: ProbeResult, seconds: f64) {
        self.probes_total
            .with_label_values(&[node, probe, result.as_str()])
            .inc();
        self.probe_duration_seconds
            .with_label_values(&[node, probe])
            .observe(seconds);
    }

    /// The Prometheus text exposition of every metric.
    pub fn render(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(16 * 1024);
        if let Err(e) = TextEncoder::new().encode(&self.registry.gather(), &mut out) {
            log::error!("metrics encoding failed: {e}");
        }
        out
    }
}
