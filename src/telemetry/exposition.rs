//! The per-node metric families, rendered straight to the Prometheus text format from a
//! scrape's [`NodeSample`]s: each member's counters plus its gauges as read at scrape time.

use super::counters::{Counters, STATUS_CLASSES, load};
use super::histogram::{DURATION_BUCKETS, DurationHistogram};
use crate::health::{NodeState, ProbeKind, ProbeResult};
use std::fmt::Write as _;
use std::sync::Arc;

/// What a member is at the moment of a scrape, read from where each fact is kept.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeGauges {
    /// Its state.
    pub state: NodeState,
    /// In the routing table now (ready, or alive under an `any_alive` fallback).
    pub up: bool,
    /// Drained by the operator.
    pub drained: bool,
    /// Kept out by outlier detection.
    pub ejected: bool,
    /// Faulty CApps in its last readiness answer.
    pub faulty_capps: usize,
    /// Of those, the mapped ones (`capps`), by their configured names: label values
    /// bounded by the configuration, and of safe characters (validated).
    pub mapped_faulty: Vec<String>,
}

/// One member in a scrape: its counters and its gauges.
#[derive(Clone, Debug)]
pub struct NodeSample {
    /// The member's counters.
    pub counters: Arc<Counters>,
    /// The member's gauges, read at scrape time.
    pub gauges: NodeGauges,
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
    "1 for the node's current state (starting, ready, partly_ready, not_ready, dead), else 0",
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
const CAPP_FAULTY: Family = Family(
    "healthgate_capp_faulty",
    "1 for each mapped CApp (capps) the node's last readiness answer lists as faulty; its paths go to other nodes",
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

const TLS_FAILURES: Family = Family(
    "healthgate_upstream_tls_failures_total",
    "Failed TLS handshakes with a node's traffic port from live traffic (also counted as connect failures)",
    "counter",
);

/// The text of every per-node family, in pieces of about `piece_bytes` (at least one node's
/// lines each).
///
/// A scrape is written piece by piece: 5000 nodes render ~29 MB, and holding that whole (as
/// one growing buffer) cost ~70 MB of peak RSS per scrape. The samples were taken when the
/// scrape began, so a reload or a flip during it changes nothing in it.
pub struct Pieces {
    nodes: Vec<NodeSample>,
    /// Index into [`FAMILIES`] of the family being written.
    family: usize,
    /// The node whose lines come next (0: the family's header comes first).
    next_node: usize,
    piece_bytes: usize,
}

impl Pieces {
    /// The pieces of `nodes`' families.
    pub fn new(nodes: Vec<NodeSample>, piece_bytes: usize) -> Pieces {
        Pieces {
            nodes,
            family: 0,
            next_node: 0,
            // At least one byte: a piece of 0 would never move on.
            piece_bytes: piece_bytes.max(1),
        }
    }
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
                write_node(&mut out, &node.counters, &node.gauges);
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
type WriteNode = fn(&mut String, &Counters, &NodeGauges);

/// Every per-node family in exposition order, each with the writer of one node's lines.
/// Whole families stay together, as the text format requires.
const FAMILIES: [(Family, WriteNode); 13] = [
    (UP, |out, c, g| {
        sample(out, UP.0, "", &c.label, &[], u64::from(g.up));
    }),
    (DRAINED, |out, c, g| {
        sample(out, DRAINED.0, "", &c.label, &[], u64::from(g.drained));
    }),
    (EJECTED, |out, c, g| {
        sample(out, EJECTED.0, "", &c.label, &[], u64::from(g.ejected));
    }),
    (EJECTIONS, |out, c, _| {
        sample(out, EJECTIONS.0, "", &c.label, &[], load(&c.ejections));
    }),
    (STATE, |out, c, g| {
        for s in NodeState::ALL {
            let labels = [("state", s.as_str())];
            sample(out, STATE.0, "", &c.label, &labels, u64::from(s == g.state));
        }
    }),
    (FAULTY_CAPPS, |out, c, g| {
        sample(out, FAULTY_CAPPS.0, "", &c.label, &[], g.faulty_capps);
    }),
    (CAPP_FAULTY, |out, c, g| {
        for capp in &g.mapped_faulty {
            sample(out, CAPP_FAULTY.0, "", &c.label, &[("capp", capp)], 1);
        }
    }),
    (PROBES, |out, c, _| {
        for k in ProbeKind::ALL {
            for r in ProbeResult::ALL {
                let labels = [("probe", k.as_str()), ("result", r.as_str())];
                let value = load(&c.probes[k as usize][r as usize]);
                sample(out, PROBES.0, "", &c.label, &labels, value);
            }
        }
    }),
    (PROBE_SECONDS, |out, c, _| {
        for k in ProbeKind::ALL {
            histogram(out, &c.label, k, &c.probe_seconds[k as usize]);
        }
    }),
    (TRANSITIONS, |out, c, _| {
        for s in NodeState::ALL {
            let value = load(&c.transitions[s as usize]);
            let labels = [("to", s.as_str())];
            sample(out, TRANSITIONS.0, "", &c.label, &labels, value);
        }
    }),
    (REQUESTS, |out, c, _| {
        for (class, value) in STATUS_CLASSES.iter().zip(&c.requests) {
            let labels = [("class", *class)];
            sample(out, REQUESTS.0, "", &c.label, &labels, load(value));
        }
    }),
    (CONNECT_FAILURES, |out, c, _| {
        let value = load(&c.connect_failures);
        sample(out, CONNECT_FAILURES.0, "", &c.label, &[], value);
    }),
    (TLS_FAILURES, |out, c, _| {
        let value = load(&c.tls_failures);
        sample(out, TLS_FAILURES.0, "", &c.label, &[], value);
    }),
];

fn header(out: &mut String, Family(name, help, kind): &Family) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
}

/// One line: `name{node="…",k="v",…} value`. `node` is pre-escaped; the other label
/// values are fixed strings or validated CApp names that need no escaping.
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

fn histogram(out: &mut String, node: &str, kind: ProbeKind, h: &DurationHistogram) {
    let name = PROBE_SECONDS.0;
    let probe = ("probe", kind.as_str());
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

#[cfg(test)]
mod tests {
    use super::*;

    fn node(name: &str, gauges: NodeGauges) -> NodeSample {
        NodeSample {
            counters: Arc::new(Counters::new(name)),
            gauges,
        }
    }

    const STARTING: NodeGauges = NodeGauges {
        state: NodeState::Starting,
        up: false,
        drained: false,
        ejected: false,
        faulty_capps: 0,
        mapped_faulty: Vec::new(),
    };

    #[test]
    fn renders_every_family_with_its_series() {
        let ready = NodeGauges {
            state: NodeState::PartlyReady,
            up: true,
            faulty_capps: 2,
            mapped_faulty: vec!["orders".into()],
            ..STARTING
        };
        let n = node("mi-1", ready);
        n.counters.count_transition(NodeState::Ready);
        let success = ProbeResult::Success;
        n.counters
            .observe_probe(ProbeKind::Readiness, success, 0.002);
        n.counters.count_status(Some(204));
        let text: String = Pieces::new(vec![n], usize::MAX).collect();
        for line in [
            "healthgate_backend_up{node=\"mi-1\"} 1",
            "healthgate_backend_state{node=\"mi-1\",state=\"partly_ready\"} 1",
            "healthgate_backend_state{node=\"mi-1\",state=\"ready\"} 0",
            "healthgate_capp_faulty{node=\"mi-1\",capp=\"orders\"} 1",
            "healthgate_backend_state{node=\"mi-1\",state=\"starting\"} 0",
            "healthgate_backend_faulty_capps{node=\"mi-1\"} 2",
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
        assert!(
            text.lines()
                .any(|l| l == "healthgate_upstream_tls_failures_total{node=\"mi-1\"} 0")
        );
        assert_eq!(text.matches("# TYPE ").count(), 13);
    }

    #[test]
    fn pieces_end_on_whole_lines_and_join_to_the_whole_text() {
        let nodes: Vec<NodeSample> = (0..40)
            .map(|i| node(&format!("mi-{i}"), STARTING.clone()))
            .collect();
        let whole: String = Pieces::new(nodes.clone(), usize::MAX).collect();
        let pieces: Vec<String> = Pieces::new(nodes, 4096).collect();
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
        assert_eq!(whole.matches("# TYPE ").count(), 13);
    }
}
