//! Outlier detection on live traffic: a node whose answers fail `consecutive_failures` times
//! in a row (5xx, or no answer at all) is ejected from the routing table for a while — the
//! first time for `base_ejection`, each further time twice as long, up to `max_ejection`
//! (back to `base_ejection` once it stayed in that long) — but never more than
//! `max_ejected_percent` of the nodes at once. Health probes cannot see this: MI answers
//! `/healthz` 200 while one of its integrations fails every request.

use crate::config::OutlierConfig;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// One node's failure streak and ejection; each node owns one.
#[derive(Debug, Default)]
pub struct Record {
    consecutive: AtomicU32,
    /// Nanoseconds since the tracker's epoch until which the node is out (0: never ejected).
    ejected_until: AtomicU64,
    ejections: AtomicU32,
}

/// The ejection policy and the clock the records are read against.
#[derive(Debug)]
pub struct Outliers {
    config: OutlierConfig,
    epoch: Instant,
    /// Ejection decisions one at a time, so the cap holds.
    decide: Mutex<()>,
}

impl Outliers {
    /// A tracker with `config`'s policy.
    pub fn new(config: OutlierConfig) -> Outliers {
        Outliers {
            config,
            epoch: Instant::now(),
            decide: Mutex::new(()),
        }
    }

    fn now(&self) -> u64 {
        self.epoch.elapsed().as_nanos() as u64
    }

    /// Whether the node of `record` is ejected now.
    pub fn is_ejected(&self, record: &Record) -> bool {
        self.remaining(record).is_some()
    }

    /// How much longer the node of `record` stays ejected, if it is.
    pub fn remaining(&self, record: &Record) -> Option<Duration> {
        let until = record.ejected_until.load(Ordering::Acquire);
        let now = self.now();
        (until > now).then(|| Duration::from_nanos(until - now))
    }

    /// Count one answer of the node of `record`; `Some(d)` when this failure ejects it for
    /// `d`. `everyone` lists the records of all current nodes (read only when a streak is
    /// long enough, to hold the cap).
    pub fn record<'a, I>(
        &self,
        record: &Record,
        failed: bool,
        everyone: impl FnOnce() -> I,
    ) -> Option<Duration>
    where
        I: Iterator<Item = &'a Record>,
    {
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
        if self.is_ejected(record) {
            return None; // answers still arriving from before the ejection
        }
        let (mut nodes, mut ejected) = (0, 0);
        for r in everyone() {
            nodes += 1;
            ejected += usize::from(self.is_ejected(r));
        }
        let cap = nodes * self.config.max_ejected_percent as usize / 100;
        if ejected >= cap {
            return None;
        }
        // A node that behaved for `max_ejection` since its last ejection ended starts over
        // from `base_ejection`: old failures should not double today's ejection forever.
        let last_until = record.ejected_until.load(Ordering::Acquire);
        if last_until != 0
            && self.now().saturating_sub(last_until) >= self.config.max_ejection.as_nanos() as u64
        {
            record.ejections.store(0, Ordering::Relaxed);
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

    fn tracker(nodes: usize, percent: u32) -> (Outliers, Vec<Record>) {
        let o = Outliers::new(OutlierConfig {
            consecutive_failures: 3,
            base_ejection: Duration::from_secs(10),
            max_ejection: Duration::from_secs(25),
            max_ejected_percent: percent,
        });
        (o, (0..nodes).map(|_| Record::default()).collect())
    }

    fn answer(o: &Outliers, records: &[Record], id: usize, failed: bool) -> Option<Duration> {
        o.record(&records[id], failed, || records.iter())
    }

    #[test]
    fn a_streak_of_failures_ejects_and_a_success_resets_it() {
        let (o, r) = tracker(4, 50);
        assert_eq!(answer(&o, &r, 0, true), None);
        assert_eq!(answer(&o, &r, 0, true), None);
        assert_eq!(answer(&o, &r, 0, false), None, "a success ends the streak");
        assert_eq!(answer(&o, &r, 0, true), None);
        assert_eq!(answer(&o, &r, 0, true), None);
        assert_eq!(answer(&o, &r, 0, true), Some(Duration::from_secs(10)));
        assert!(o.is_ejected(&r[0]));
        assert_eq!(answer(&o, &r, 0, true), None, "already out");
    }

    #[test]
    fn ejections_grow_up_to_the_maximum() {
        let (o, r) = tracker(4, 100);
        let mut lengths = Vec::new();
        for _ in 0..3 {
            for _ in 0..2 {
                answer(&o, &r, 1, true);
            }
            let length = answer(&o, &r, 1, true).expect("ejected");
            lengths.push(length.as_secs());
            // End the ejection early, as if its time had passed.
            r[1].ejected_until.store(0, Ordering::Release);
        }
        assert_eq!(lengths, [10, 20, 25]);
    }

    #[test]
    fn a_node_that_behaved_long_enough_starts_over_from_the_base() {
        let (mut o, r) = tracker(4, 100);
        // Pretend the tracker has run for a minute, so "long ago" can be written down.
        o.epoch -= Duration::from_secs(60);
        let eject = || {
            (0..3)
                .filter_map(|_| answer(&o, &r, 2, true))
                .next()
                .expect("ejected")
        };
        assert_eq!(eject(), Duration::from_secs(10));
        r[2].ejected_until.store(1, Ordering::Release); // ended long ago
        assert_eq!(
            eject(),
            Duration::from_secs(10),
            "forgiven after max_ejection"
        );
        // Ended just now: the next ejection doubles.
        r[2].ejected_until.store(o.now(), Ordering::Release);
        assert_eq!(eject(), Duration::from_secs(20));
    }

    #[test]
    fn never_more_than_the_share() {
        let (o, r) = tracker(3, 50); // 3 × 50 % → at most 1
        let eject = |id| (0..3).filter_map(|_| answer(&o, &r, id, true)).count();
        assert_eq!(eject(0), 1);
        assert_eq!(eject(1), 0, "the cap is reached");
        assert_eq!(eject(2), 0);
        assert!(!o.is_ejected(&r[1]) && !o.is_ejected(&r[2]));
    }
}
