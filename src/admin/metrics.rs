//! Every metric healthgate exports, in one struct that owns its own `Registry` (no global
//! state, so tests and several instances in one process never collide). Label values come
//! only from the configured node list and fixed enums, never from client input.

use super::histogram::DURATION_BUCKETS;
use super::node_series::{NodeMetrics, NodeSeries};
use prometheus::process_collector::ProcessCollector;
use prometheus::{
    Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge, Opts, Registry, TextEncoder,
};
use std::sync::Arc;

/// The metrics registry and its typed handles.
#[derive(Clone)]
pub struct Metrics {
    registry: Registry,
    /// Every per-node series (`healthgate_backend_*`, probes, upstream requests).
    nodes: NodeMetrics,
    /// `healthgate_ready_backends`: ready nodes (all in the routing table).
    pub ready_backends: IntGauge,
    /// `healthgate_routing_fallback`: 1 while no node is ready and traffic goes to alive,
    /// not ready nodes (`when_none_ready: any_alive`).
    pub routing_fallback: IntGauge,
    /// `healthgate_fallback_requests_total`: requests routed by such a fallback table.
    pub fallback_requests_total: IntCounter,
    /// `healthgate_routing_table_generation`: bumped on every table rebuild.
    pub routing_table_generation: IntGauge,
    /// `healthgate_retries_total`: requests re-sent to another node.
    pub retries_total: IntCounter,
    /// `healthgate_no_ready_backend_total`: requests answered 503 because no node was ready.
    pub no_ready_backend_total: IntCounter,
    /// `healthgate_request_duration_seconds`: client request time through the proxy.
    pub request_duration_seconds: Histogram,
    /// `healthgate_config_reloads_total{result}`: reloads by result (`success|failure`).
    pub config_reloads_total: IntCounterVec,
}

impl Metrics {
    /// Create and register every metric.
    pub fn new() -> Result<Metrics, prometheus::Error> {
        let metrics = Metrics {
            registry: Registry::new(),
            nodes: NodeMetrics::default(),
            ready_backends: IntGauge::new(
                "healthgate_ready_backends",
                "Nodes in the routing table",
            )?,
            routing_fallback: IntGauge::new(
                "healthgate_routing_fallback",
                "1 while no node is ready and traffic goes to alive, not ready nodes (when_none_ready: any_alive)",
            )?,
            fallback_requests_total: IntCounter::new(
                "healthgate_fallback_requests_total",
                "Requests sent to alive, not ready nodes because no node was ready",
            )?,
            routing_table_generation: IntGauge::new(
                "healthgate_routing_table_generation",
                "Generation of the current routing table; bumped on every rebuild",
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
            config_reloads_total: IntCounterVec::new(
                Opts::new(
                    "healthgate_config_reloads_total",
                    "Configuration reloads (SIGHUP) by result: success, or failure (the old configuration stays)",
                ),
                &["result"],
            )?,
        };
        // Both results exist from the start, so a rate() or an alert sees a zero.
        for result in ["success", "failure"] {
            metrics.config_reloads_total.with_label_values(&[result]);
        }
        for c in [
            Box::new(ProcessCollector::for_self()) as Box<dyn prometheus::core::Collector>,
            Box::new(metrics.ready_backends.clone()),
            Box::new(metrics.routing_table_generation.clone()),
            Box::new(metrics.routing_fallback.clone()),
            Box::new(metrics.fallback_requests_total.clone()),
            Box::new(metrics.retries_total.clone()),
            Box::new(metrics.no_ready_backend_total.clone()),
            Box::new(metrics.request_duration_seconds.clone()),
            Box::new(metrics.config_reloads_total.clone()),
        ] {
            metrics.registry.register(c)?;
        }
        Ok(metrics)
    }

    /// Add a node: every series it has starts at zero (so dashboards see it from the
    /// start) in `starting`. The proxy and the prober count through the returned handle.
    pub fn register_node(&self, node: &str) -> Arc<NodeSeries> {
        self.nodes.add(node)
    }

    /// After a reload: export exactly these nodes' series, in this order (a removed node's
    /// series disappear; a kept node's keep counting).
    pub fn set_nodes(&self, series: Vec<Arc<NodeSeries>>) {
        self.nodes.set(series);
    }

    /// The Prometheus text exposition of every metric, in pieces of about `piece_bytes`:
    /// the process-wide metrics first, then the per-node families (see
    /// `NodeMetrics::pieces` for why a scrape is not one buffer).
    pub fn exposition(&self, piece_bytes: usize) -> impl Iterator<Item = String> + Send + use<> {
        let mut head = String::new();
        if let Err(e) = TextEncoder::new().encode_utf8(&self.registry.gather(), &mut head) {
            log::error!("metrics encoding failed: {e}");
        }
        std::iter::once(head).chain(self.nodes.pieces(piece_bytes))
    }
}
