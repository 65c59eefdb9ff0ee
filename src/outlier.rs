//! Outlier detection on live traffic: a node whose answers fail `consecutive_failures` times
//! in a row (5xx, or no answer at all) is ejected from the routing table for a while — the
//! first time for `base_ejection`, each further time twice as long, up to `max_ejection` —
//! but never more than `max_ejected_percent` of the nodes at once. Health probes cannot see
//! this: MI answers `/healthz` 200 while one of its integrations fails every request.

use crate::config::OutlierConfig;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// One node's failure streak and ejection.
#[derive(Debug, Default)]
struct Record {
    consecutive: AtomicU32,
    /// Nanoseconds since the tracker's epoch until which the node is out (0: never ejected).
    ejected_until: AtomicU64,
    ejections: AtomicU32,
}

/// Failure streaks and ejections of every node.
#[derive(Debug)]
pub struct Outliers {
    config: OutlierConfig,
    records: Box<[Record]>,
    epoch: Instant,
    /// Ejection decisions one at a time, so the cap holds.
    decide: Mutex<()>,
}

impl Outliers {
    /// A tracker for `nodes` nodes.
    pub fn new(config: OutlierConfig, nodes: usize) -> Outliers {
        Outliers {
            config,
            records: (0..nodes).map(|_| Record::default()).collect(),
            epoch: Instant::now(),
            decide: Mutex::new(()),
        }
    }

    fn now(&self) -> u64 {
        self.epoch.elapsed().as_nanos() as u64
    }

    /// Whether node `id` is ejected now.
    pub fn is_ejected(&self, id: usize) -> bool {
        self.remaining(id).is_some()
    }

    /// How much longer node `id` stays ejected, if it is.
    pub fn remaining(&self, id: usize) -> Option<Duration> {
        let until = self.records[id].ejected_until.load(Ordering::Acquire);
        let now = self.now();
        (until > now).then(|| Duration::from_nanos(until - now))
    }

    /// Count one answer of node `id`; `Some(d)` when this failure ejects it for `d`.
    pub fn record(&self, id: usize, failed: bool) -> Option<Duration> {
        let record = &self.records[id];
        if !failed {
            // Read first: the common case writes nothing, so threads share the line.
            if record.consecutive.load(Ordering::Relaxed) != 0 {
                record.consecutive.store(0, Ordering::Relaxed);
            }
            return None;
        }
        let streak = record.consecutive.fetch_add(1, Ordering::Relaxed) + 1;
        if streak < self.config.consecutive_failures {
            return None;
        }
        let _one_at_a_time = self
            .decide
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if self.is_ejected(id) {
            return None; // answers still arriving from before the ejection
        }
        let ejected = (0..self.records.len())
            .filter(|&i| self.is_ejected(i))
            .count();
        let cap = self.records.len() * self.config.max_ejected_percent as usize / 100;
        if ejected >= cap {
            return None;
        }
        let earlier = record.ejections.fetch_add(1, Ordering::Relaxed);
        let length = self
            .config
            .base_ejection
            .saturating_mul(1u32 << earlier.min(16))
            .min(self.config.max_ejection);
        record
            .ejected_until
            .store(self.now() + length.as_nanos() as u64, Ordering::Release);
        record.consecutive.store(0, Ordering::Relaxed);
        Some(length)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tracker(nodes: usize, percent: u32) -> Outliers {
        Outliers::new(
            OutlierConfig {
                consecutive_failures: 3,
                base_ejection: Duration::from_secs(10),
                max_ejection: Duration::from_secs(25),
                max_ejected_percent: percent,
            },
            nodes,
        )
    }

    #[test]
    fn a_streak_of_failures_ejects_and_a_success_resets_it() {
        let o = tracker(4, 50);
        assert_eq!(o.record(0, true), None);
        assert_eq!(o.record(0, true), None);
        assert_eq!(o.record(0, false), None, "a success ends the streak");
        assert_eq!(o.record(0, true), None);
        assert_eq!(o.record(0, true), None);
        assert_eq!(o.record(0, true), Some(Duration::from_secs(10)));
        assert!(o.is_ejected(0));
        assert_eq!(o.record(0, true), None, "already out");
    }

    #[test]
    fn ejections_grow_up_to_the_maximum() {
        let o = tracker(4, 100);
        let mut lengths = Vec::new();
        for _ in 0..3 {
            for _ in 0..2 {
                o.record(1, true);
            }
            let length = o.record(1, true).expect("ejected");
            lengths.push(length.as_secs());
            // End the ejection early, as if its time had passed.
            o.records[1].ejected_until.store(0, Ordering::Release);
        }
        assert_eq!(lengths, [10, 20, 25]);
    }

    #[test]
    fn never_more_than_the_share() {
        let o = tracker(3, 50); // 3 × 50 % → at most 1
        let eject = |id| (0..3).filter_map(|_| o.record(id, true)).count();
        assert_eq!(eject(0), 1);
        assert_eq!(eject(1), 0, "the cap is reached");
        assert_eq!(eject(2), 0);
        assert!(!o.is_ejected(1) && !o.is_ejected(2));
    }
}
