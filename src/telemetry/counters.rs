//! A member's counters: what happened to it (probes, transitions, requests, ejections), in
//! plain atomics. Only events are counted here; what a member *is* right now (its state, its
//! drain, its ejection) is read from the one place that holds it at scrape time
//! ([`super::NodeGauges`]).
//!
//! The prometheus crate's labelled vectors keep a full descriptor and label set per series;
//! with ~30 series and 3 histograms per node that measured about 16 KiB a node, more than
//! 5000 nodes can afford. Here a node costs under 1 KiB.

use super::histogram::DurationHistogram;
use crate::health::{NodeState, ProbeKind, ProbeResult};
use std::sync::atomic::{AtomicU64, Ordering};

/// Status classes counted per node: 1xx–5xx, and `error` for no response at all.
pub const STATUS_CLASSES: [&str; 6] = ["1xx", "2xx", "3xx", "4xx", "5xx", "error"];

/// One member's counters and probe histograms.
#[derive(Debug)]
pub struct Counters {
    /// The node name, escaped for use as a label value.
    pub(super) label: Box<str>,
    pub(super) ejections: AtomicU64,
    pub(super) transitions: [AtomicU64; NodeState::ALL.len()],
    pub(super) probes: [[AtomicU64; ProbeResult::ALL.len()]; ProbeKind::ALL.len()],
    pub(super) probe_seconds: [DurationHistogram; ProbeKind::ALL.len()],
    pub(super) requests: [AtomicU64; STATUS_CLASSES.len()],
    pub(super) connect_failures: AtomicU64,
    pub(super) tls_failures: AtomicU64,
}

impl Counters {
    /// Every counter at zero for the node named `name`.
    pub fn new(name: &str) -> Counters {
        Counters {
            label: escape_label(name).into(),
            ejections: AtomicU64::new(0),
            transitions: Default::default(),
            probes: Default::default(),
            probe_seconds: Default::default(),
            requests: Default::default(),
            connect_failures: AtomicU64::new(0),
            tls_failures: AtomicU64::new(0),
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
        self.requests.iter().map(load).sum()
    }

    /// Requests that failed on the node: 5xx answers and attempts with no answer.
    pub fn errors_total(&self) -> u64 {
        // STATUS_CLASSES ends with "5xx", "error".
        self.requests[4..].iter().map(load).sum()
    }

    /// Count a failed connection (or broken pooled connection) from live traffic.
    pub fn count_connect_failure(&self) {
        self.connect_failures.fetch_add(1, Ordering::Relaxed);
    }

    /// Count a TLS handshake with the node's traffic port that failed, from live traffic.
    pub fn count_tls_failure(&self) {
        self.tls_failures.fetch_add(1, Ordering::Relaxed);
    }

    /// Count a probe and record its duration.
    pub fn observe_probe(&self, kind: ProbeKind, result: ProbeResult, seconds: f64) {
        let k = kind as usize;
        self.probes[k][result as usize].fetch_add(1, Ordering::Relaxed);
        self.probe_seconds[k].observe(seconds);
    }

    /// Count a state change to `to`.
    pub fn count_transition(&self, to: NodeState) {
        self.transitions[to as usize].fetch_add(1, Ordering::Relaxed);
    }

    /// Count an ejection by outlier detection.
    pub fn count_ejection(&self) {
        self.ejections.fetch_add(1, Ordering::Relaxed);
    }
}

pub(super) fn load(counter: &AtomicU64) -> u64 {
    counter.load(Ordering::Relaxed)
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
    fn statuses_fall_into_their_class() {
        let c = Counters::new("mi-1");
        for status in [Some(101), Some(204), Some(503), Some(42), None] {
            c.count_status(status);
        }
        assert_eq!(c.requests_total(), 5);
        assert_eq!(c.errors_total(), 3, "503, an impossible code and no answer");
    }
}
