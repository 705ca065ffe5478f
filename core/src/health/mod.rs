//! Per-origin health as a circuit breaker with hysteresis, with time passed in.
//!
//! Consecutive failures open the breaker; after a cool-down one probe is let through
//! (half-open); consecutive successes close it again, and any failure while half-open reopens
//! it with a longer cool-down. A `Retry-After` from the origin stretches the cool-down to what
//! the origin asked for. Passive signals (delivery outcomes) and active ones (health probes)
//! feed the same machine, so both are tested here with simulated time and no IO.

mod breaker;
mod restore;
mod retry_after;
mod snapshot;

use alloc::collections::BTreeMap;
use alloc::string::String;
use serde::{Deserialize, Serialize};

pub use breaker::{Admit, Breaker, BreakerPolicy, BreakerState};
pub use restore::{snapshot_of, Restored};
pub use retry_after::retry_after_ms;
pub use snapshot::{available, report_changes_nothing, Lookup, SnapshotCache, SNAPSHOT_CACHE_MS};

use crate::time::UnixMs;

/// Every origin's breaker state, by origin name, as the shared health object answers. An
/// origin it does not list has a closed breaker nobody has reported on.
pub type Snapshot = BTreeMap<String, BreakerState>;

/// One outcome of one origin, reported to the shared breakers.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Report {
    /// The origin.
    pub origin: String,
    /// A 2xx or a healthy probe.
    pub up: bool,
    /// What the origin asked for with `Retry-After`.
    pub retry_after_ms: Option<u64>,
    /// When the outcome came.
    pub at_ms: UnixMs,
    /// The cron trigger's health probe sent it, not a delivery: the shared object also keeps
    /// it as the origin's last probe, so an operator sees when the origin was last checked
    /// even while no events flow.
    #[serde(default)]
    pub probe: bool,
}

#[cfg(test)]
mod tests;
