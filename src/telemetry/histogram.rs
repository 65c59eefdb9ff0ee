//! A fixed-bucket histogram in plain atomics: a few hundred bytes, where the prometheus
//! crate's `Histogram` also carries its own descriptor and label set per series.

use std::sync::atomic::{AtomicU64, Ordering};

/// Bucket upper bounds for probe and request durations, in seconds (1 ms … 10 s).
pub const DURATION_BUCKETS: [f64; 13] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// Observation counts per [`DURATION_BUCKETS`] bucket (not cumulative; the last slot is
/// `+Inf`) and the sum of every observation.
#[derive(Debug, Default)]
pub struct DurationHistogram {
    counts: [AtomicU64; DURATION_BUCKETS.len() + 1],
    sum_bits: AtomicU64,
}

impl DurationHistogram {
    /// Record one duration in seconds.
    pub fn observe(&self, seconds: f64) {
        let slot = DURATION_BUCKETS
            .iter()
            .position(|&upper| seconds <= upper)
            .unwrap_or(DURATION_BUCKETS.len());
        self.counts[slot].fetch_add(1, Ordering::Relaxed);
        // No atomic f64 add: a compare-and-swap loop, uncontended at probe rates.
        let _ = self
            .sum_bits
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |bits| {
                Some((f64::from_bits(bits) + seconds).to_bits())
            });
    }

    /// Cumulative bucket counts, total count and sum. The count is the sum of the buckets,
    /// so `_count` always equals the `+Inf` bucket even while observations race a scrape.
    pub fn snapshot(&self) -> HistogramSnapshot {
        let mut cumulative = [0; DURATION_BUCKETS.len()];
        let mut running = 0;
        for (slot, count) in cumulative.iter_mut().zip(&self.counts) {
            running += count.load(Ordering::Relaxed);
            *slot = running;
        }
        HistogramSnapshot {
            cumulative,
            count: running + self.counts[DURATION_BUCKETS.len()].load(Ordering::Relaxed),
            sum: f64::from_bits(self.sum_bits.load(Ordering::Relaxed)),
        }
    }
}

/// A histogram read at one moment.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct HistogramSnapshot {
    /// Observations ≤ each of [`DURATION_BUCKETS`].
    pub cumulative: [u64; DURATION_BUCKETS.len()],
    /// Every observation, including those above the last bound.
    pub count: u64,
    /// Sum of the observations, in seconds.
    pub sum: f64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_cumulative_and_count_includes_overflow() {
        let h = DurationHistogram::default();
        for s in [0.0005, 0.001, 0.003, 0.2, 42.0] {
            h.observe(s);
        }
        let p = h.snapshot();
        let counts = p.cumulative;
        // ≤1ms: 2; ≤2.5ms: 2; ≤5ms: 3; … ≤250ms: 4 …; 42 s only in +Inf.
        assert_eq!(counts[0], 2);
        assert_eq!(counts[2], 3);
        assert_eq!(counts[7], 4);
        assert_eq!(counts[DURATION_BUCKETS.len() - 1], 4);
        assert_eq!(p.count, 5);
        assert!((p.sum - 42.2045).abs() < 1e-9);
    }
}
