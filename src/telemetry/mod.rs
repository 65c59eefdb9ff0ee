//! Telemetry: every counter and histogram healthgate keeps, and their rendering in the
//! Prometheus text format. It records events and renders what it is given; it decides
//! nothing and holds no fact about a node's condition: gauges (state, up, drained, ejected,
//! ready nodes, generation) are read by the cluster at scrape time from where each fact is
//! kept, and handed in as a [`Scrape`].
//!
//! One struct owns its own `Registry` (no global state, so tests and several instances in one
//! process never collide). Label values come only from the configured node list and fixed
//! enums, never from client input.

mod counters;
mod exposition;
mod histogram;

pub use counters::{Counters, STATUS_CLASSES};
pub use exposition::{NodeGauges, NodeSample};
pub use histogram::{DURATION_BUCKETS, DurationHistogram, HistogramSnapshot};

use exposition::Pieces;
use prometheus::process_collector::ProcessCollector;
use prometheus::{
    Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry,
    TextEncoder,
};
use std::fmt::Write as _;

/// What the routing table is at the moment of a scrape.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TableGauges {
    /// Ready nodes in the table (0 in a fallback table).
    pub ready: usize,
    /// The table's generation.
    pub generation: u64,
    /// Whether the table routes to alive, not ready nodes because none is ready.
    pub fallback: bool,
    /// Per mapped CApp (`capps`), in configuration order: its name and the ready nodes
    /// that receive its paths (0 under a fallback).
    pub capps: Vec<(String, usize)>,
}

/// Everything a scrape reports that is read, not counted: the table and every member.
#[derive(Clone, Debug, Default)]
pub struct Scrape {
    /// The routing table's gauges.
    pub table: TableGauges,
    /// Every configured member, in configuration order.
    pub nodes: Vec<NodeSample>,
}

/// Where a connect failed for a reason of this host's own (`healthgate_local_connect_errors_total`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LocalErrorSource {
    /// A connection for client traffic.
    Traffic,
    /// A health probe.
    Probe,
}

impl LocalErrorSource {
    fn as_str(self) -> &'static str {
        match self {
            LocalErrorSource::Traffic => "traffic",
            LocalErrorSource::Probe => "probe",
        }
    }
}

/// The metrics registry and its typed handles.
#[derive(Clone)]
pub struct Metrics {
    registry: Registry,
    /// `healthgate_fallback_requests_total`: requests routed by a fallback table.
    pub fallback_requests_total: IntCounter,
    /// `healthgate_retries_total`: requests re-sent to another node.
    pub retries_total: IntCounter,
    /// `healthgate_no_ready_backend_total`: requests answered 503 because no node was ready.
    pub no_ready_backend_total: IntCounter,
    /// `healthgate_request_duration_seconds`: client request time through the proxy.
    pub request_duration_seconds: Histogram,
    /// `healthgate_config_reloads_total{result}`: reloads by result (`success|failure`).
    pub config_reloads_total: IntCounterVec,
    /// `healthgate_local_connect_errors_total{source}`: connects that failed for want of
    /// this host's own resources (descriptors, ports), which evict no node.
    local_connect_errors_total: IntCounterVec,
    /// `healthgate_client_connections`: client connections open on the traffic listeners.
    pub client_connections: IntGauge,
    /// `healthgate_connections_refused_total`: client connections closed at once because
    /// their listener held `limits.max_connections` already.
    pub connections_refused_total: IntCounter,
    /// `healthgate_tunnels`: upgraded connections (WebSocket) open now.
    pub tunnels: IntGauge,
    /// `healthgate_tls_handshake_failures_total`: client TLS handshakes on the traffic
    /// listeners that failed or did not finish in time.
    pub tls_handshake_failures_total: IntCounter,
    /// `healthgate_tls_certificate_expiry_seconds{listener}`: when each TLS listener's
    /// certificate expires, in Unix seconds (set at start and on every reload).
    tls_certificate_expiry_seconds: IntGaugeVec,
    /// `healthgate_discovery_resolutions_total{name,result}`: DNS resolutions of each
    /// `discovery` name by result (`success`, `empty`, `nxdomain`, `error`).
    discovery_resolutions_total: IntCounterVec,
    /// `healthgate_discovery_nodes{name}`: nodes each `discovery` name stands for now.
    discovery_nodes: IntGaugeVec,
}

/// How one DNS resolution of a `discovery` name ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Resolution {
    /// One or more addresses.
    Success,
    /// The name exists and has no address (NODATA).
    Empty,
    /// The name does not exist.
    NxDomain,
    /// No usable answer: timeout, SERVFAIL, refused.
    Error,
}

impl Resolution {
    /// Every result, for pre-registering label sets.
    pub const ALL: [Resolution; 4] = [
        Resolution::Success,
        Resolution::Empty,
        Resolution::NxDomain,
        Resolution::Error,
    ];

    /// The metrics label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Resolution::Success => "success",
            Resolution::Empty => "empty",
            Resolution::NxDomain => "nxdomain",
            Resolution::Error => "error",
        }
    }
}

impl Metrics {
    /// Create and register every metric.
    pub fn new() -> Result<Metrics, prometheus::Error> {
        let metrics = Metrics {
            registry: Registry::new(),
            fallback_requests_total: IntCounter::new(
                "healthgate_fallback_requests_total",
                "Requests sent to alive, not ready nodes because no node was ready",
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
            local_connect_errors_total: IntCounterVec::new(
                Opts::new(
                    "healthgate_local_connect_errors_total",
                    "Connects that failed for want of this host's own resources (file descriptors, ephemeral ports, buffers), by source (traffic, probe); no node is evicted for them",
                ),
                &["source"],
            )?,
            client_connections: IntGauge::new(
                "healthgate_client_connections",
                "Client connections open on the traffic listeners",
            )?,
            connections_refused_total: IntCounter::new(
                "healthgate_connections_refused_total",
                "Client connections closed at once because their listener held limits.max_connections already",
            )?,
            tunnels: IntGauge::new(
                "healthgate_tunnels",
                "Upgraded connections (WebSocket) tunnelled to a node now",
            )?,
            tls_handshake_failures_total: IntCounter::new(
                "healthgate_tls_handshake_failures_total",
                "Client TLS handshakes on the traffic listeners that failed or did not finish within timeouts.client_header",
            )?,
            tls_certificate_expiry_seconds: IntGaugeVec::new(
                Opts::new(
                    "healthgate_tls_certificate_expiry_seconds",
                    "When each TLS listener's certificate expires (notAfter), in Unix seconds; alert on it minus time()",
                ),
                &["listener"],
            )?,
            discovery_resolutions_total: IntCounterVec::new(
                Opts::new(
                    "healthgate_discovery_resolutions_total",
                    "DNS resolutions of each discovery name by result (success, empty, nxdomain, error); on any but success the last known nodes stay",
                ),
                &["name", "result"],
            )?,
            discovery_nodes: IntGaugeVec::new(
                Opts::new(
                    "healthgate_discovery_nodes",
                    "Nodes each discovery name stands for now (its last known addresses, at most max_nodes)",
                ),
                &["name"],
            )?,
        };
        // Every label value exists from the start, so a rate() or an alert sees a zero.
        for result in ["success", "failure"] {
            metrics.config_reloads_total.with_label_values(&[result]);
        }
        for source in [LocalErrorSource::Traffic, LocalErrorSource::Probe] {
            metrics
                .local_connect_errors_total
                .with_label_values(&[source.as_str()]);
        }
        for c in [
            Box::new(ProcessCollector::for_self()) as Box<dyn prometheus::core::Collector>,
            Box::new(metrics.fallback_requests_total.clone()),
            Box::new(metrics.retries_total.clone()),
            Box::new(metrics.no_ready_backend_total.clone()),
            Box::new(metrics.request_duration_seconds.clone()),
            Box::new(metrics.config_reloads_total.clone()),
            Box::new(metrics.local_connect_errors_total.clone()),
            Box::new(metrics.client_connections.clone()),
            Box::new(metrics.connections_refused_total.clone()),
            Box::new(metrics.tunnels.clone()),
            Box::new(metrics.tls_handshake_failures_total.clone()),
            Box::new(metrics.tls_certificate_expiry_seconds.clone()),
            Box::new(metrics.discovery_resolutions_total.clone()),
            Box::new(metrics.discovery_nodes.clone()),
        ] {
            metrics.registry.register(c)?;
        }
        Ok(metrics)
    }

    /// Count a reload by whether it applied.
    pub fn count_reload(&self, success: bool) {
        let result = if success { "success" } else { "failure" };
        self.config_reloads_total.with_label_values(&[result]).inc();
    }

    /// Set when the certificate of the TLS listener `listener` (its address) expires.
    pub fn set_certificate_expiry(&self, listener: &str, not_after: std::time::SystemTime) {
        let seconds = not_after
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX));
        self.tls_certificate_expiry_seconds
            .with_label_values(&[listener])
            .set(seconds);
    }

    /// Count a resolution of the `discovery` name `name`.
    pub fn count_resolution(&self, name: &str, result: Resolution) {
        for r in Resolution::ALL {
            // Every result of a name exists from its first resolution on.
            let counter = self
                .discovery_resolutions_total
                .with_label_values(&[name, r.as_str()]);
            if r == result {
                counter.inc();
            }
        }
    }

    /// The number of nodes the `discovery` name `name` stands for now.
    pub fn set_discovered(&self, name: &str, nodes: usize) {
        let nodes = i64::try_from(nodes).unwrap_or(i64::MAX);
        self.discovery_nodes.with_label_values(&[name]).set(nodes);
    }

    /// Drop the series of a `discovery` name a reload removed.
    pub fn forget_discovery(&self, name: &str) {
        let _ = self.discovery_nodes.remove_label_values(&[name]);
        for r in Resolution::ALL {
            let _ = self
                .discovery_resolutions_total
                .remove_label_values(&[name, r.as_str()]);
        }
    }

    /// Count a connect that failed for a local reason; returns the count so far from this
    /// source (so the caller can log a burst once, on its first error).
    pub fn count_local_connect_error(&self, source: LocalErrorSource) -> u64 {
        let counter = self
            .local_connect_errors_total
            .with_label_values(&[source.as_str()]);
        counter.inc();
        counter.get()
    }

    /// The Prometheus text exposition of every metric, in pieces of about `piece_bytes`: the
    /// process-wide metrics and the table's gauges first, then the per-node families (see
    /// [`exposition::Pieces`] for why a scrape is not one buffer).
    pub fn exposition(
        &self,
        scrape: Scrape,
        piece_bytes: usize,
    ) -> impl Iterator<Item = String> + Send + use<> {
        let mut head = String::new();
        if let Err(e) = TextEncoder::new().encode_utf8(&self.registry.gather(), &mut head) {
            log::error!("metrics encoding failed: {e}");
        }
        table_gauges(&mut head, &scrape.table);
        std::iter::once(head).chain(Pieces::new(scrape.nodes, piece_bytes))
    }
}

/// The routing table's gauges, in the text format.
fn table_gauges(out: &mut String, table: &TableGauges) {
    let gauges = [
        (
            "healthgate_ready_backends",
            "Ready nodes in the routing table",
            table.ready as u64,
        ),
        (
            "healthgate_routing_fallback",
            "1 while no node is ready and traffic goes to alive, not ready nodes (when_none_ready: any_alive)",
            u64::from(table.fallback),
        ),
        (
            "healthgate_routing_table_generation",
            "Generation of the current routing table; bumped on every rebuild",
            table.generation,
        ),
    ];
    for (name, help, value) in gauges {
        let _ = writeln!(
            out,
            "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {value}"
        );
    }
    let name = "healthgate_capp_ready_nodes";
    let _ = writeln!(
        out,
        "# HELP {name} Ready nodes that receive a mapped CApp's paths (capps): 0 when none can serve them\n# TYPE {name} gauge"
    );
    for (capp, nodes) in &table.capps {
        // CApp names are validated to letters, digits, '-', '_' and '.': no escaping.
        let _ = writeln!(out, "{name}{{capp=\"{capp}\"}} {nodes}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_gauges_are_what_the_scrape_says() {
        let metrics = Metrics::new().expect("metrics");
        let scrape = Scrape {
            table: TableGauges {
                ready: 2,
                generation: 7,
                fallback: false,
                capps: vec![("orders".into(), 1)],
            },
            nodes: Vec::new(),
        };
        let text: String = metrics.exposition(scrape, usize::MAX).collect();
        for line in [
            "healthgate_ready_backends 2",
            "healthgate_routing_table_generation 7",
            "healthgate_routing_fallback 0",
            "healthgate_capp_ready_nodes{capp=\"orders\"} 1",
            "healthgate_config_reloads_total{result=\"failure\"} 0",
            "healthgate_local_connect_errors_total{source=\"probe\"} 0",
        ] {
            assert!(text.lines().any(|l| l == line), "no {line:?} in\n{text}");
        }
    }
}
