//! Delivery metrics per origin, kept off the per-event path: each isolate tallies its attempts
//! ([`Tally`]) and hands the tally to the shared `Health` object on a request it makes anyway
//! (the breaker snapshot refresh), which folds it into one row per origin per
//! [`BUCKET_MS`] and answers the hour and day [`windows`]. Counts held by an isolate that is
//! evicted before its next refresh are lost: for metrics that is cheaper than a request or a
//! row per event, and the docs say so.

mod counts;
mod histogram;
mod tally;
mod windows;

pub use counts::{Counts, DecodeError};
pub use histogram::{Histogram, LATENCY_BUCKETS};
pub use tally::{parse_line, Flushed, Tally, MAX_PENDING};
pub use windows::{bucket_of, keeps, oldest_kept, summarize, DAY_MS, HOUR_MS};

/// The width of one stored bucket: five minutes keeps a day at 288 rows per origin while the
/// hour window is still cut within five minutes of the hour.
pub const BUCKET_MS: i64 = 300_000;

#[cfg(test)]
mod tests;
