//! Latencies as counts in power-of-two buckets: a fixed few numbers per origin and bucket,
//! which merge by addition, so p50/p95 over a day cost no list of samples.

use core::fmt::Write as _;

use alloc::string::String;

/// How many latency buckets there are: bucket `i` counts latencies below `2^(i+3)` ms (the
/// first from 0, each from where the one before stops), the last everything from 64 s up,
/// past any origin's timeout.
pub const LATENCY_BUCKETS: usize = 14;

/// Counts of latencies per bucket (see [`LATENCY_BUCKETS`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Histogram(pub [u64; LATENCY_BUCKETS]);

impl Histogram {
    /// The bucket a latency falls in.
    pub fn bucket(latency_ms: u64) -> usize {
        (0..LATENCY_BUCKETS - 1)
            .find(|&i| latency_ms < Self::upper_ms(i))
            .unwrap_or(LATENCY_BUCKETS - 1)
    }

    /// Where bucket `i` stops (exclusive): what a percentile falling in it is reported as, so
    /// a percentile is never better than the truth, and at most twice it.
    pub fn upper_ms(i: usize) -> u64 {
        1u64 << (i.min(LATENCY_BUCKETS - 1) + 3)
    }

    /// Counts one latency.
    pub fn record(&mut self, latency_ms: u64) {
        let i = Self::bucket(latency_ms);
        if let Some(count) = self.0.get_mut(i) {
            *count = count.saturating_add(1);
        }
    }

    /// Adds another histogram's counts.
    pub fn merge(&mut self, other: &Self) {
        for (mine, theirs) in self.0.iter_mut().zip(other.0.iter()) {
            *mine = mine.saturating_add(*theirs);
        }
    }

    /// How many latencies were counted.
    pub fn total(&self) -> u64 {
        self.0.iter().fold(0u64, |sum, n| sum.saturating_add(*n))
    }

    /// The `per_cent` percentile (1–100) as the upper bound of the bucket holding it; `None`
    /// when nothing was counted.
    pub fn percentile(&self, per_cent: u64) -> Option<u64> {
        let total = self.total();
        if total == 0 {
            return None;
        }
        // The rank of the sample at `per_cent`, 1-based, rounded up (the nearest-rank method).
        let rank = (total.saturating_mul(per_cent.clamp(1, 100)))
            .div_ceil(100)
            .max(1);
        let mut seen = 0u64;
        for (i, count) in self.0.iter().enumerate() {
            seen = seen.saturating_add(*count);
            if seen >= rank {
                return Some(Self::upper_ms(i));
            }
        }
        Some(Self::upper_ms(LATENCY_BUCKETS - 1))
    }

    /// Writes the counts space-separated.
    pub(crate) fn write(&self, out: &mut String) {
        for count in &self.0 {
            let _ = write!(out, " {count}");
        }
    }
}
