//! From what a scenario did (its incidents), what the client saw (the load's records) and
//! what the proxy showed (the view's log) to the numbers in the table.

use crate::capps::{self, PathCount};
use crate::load::Record;
use crate::view::{Transition, first_at_or_after};
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

/// One node going out and/or coming back during a scenario.
#[derive(Clone, Debug)]
pub struct Incident {
    /// The node.
    pub node: String,
    /// When it stopped being able to serve properly (`None`: it only joins).
    pub out_at: Option<Instant>,
    /// When it could serve again, seen directly (`None`: it stays out).
    pub back_at: Option<Instant>,
    /// Intervals in which requests it answers count as "sent after it went out" (open end:
    /// until the run ends).
    pub bad: Vec<(Instant, Option<Instant>)>,
}

impl Incident {
    /// A node out from `out_at` until `back_at`.
    pub fn between(node: &str, out_at: Instant, back_at: Option<Instant>) -> Incident {
        Incident {
            node: node.to_string(),
            out_at: Some(out_at),
            back_at,
            bad: vec![(out_at, back_at)],
        }
    }
}

/// What a scenario did, to be measured against the records.
#[derive(Clone, Debug, Default)]
pub struct Outcome {
    /// Nodes that went out or came in.
    pub incidents: Vec<Incident>,
    /// The event window for the p99 column.
    pub window: Option<(Instant, Instant)>,
    /// Count only requests in flight at this moment (a graceful stop).
    pub in_flight_at: Option<Instant>,
    /// The proxy's failure counters span the run (false once a reload replaced the process).
    pub counters_kept: bool,
    /// Why the proxy cannot do this scenario ("n/a" in the table).
    pub na: Option<String>,
    /// Remarks for the detail table.
    pub notes: Vec<String>,
    /// Only requests under these path prefixes count as sent after out (a CApp went out on
    /// the node, not the whole node); `None`: every request.
    pub out_paths: Option<Vec<String>>,
    /// While the proxy's view showed every node out (per-path counts in that interval).
    pub all_out: Option<(Instant, Instant)>,
}

impl Outcome {
    /// A scenario the proxy does not support.
    pub fn na(reason: impl Into<String>) -> Outcome {
        Outcome {
            na: Some(reason.into()),
            ..Outcome::default()
        }
    }
}

/// A duration measured from the proxy's view.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Time {
    /// Does not apply.
    Na,
    /// Never seen before the run ended.
    Never,
    /// After this long.
    After(Duration),
}

impl Time {
    /// The worse of two (never is worst).
    fn worst(self, other: Time) -> Time {
        match (self, other) {
            (Time::Never, _) | (_, Time::Never) => Time::Never,
            (Time::After(a), Time::After(b)) => Time::After(a.max(b)),
            (Time::Na, x) | (x, Time::Na) => x,
        }
    }

    /// Seconds, for ranking (never: infinite, n/a: zero).
    pub fn rank(self) -> f64 {
        match self {
            Time::Na => 0.0,
            Time::Never => f64::INFINITY,
            Time::After(d) => d.as_secs_f64(),
        }
    }

    /// Table cell.
    pub fn cell(self) -> String {
        match self {
            Time::Na => "–".into(),
            Time::Never => "never".into(),
            Time::After(d) => format!("{:.2}", d.as_secs_f64()),
        }
    }
}

/// One proxy's numbers for one scenario (summed or worst over rounds).
#[derive(Clone, Debug)]
pub struct Measured {
    /// Requests that failed (non-2xx or transport error), in scope.
    pub failed: usize,
    /// Requests in scope.
    pub total: usize,
    /// Requests sent to a node after it went out (`None`: does not apply).
    pub after_out: Option<u64>,
    /// Worst time to evict.
    pub evict: Time,
    /// Worst time to readmit.
    pub readmit: Time,
    /// p99 latency in the event window.
    pub p99: Option<Duration>,
    /// Failed requests by kind (`503`, `transport`), for the notes.
    pub failures: BTreeMap<String, usize>,
    /// Not supported, and why.
    pub na: Option<String>,
    /// Every round ended in a harness error (a node or proxy did not start), and the first.
    pub error: Option<String>,
    /// Remarks.
    pub notes: Vec<String>,
    /// Per-path counts, one map per round (empty: the load sent to one path only).
    pub paths: Vec<BTreeMap<String, PathCount>>,
}

impl Measured {
    /// Not supported by this proxy.
    pub fn na(reason: String) -> Measured {
        Measured {
            na: Some(reason),
            ..Measured::empty()
        }
    }

    /// A round the harness could not run (its numbers are left out of the sums).
    pub fn error(message: String) -> Measured {
        Measured {
            notes: vec![format!("a round failed: {message}")],
            error: Some(message),
            ..Measured::empty()
        }
    }

    fn empty() -> Measured {
        Measured {
            failed: 0,
            total: 0,
            after_out: None,
            evict: Time::Na,
            readmit: Time::Na,
            p99: None,
            failures: BTreeMap::new(),
            na: None,
            error: None,
            notes: Vec::new(),
            paths: Vec::new(),
        }
    }

    /// Combine two rounds: counts add up, times and p99 take the worse; a failed round only
    /// adds its note.
    pub fn merge(mut self, mut other: Measured) -> Measured {
        let mut notes = std::mem::take(&mut self.notes);
        for note in std::mem::take(&mut other.notes) {
            if !notes.contains(&note) {
                notes.push(note);
            }
        }
        let merged = match (self.error.is_some(), other.error.is_some()) {
            (true, false) => other,
            (_, true) => self,
            (false, false) => {
                let mut failures = self.failures;
                for (kind, n) in other.failures {
                    *failures.entry(kind).or_default() += n;
                }
                Measured {
                    failed: self.failed + other.failed,
                    total: self.total + other.total,
                    after_out: match (self.after_out, other.after_out) {
                        (Some(a), Some(b)) => Some(a + b),
                        (a, b) => a.or(b),
                    },
                    evict: self.evict.worst(other.evict),
                    readmit: self.readmit.worst(other.readmit),
                    p99: self.p99.max(other.p99),
                    failures,
                    na: self.na.or(other.na),
                    error: None,
                    notes: Vec::new(),
                    paths: [self.paths, other.paths].concat(),
                }
            }
        };
        Measured { notes, ..merged }
    }

    /// Ranking key among HAProxy variants: fewer failures, fewer misdirected requests,
    /// faster eviction, faster readmission (unsupported last).
    pub fn rank(&self) -> (bool, usize, u64, f64, f64) {
        (
            self.na.is_some() || self.error.is_some(),
            self.failed,
            self.after_out.unwrap_or(0),
            self.evict.rank(),
            self.readmit.rank(),
        )
    }
}

/// Proxy counters of failed attempts per node, before and after the events.
pub type Counters = Option<BTreeMap<String, u64>>;

/// Measure one run.
pub fn measure(
    outcome: Outcome,
    records: &[Record],
    log: &[Transition],
    before: Counters,
    after: Counters,
) -> Measured {
    if let Some(reason) = outcome.na {
        return Measured::na(reason);
    }
    let in_scope: Vec<&Record> = match outcome.in_flight_at {
        Some(t) => records
            .iter()
            .filter(|r| r.start < t && r.end() > t)
            .collect(),
        None => records.iter().collect(),
    };
    let mut failures = BTreeMap::new();
    for r in in_scope.iter().filter(|r| !r.ok()) {
        let kind = r
            .status
            .map_or("transport error".to_string(), |s| s.to_string());
        *failures.entry(kind).or_default() += 1;
    }
    let failed = failures.values().sum();
    let mut notes = outcome.notes;
    let after_out = (outcome.in_flight_at.is_none() && !outcome.incidents.is_empty()).then(|| {
        let answered = records
            .iter()
            .filter(|r| {
                let counts = outcome
                    .out_paths
                    .as_ref()
                    .is_none_or(|ps| ps.iter().any(|p| r.path.starts_with(p.as_str())));
                counts
                    && outcome.incidents.iter().any(|i| {
                        r.node.as_deref() == Some(i.node.as_str())
                            && i.bad
                                .iter()
                                .any(|(a, b)| r.start >= *a && b.is_none_or(|b| r.start < b))
                    })
            })
            .count() as u64;
        let attempts = match (&before, &after) {
            // A reload or upgrade replaced the counting process: the scenario says so itself.
            _ if !outcome.counters_kept => 0,
            (Some(b), Some(a)) => outcome
                .incidents
                .iter()
                .filter(|i| i.out_at.is_some())
                .map(|i| {
                    a.get(&i.node)
                        .copied()
                        .unwrap_or(0)
                        .saturating_sub(b.get(&i.node).copied().unwrap_or(0))
                })
                .sum(),
            _ => {
                notes.push(
                    "proxy's failed-attempt counters unavailable: answered requests only".into(),
                );
                0
            }
        };
        answered + attempts
    });
    let mut evict = Time::Na;
    let mut readmit = Time::Na;
    for i in &outcome.incidents {
        let mut went_out = true;
        if let Some(out_at) = i.out_at {
            let e = first_at_or_after(log, &i.node, false, out_at)
                .map_or(Time::Never, |t| Time::After(t - out_at));
            went_out = e != Time::Never;
            evict = evict.worst(e);
        }
        if let (Some(back_at), true) = (i.back_at, went_out) {
            let r = first_at_or_after(log, &i.node, true, back_at)
                .map_or(Time::Never, |t| Time::After(t - back_at));
            readmit = readmit.worst(r);
        }
    }
    let mut latencies: Vec<Duration> = match (outcome.in_flight_at, outcome.window) {
        (Some(_), _) => in_scope.iter().map(|r| r.latency).collect(),
        (None, Some((a, b))) => records
            .iter()
            .filter(|r| r.start >= a && r.start <= b)
            .map(|r| r.latency)
            .collect(),
        (None, None) => Vec::new(),
    };
    latencies.sort();
    let p99 = (!latencies.is_empty()).then(|| latencies[(latencies.len() * 99).div_ceil(100) - 1]);
    Measured {
        failed,
        total: in_scope.len(),
        after_out,
        evict,
        readmit,
        p99,
        failures,
        na: None,
        error: None,
        notes,
        paths: Some(capps::count(records, outcome.all_out))
            .filter(|p| !p.is_empty())
            .into_iter()
            .collect(),
    }
}
