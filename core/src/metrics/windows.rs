//! Which stored buckets make the hour and the day, what is kept, and the summary the admin
//! API answers.

use alloc::string::String;
use alloc::vec::Vec;

use super::counts::Counts;
use super::BUCKET_MS;
use crate::admin::{LastProbe, MetricsView, OriginMetrics, WindowMetrics};
use crate::origin::Origin;
use crate::time::UnixMs;

/// The short window.
pub const HOUR_MS: i64 = 3_600_000;
/// The long window, and how long a bucket is kept.
pub const DAY_MS: i64 = 86_400_000;

/// Where the bucket holding `at` starts.
pub fn bucket_of(at: UnixMs) -> UnixMs {
    UnixMs(at.0.div_euclid(BUCKET_MS) * BUCKET_MS)
}

/// The first bucket of the window of `length_ms` that ends with the bucket holding `now`: the
/// window is whole buckets, so it reaches back at most one bucket short of `length_ms`.
fn window_start(now: UnixMs, length_ms: i64) -> i64 {
    bucket_of(now).0 - (length_ms - BUCKET_MS)
}

/// The oldest bucket kept at `now`: the day window's first. Older rows are deleted, so an
/// origin holds at most `DAY_MS / BUCKET_MS` (288) rows. A flushed bucket older than this, or
/// starting after `now`'s, is not stored.
pub fn oldest_kept(now: UnixMs) -> UnixMs {
    UnixMs(window_start(now, DAY_MS))
}

/// Whether a flushed bucket is worth storing at `now`.
pub fn keeps(bucket: UnixMs, now: UnixMs) -> bool {
    bucket.0 >= oldest_kept(now).0 && bucket.0 <= bucket_of(now).0 && bucket.0 % BUCKET_MS == 0
}

impl WindowMetrics {
    fn of(counts: &Counts) -> Self {
        Self {
            attempts: counts.attempts,
            delivered: counts.delivered,
            refused: counts.refused,
            timeouts: counts.timeouts,
            network: counts.network,
            success_per_mille: (counts.attempts > 0).then(|| {
                u32::try_from(counts.delivered.saturating_mul(1000) / counts.attempts)
                    .unwrap_or(1000)
            }),
            p50_ms: counts.latency.percentile(50),
            p95_ms: counts.latency.percentile(95),
        }
    }
}

/// The hour and day of every origin in `origins` (the configured ones, in their order) and of
/// any other origin a stored row names (one since removed), from stored `(origin, bucket,
/// counts)` rows at `now`, each with its last probe from `probes` (a probe of an origin no
/// longer configured and never counted is left out: nothing else would show it).
pub fn summarize(
    origins: &[Origin],
    rows: &[(String, UnixMs, Counts)],
    probes: &[(String, LastProbe)],
    now: UnixMs,
) -> MetricsView {
    let hour_start = window_start(now, HOUR_MS);
    let day_start = window_start(now, DAY_MS);
    let mut sums: Vec<(String, Counts, Counts)> = origins
        .iter()
        .map(|origin| (origin.name.clone(), Counts::default(), Counts::default()))
        .collect();
    for (origin, bucket, counts) in rows {
        if bucket.0 < day_start || bucket.0 > bucket_of(now).0 {
            continue;
        }
        let at = match sums.iter().position(|(name, _, _)| name == origin) {
            Some(at) => at,
            None => {
                sums.push((origin.clone(), Counts::default(), Counts::default()));
                sums.len() - 1
            }
        };
        if let Some((_, hour, day)) = sums.get_mut(at) {
            day.merge(counts);
            if bucket.0 >= hour_start {
                hour.merge(counts);
            }
        }
    }
    let mut view = MetricsView {
        now_ms: now,
        bucket_ms: BUCKET_MS,
        origins: Vec::with_capacity(sums.len()),
    };
    for (origin, hour, day) in sums {
        view.origins.push(OriginMetrics {
            hour: WindowMetrics::of(&hour),
            day: WindowMetrics::of(&day),
            last_probe: probes
                .iter()
                .find(|(name, _)| *name == origin)
                .map(|(_, probe)| *probe),
            origin,
        });
    }
    view
}
