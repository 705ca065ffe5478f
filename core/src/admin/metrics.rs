//! `GET /admin/metrics`: delivery per origin over the last hour and day.

use alloc::string::String;
use alloc::vec::Vec;
use serde::{Deserialize, Serialize};

use crate::time::UnixMs;

/// Every origin's delivery over the last hour and day (`core::metrics::summarize`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MetricsView {
    /// When it was summed: the windows end with the bucket holding this.
    pub now_ms: UnixMs,
    /// The width of a bucket: each window starts on a bucket boundary, so "the last hour" is
    /// the current bucket and the ones before it, up to an hour.
    pub bucket_ms: i64,
    /// The configured origins in order, then any origin only stored rows name.
    pub origins: Vec<OriginMetrics>,
}

/// One origin's windows.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct OriginMetrics {
    /// The origin's name.
    pub origin: String,
    /// The last hour.
    pub hour: WindowMetrics,
    /// The last day.
    pub day: WindowMetrics,
    /// The cron trigger's latest probe of its `health_url`; `None` for an origin without one,
    /// or before its first probe. (Absent from an older edge's answer.)
    #[serde(default)]
    pub last_probe: Option<LastProbe>,
}

/// One health probe's outcome.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LastProbe {
    /// When it was answered (or gave up).
    pub at_ms: UnixMs,
    /// Answered 2xx in time.
    pub up: bool,
}

/// Attempts on one origin within one window.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct WindowMetrics {
    /// Requests sent.
    pub attempts: u64,
    /// Answered 2xx.
    pub delivered: u64,
    /// Answered otherwise (non-2xx, redirect, abort).
    pub refused: u64,
    /// Not answered within the origin's timeout.
    pub timeouts: u64,
    /// The connection failed.
    pub network: u64,
    /// Delivered per thousand attempts; `None` without attempts.
    pub success_per_mille: Option<u32>,
    /// Median latency, as the upper bound of its power-of-two bucket (at most twice the truth).
    pub p50_ms: Option<u64>,
    /// 95th percentile latency, bounded the same way.
    pub p95_ms: Option<u64>,
}

#[cfg(test)]
mod tests {
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    use serde_json::json;

    use super::*;

    #[test]
    fn the_metrics_view_keeps_its_wire_shape() {
        let view: MetricsView = super::super::round_trips(&json!({
            "now_ms": 1_700_000_000_000_i64, "bucket_ms": 300000,
            "origins": [{"origin": "primary",
                "hour": {"attempts": 3, "delivered": 2, "refused": 1, "timeouts": 0, "network": 0,
                         "success_per_mille": 666, "p50_ms": 16, "p95_ms": 64},
                "day": {"attempts": 0, "delivered": 0, "refused": 0, "timeouts": 0, "network": 0,
                        "success_per_mille": null, "p50_ms": null, "p95_ms": null},
                "last_probe": {"at_ms": 1_699_999_990_000_i64, "up": false}}]
        }));
        assert_eq!(view.origins.len(), 1);
        let probe = view.origins.first().and_then(|origin| origin.last_probe);
        assert_eq!(
            probe,
            Some(LastProbe {
                at_ms: UnixMs(1_699_999_990_000),
                up: false
            })
        );
    }
}
