//! What happens to a stored event after each delivery attempt: pure, with time passed in.

use crate::retry::RetrySchedule;

/// How one attempt to deliver to an origin ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AttemptResult {
    /// The origin answered with this HTTP status.
    Status(u16),
    /// The origin did not answer within its timeout.
    Timeout,
    /// The connection failed (refused, reset, DNS).
    Network,
    /// Nothing could be sent: no configured origin takes the event any more. Retried on the
    /// schedule like any failure, so a configuration fix delivers it; never dropped.
    NotSent,
}

impl AttemptResult {
    /// Only a 2xx means the origin has the event; everything else is tried again later.
    pub fn is_delivered(&self) -> bool {
        matches!(self, Self::Status(200..=299))
    }

    /// Whether the origin refused this event for good (a 4xx other than 408, 425 and 429): it is
    /// not sent this event again, though it stays healthy for others.
    pub fn is_refusal(&self) -> bool {
        matches!(self, Self::Status(400..=499)) && self.health_signal().is_none()
    }

    /// What this says about the origin's health: `Some(true)` it is up, `Some(false)` it is in
    /// trouble (timeouts, refused connections, 408, 425, 429, 5xx), `None` nothing (another 4xx
    /// or 3xx is about this request, not the origin; nothing sent is nothing learned).
    pub fn health_signal(&self) -> Option<bool> {
        match self {
            Self::Status(200..=299) => Some(true),
            Self::Status(408 | 425 | 429 | 500..=599) | Self::Timeout | Self::Network => {
                Some(false)
            }
            Self::Status(_) | Self::NotSent => None,
        }
    }
}

/// Where a stored event stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Progress {
    /// Not yet delivered.
    Pending {
        /// Failed attempts so far.
        failures: u32,
        /// Earliest time of the next attempt (Unix ms).
        next_attempt_at_ms: i64,
    },
    /// Delivered; the payload can go, the id stays until the dedup TTL ends.
    Delivered {
        /// When (Unix ms).
        at_ms: i64,
    },
}

impl Progress {
    /// A new event: due now.
    pub fn new(now_ms: i64) -> Self {
        Self::Pending {
            failures: 0,
            next_attempt_at_ms: now_ms,
        }
    }

    /// The state after an attempt that ended with `result` at `now_ms`.
    pub fn after_attempt(
        self,
        result: &AttemptResult,
        now_ms: i64,
        schedule: &RetrySchedule,
    ) -> Self {
        match self {
            Self::Delivered { .. } => self,
            Self::Pending { failures, .. } if result.is_delivered() => {
                let _ = failures;
                Self::Delivered { at_ms: now_ms }
            }
            Self::Pending { failures, .. } => {
                let failures = failures.saturating_add(1);
                let wait_ms = schedule.wait_after(failures).saturating_mul(1000);
                Self::Pending {
                    failures,
                    next_attempt_at_ms: now_ms
                        .saturating_add(i64::try_from(wait_ms).unwrap_or(i64::MAX)),
                }
            }
        }
    }
}

/// When a delivered event's record may be forgotten: `dedup_ttl_secs` after it was received,
/// and never before it was delivered (undelivered events are never forgotten).
pub fn forget_at_ms(received_at_ms: i64, delivered_at_ms: i64, dedup_ttl_secs: u64) -> i64 {
    let ttl_ms = i64::try_from(dedup_ttl_secs.saturating_mul(1000)).unwrap_or(i64::MAX);
    received_at_ms.saturating_add(ttl_ms).max(delivered_at_ms)
}

/// When a delivered event's payload (identity data) must be dropped: `retention_secs` after
/// the last consumer got it (0: at once).
pub fn payload_drop_at_ms(delivered_at_ms: i64, retention_secs: u64) -> i64 {
    let retention_ms = i64::try_from(retention_secs.saturating_mul(1000)).unwrap_or(i64::MAX);
    delivered_at_ms.saturating_add(retention_ms)
}

#[cfg(test)]
mod tests {
    use super::*;
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    #[test]
    fn failures_back_off_on_schedule_until_delivered() {
        let schedule = RetrySchedule::parse("1,10").expect("valid");
        let mut progress = Progress::new(0);
        let mut seen = alloc::vec::Vec::new();
        for (now, result) in [
            (0, AttemptResult::Network),
            (1_000, AttemptResult::Status(500)),
            (11_000, AttemptResult::Timeout),
            (21_000, AttemptResult::NotSent),
        ] {
            progress = progress.after_attempt(&result, now, &schedule);
            seen.push(progress);
        }
        assert_eq!(
            seen,
            [
                Progress::Pending {
                    failures: 1,
                    next_attempt_at_ms: 1_000
                },
                Progress::Pending {
                    failures: 2,
                    next_attempt_at_ms: 11_000
                },
                Progress::Pending {
                    failures: 3,
                    next_attempt_at_ms: 21_000
                },
                Progress::Pending {
                    failures: 4,
                    next_attempt_at_ms: 31_000
                },
            ]
        );
        let delivered = progress.after_attempt(&AttemptResult::Status(204), 31_000, &schedule);
        assert_eq!(delivered, Progress::Delivered { at_ms: 31_000 });
        assert_eq!(
            delivered.after_attempt(&AttemptResult::Status(500), 40_000, &schedule),
            delivered
        );
    }

    #[test]
    fn health_signals() {
        use AttemptResult::*;
        for (result, signal) in [
            (Status(204), Some(true)),
            (Status(503), Some(false)),
            (Status(429), Some(false)),
            (Status(408), Some(false)),
            (Timeout, Some(false)),
            (Network, Some(false)),
            (Status(400), None),
            (Status(301), None),
            (NotSent, None),
        ] {
            assert_eq!(result.health_signal(), signal, "{result:?}");
        }
    }

    #[test]
    fn refusals_are_the_permanent_4xx() {
        use AttemptResult::*;
        for (result, refusal) in [
            (Status(400), true),
            (Status(404), true),
            (Status(410), true),
            (Status(408), false),
            (Status(425), false),
            (Status(429), false),
            (Status(500), false),
            (Status(302), false),
            (Status(200), false),
            (Timeout, false),
        ] {
            assert_eq!(result.is_refusal(), refusal, "{result:?}");
        }
    }

    #[test]
    fn only_2xx_delivers() {
        for (status, delivered) in [
            (199, false),
            (200, true),
            (299, true),
            (300, false),
            (429, false),
        ] {
            assert_eq!(
                AttemptResult::Status(status).is_delivered(),
                delivered,
                "{status}"
            );
        }
    }

    #[test]
    fn payloads_are_dropped_after_their_retention() {
        assert_eq!(payload_drop_at_ms(5_000, 0), 5_000);
        assert_eq!(payload_drop_at_ms(5_000, 3), 8_000);
        assert_eq!(payload_drop_at_ms(i64::MAX - 1, u64::MAX), i64::MAX);
    }

    #[test]
    fn records_are_kept_for_the_ttl_and_until_delivered() {
        assert_eq!(forget_at_ms(1_000, 2_000, 60), 61_000);
        assert_eq!(forget_at_ms(1_000, 100_000, 60), 100_000);
    }
}
