//! Every per-node series in plain atomics, rendered straight to the text format.
//!
//! The prometheus crate's labelled vectors keep a full descriptor and label set per series;
//! with ~30 series and 3 histograms per node that measured about 16 KiB a node, more than
//! 5000 nodes can afford. Here a node costs under 1 KiB.

use super::histogram::{DURATION_BUCKETS, DurationHistogram};
use crate::health::{NodeState, ProbeResult};
use std::fmt::Write as _;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU64, Ordering};
use std::sync::{Arc, PoisonError, RwLock};

/// Status classes counted per node: 1xx–5xx, and `error` for no response at all.
pub const STATUS_CLASSES: [&str; 6] = ["1xx", "2xx", "3xx", "4xx", "5xx", "error"];

/// A kind of health probe: the `probe` label.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Probe {
    /// `GET /healthz` on the health port.
    Readiness,
    /// `GET /liveness` on the health port.
    Liveness,
    /// A TCP connect to the traffic port.
    Tcp,
}

impl Probe {
    /// Every kind, in label order.
    pub const ALL: [Probe; 3] = [Probe::Readiness, Probe::Liveness, Probe::Tcp];

    /// The metrics label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Probe::Readiness => "readiness",
            Probe::Liveness => "liveness",
            Probe::Tcp => "tcp",
        }
    }
}

/// One node's counters, gauges and histograms.
#[derive(Debug)]
pub struct NodeSeries {
    /// The node name, escaped for use as a label value.
    label: Box<str>,
    state: AtomicU8,
    /// In the current routing table (ready, or alive under an `any_alive` fallback).
    routed: AtomicBool,
    drained: AtomicBool,
    ejected: AtomicBool,
    ejections: AtomicU64,
    faulty_capps: AtomicU64,
    transitions: [AtomicU64; NodeState::ALL.len()],
    probes: [[AtomicU64; ProbeResult::ALL.len()]; Probe::ALL.len()],
    probe_seconds: [DurationHistogram; Probe::ALL.len()],
    requests: [AtomicU64; STATUS_CLASSES.len()],
    connect_failures: AtomicU64,
}

impl NodeSeries {
    fn new(name: &str) -> NodeSeries {
        NodeSeries {
            label: escape_label(name).into(),
            state: AtomicU8::new(NodeState::Starting.to_u8()),
            routed: AtomicBool::new(false),
            drained: AtomicBool::new(false),
            ejected: AtomicBool::new(false),
            ejections: AtomicU64::new(0),
            faulty_capps: AtomicU64::new(0),
            transitions: Default::default(),
            probes: Default::default(),
            probe_seconds: Default::default(),
            requests: Default::default(),
            connect_failures: AtomicU64::new(0),
        }
    }

    /// Count one finished request by its upstream status (`None`: no response).
    pub fn count_status(&self, status: Option<u16>) {
        let index = match status {
            Some(code @ 100..=599) => usize::from(code / 100 - 1),
            _ => STATUS_CLASSES.len() - 1,
        };
        self.requests[index].fetch_add(1, Ordering::Relaxed);
    }

    /// Requests counted, every status class together.
    pub fn requests_total(&self) -> u64 {
        self.requests
            .iter()
            .map(|c| c.load(Ordering::Relaxed))
            .sum()
    }

    /// Requests that failed on the node: 5xx answers and attempts with no answer.
    pub fn errors_total(&self) -> u64 {
        // STATUS_CLASSES ends with "5xx", "error".
        self.requests[4..]
            .iter()
            .map(|c| c.load(Ordering::Relaxed))
            .sum()
    }

    /// Count a failed connection (or broken pooled connection) from live traffic.
    pub fn count_connect_failure(&self) {
        self.connect_failures.fetch_add(1, Ordering::Relaxed);
    }

    /// Count a probe and record its duration.
    pub fn observe_probe(&self, probe: Probe, result: ProbeResult, seconds: f64) {
        let p = probe as usize;
        self.probes[p][result as usize].fetch_add(1, Ordering::Relaxed);
        self.probe_seconds[p].observe(seconds);
    }

    /// Record a state change: the state gauges and the transition counter.
    pub fn record_transition(&self, to: NodeState) {
        self.state.store(to.to_u8(), Ordering::Relaxed);
        self.transitions[to as usize].fetch_add(1, Ordering::Relaxed);
    }

    /// Record whether the node is in the routing table just published.
    pub fn set_routed(&self, routed: bool) {
        self.routed.store(routed, Ordering::Relaxed);
    }

    /// Record whether the operator drained the node.
    pub fn set_drained(&self, drained: bool) {
        self.drained.store(drained, Ordering::Relaxed);
    }

    /// Record an ejection by outlier detection.
    pub fn record_ejection(&self) {
        self.ejected.store(true, Ordering::Relaxed);
        self.ejections.fetch_add(1, Ordering::Relaxed);
    }

    /// Record the end of an ejection.
    pub fn end_ejection(&self) {
        self.ejected.store(false, Ordering::Relaxed);
    }

    /// Record how many faulty CApps the last readiness answer listed.
    pub fn set_faulty_capps(&self, count: usize) {
        self.faulty_capps.store(count as u64, Ordering::Relaxed);
    }
}

/// A metric family's name, help and type.
struct Family(&'static str, &'static str, &'static str);

const UP: Family = Family(
    "healthgate_backend_up",
    "1 when the node is in the routing table, else 0",
    "gauge",
);
const STATE: Family = Family(
    "healthgate_backend_state",
    "1 for the node's current state (starting, ready, not_ready, dead), else 0",
    "gauge",
);
const DRAINED: Family = Family(
    "healthgate_backend_drained",
    "1 while the operator has drained the node out of the routing table",
    "gauge",
);
const EJECTED: Family = Family(
    "healthgate_backend_ejected",
    "1 while outlier detection keeps the node out of the routing table",
    "gauge",
);
const EJECTIONS: Family = Family(
    "healthgate_outlier_ejections_total",
    "Times outlier detection ejected the node",
    "counter",
);
const FAULTY_CAPPS: Family = Family(
    "healthgate_backend_faulty_capps",
    "Number of faulty CApps in the node's last readiness answer",
    "gauge",
);
const PROBES: Family = Family(
    "healthgate_probes_total",
    "Health probes by node, probe (readiness, liveness, tcp) and result",
    "counter",
);
const PROBE_SECONDS: Family = Family(
    "healthgate_probe_duration_seconds",
    "Health probe duration by node and probe",
    "histogram",
);
const TRANSITIONS: Family = Family(
    "healthgate_backend_transitions_total",
    "State changes by node and new state",
    "counter",
);
const REQUESTS: Family = Family(
    "healthgate_upstream_requests_total",
    "Requests proxied by node and status class (1xx..5xx, error for no response)",
    "counter",
);
const CONNECT_FAILURES: Family = Family(
    "healthgate_upstream_connect_failures_total",
    "Failed connections to a node's traffic port from live traffic",
    "counter",
);

/// Every node's series, in configuration order.
#[derive(Clone, Default)]
pub struct NodeMetrics {
    nodes: Arc<RwLock<Vec<Arc<NodeSeries>>>>,
}

impl NodeMetrics {
    /// Add a node's series, all at zero and `starting`, and return it.
    pub fn add(&self, name: &str) -> Arc<NodeSeries> {
        let series = Arc::new(NodeSeries::new(name));
        self.nodes
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .push(series.clone());
        series
    }

    /// Replace the exported series with `series`.
    pub fn set(&self, series: Vec<Arc<NodeSeries>>) {
        *self.nodes.write().unwrap_or_else(PoisonError::into_inner) = series;
    }

    /// Every per-node family in the Prometheus text format, in pieces of about
    /// `piece_bytes` (at least one node's lines each).
    ///
    /// A scrape is written piece by piece: 5000 nodes render ~29 MB, and holding that
    /// whole (as one growing buffer) cost ~70 MB of peak RSS per scrape. The pieces walk a
    /// copy of the node list taken now, so a reload during the scrape changes nothing.
    pub fn pieces(&self, piece_bytes: usize) -> Pieces {
        let nodes = self.nodes.read().unwrap_or_else(PoisonError::into_inner);
        Pieces {
            nodes: nodes.clone(),
            family: 0,
            next_node: 0,
            // At least one byte: a piece of 0 would never move on.
            piece_bytes: piece_bytes.max(1),
        }
    }
}

/// The text of every per-node family, in pieces: see [`NodeMetrics::pieces`].
pub struct Pieces {
    nodes: Vec<Arc<NodeSeries>>,
    /// Index into [`FAMILIES`] of the family being written.
    family: usize,
    /// The node whose lines come next (0: the family's header comes first).
    next_node: usize,
    piece_bytes: usize,
}

impl Iterator for Pieces {
    type Item = String;

    fn next(&mut self) -> Option<String> {
        let mut out = String::new();
        while let Some((family, write_node)) = FAMILIES.get(self.family) {
            if self.next_node == 0 {
                if out.len() >= self.piece_bytes {
                    return Some(out);
                }
                header(&mut out, family);
            }
            while let Some(node) = self.nodes.get(self.next_node) {
                write_node(&mut out, node);
                self.next_node += 1;
                if out.len() >= self.piece_bytes && self.next_node < self.nodes.len() {
                    return Some(out);
                }
            }
            (self.family, self.next_node) = (self.family + 1, 0);
        }
        (!out.is_empty()).then_some(out)
    }
}

/// Writes one node's lines of a family.
type WriteNode = fn(&mut String, &NodeSeries);

/// Every per-node family in exposition order, each with the writer of one node's lines.
/// Whole families stay together, as the text format requires.
const FAMILIES: [(Family, WriteNode); 11] = [
    (UP, |out, n| {
        let routed = n.routed.load(Ordering::Relaxed);
        sample(out, UP.0, "", &n.label, &[], u64::from(routed));
    }),
    (DRAINED, |out, n| {
        let drained = n.drained.load(Ordering::Relaxed);
        sample(out, DRAINED.0, "", &n.label, &[], u64::from(drained));
    }),
    (EJECTED, |out, n| {
        let ejected = n.ejected.load(Ordering::Relaxed);
        sample(out, EJECTED.0, "", &n.label, &[], u64::from(ejected));
    }),
    (EJECTIONS, |out, n| {
        sample(out, EJECTIONS.0, "", &n.label, &[], load(&n.ejections));
    }),
    (STATE, |out, n| {
        // One read per node, so a flip during the scrape cannot show two states.
        let current = NodeState::from_u8(n.state.load(Ordering::Relaxed));
        for s in NodeState::ALL {
            let labels = [("state", s.as_str())];
            sample(out, STATE.0, "", &n.label, &labels, u64::from(s == current));
        }
    }),
    (FAULTY_CAPPS, |out, n| {
        sample(
            out,
            FAULTY_CAPPS.0,
            "",
            &n.label,
            &[],
            load(&n.faulty_capps),
        );
    }),
    (PROBES, |out, n| {
        for p in Probe::ALL {
            for r in ProbeResult::ALL {
                let labels = [("probe", p.as_str()), ("result", r.as_str())];
                let value = load(&n.probes[p as usize][r as usize]);
                sample(out, PROBES.0, "", &n.label, &labels, value);
            }
        }
    }),
    (PROBE_SECONDS, |out, n| {
        for p in Probe::ALL {
            histogram(out, &n.label, p, &n.probe_seconds[p as usize]);
        }
    }),
    (TRANSITIONS, |out, n| {
        for s in NodeState::ALL {
            let value = load(&n.transitions[s as usize]);
            sample(
                out,
                TRANSITIONS.0,
                "",
                &n.label,
                &[("to", s.as_str())],
                value,
            );
        }
    }),
    (REQUESTS, |out, n| {
        for (class, value) in STATUS_CLASSES.iter().zip(&n.requests) {
            let labels = [("class", *class)];
            sample(out, REQUESTS.0, "", &n.label, &labels, load(value));
        }
    }),
    (CONNECT_FAILURES, |out, n| {
        let value = load(&n.connect_failures);
        sample(out, CONNECT_FAILURES.0, "", &n.label, &[], value);
    }),
];

fn load(counter: &AtomicU64) -> u64 {
    counter.load(Ordering::Relaxed)
}

fn header(out: &mut String, Family(name, help, kind): &Family) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
}

/// One line: `name{node="…",k="v",…} value`. `node` is pre-escaped; the other label
/// values are fixed strings that need no escaping.
fn sample(
    out: &mut String,
    name: &str,
    suffix: &str,
    node: &str,
    labels: &[(&str, &str)],
    value: impl std::fmt::Display,
) {
    let _ = write!(out, "{name}{suffix}{{node=\"{node}\"");
    for (k, v) in labels {
        let _ = write!(out, ",{k}=\"{v}\"");
    }
    let _ = writeln!(out, "}} {value}");
}

fn histogram(out: &mut String, node: &str, probe: Probe, h: &DurationHistogram) {
    let name = PROBE_SECONDS.0;
    let probe = ("probe", probe.as_str());
    let snapshot = h.snapshot();
    for (upper, count) in DURATION_BUCKETS.iter().zip(snapshot.cumulative) {
        let le = upper.to_string();
        sample(out, name, "_bucket", node, &[probe, ("le", &le)], count);
    }
    let count = snapshot.count;
    sample(out, name, "_bucket", node, &[probe, ("le", "+Inf")], count);
    sample(out, name, "_sum", node, &[probe], snapshot.sum);
    sample(out, name, "_count", node, &[probe], count);
}

/// A label value in the text format: backslash, double quote and newline escaped.
fn escape_label(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_names_are_escaped_in_labels() {
        assert_eq!(escape_label(r#"a"b\c"#), r#"a\"b\\c"#);
        assert_eq!(escape_label("x\ny"), "x\\ny");
    }

    #[test]
    fn renders_every_family_with_its_series() {
        let metrics = NodeMetrics::default();
        let n = metrics.add("mi-1");
        n.record_transition(NodeState::Ready);
        n.set_routed(true);
        n.observe_probe(Probe::Readiness, ProbeResult::Success, 0.002);
        n.count_status(Some(204));
        let text: String = metrics.pieces(usize::MAX).collect();
        for line in [
            "healthgate_backend_up{node=\"mi-1\"} 1",
            "healthgate_backend_state{node=\"mi-1\",state=\"ready\"} 1",
            "healthgate_backend_state{node=\"mi-1\",state=\"starting\"} 0",
            "healthgate_probes_total{node=\"mi-1\",probe=\"readiness\",result=\"success\"} 1",
            "healthgate_probe_duration_seconds_bucket{node=\"mi-1\",probe=\"readiness\",le=\"0.0025\"} 1",
            "healthgate_probe_duration_seconds_bucket{node=\"mi-1\",probe=\"readiness\",le=\"+Inf\"} 1",
            "healthgate_probe_duration_seconds_count{node=\"mi-1\",probe=\"tcp\"} 0",
            "healthgate_backend_transitions_total{node=\"mi-1\",to=\"ready\"} 1",
            "healthgate_upstream_requests_total{node=\"mi-1\",class=\"2xx\"} 1",
            "healthgate_upstream_connect_failures_total{node=\"mi-1\"} 0",
        ] {
            assert!(
                text.lines().any(|l| l == line),
                "missing {line:?} in\n{text}"
            );
        }
        assert_eq!(text.matches("# TYPE ").count(), 11);
    }

    #[test]
    fn pieces_end_on_whole_lines_and_join_to_the_whole_text() {
        let metrics = NodeMetrics::default();
        for i in 0..40 {
            metrics.add(&format!("mi-{i}"));
        }
        let whole: String = metrics.pieces(usize::MAX).collect();
        let pieces: Vec<String> = metrics.pieces(4096).collect();
        assert!(pieces.len() > 20, "{} pieces", pieces.len());
        assert!(
            pieces.concat() == whole,
            "the pieces differ from the whole text"
        );
        // A piece stops at the first node after the limit: over it by at most one node's
        // lines of one family (the probe histograms, ~5 KB).
        for piece in &pieces {
            assert!(piece.ends_with('\n'), "{piece:?}");
            assert!(piece.len() < 4096 + 8192, "{} bytes", piece.len());
        }
        assert_eq!(whole.matches("# TYPE ").count(), 11);
        // A node list changed after the scrape began does not change that scrape.
        let mut scrape = metrics.pieces(4096);
        let first = scrape.next().unwrap_or_default();
        metrics.set(Vec::new());
        let rest: String = scrape.collect();
        assert!(
            first + &rest == whole,
            "a changed node list changed the scrape"
        );
    }
}
