//! What happens to a stored event after each delivery attempt: pure, with time passed in.

use crate::attempt::Verdict;
use crate::retry::RetrySchedule;

/// How one request to an origin ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AttemptResult {
    /// The origin answered with this HTTP status.
    Status(u16),
    /// The origin answered with this non-2xx status and `webhook-delivery: abort-message`:
    /// it wants no more retries of this event (the event becomes a dead letter).
    Aborted(u16),
    /// The origin did not answer within its timeout.
    Timeout,
    /// The connection failed (refused, reset, DNS).
    Network,
}

/// The response header through which an origin stops the retries of one event, and the value
/// that does it (Svix's delivery-control convention, so receivers written for Svix work).
pub const DELIVERY_CONTROL_HEADER: &str = "webhook-delivery";
/// See [`DELIVERY_CONTROL_HEADER`].
pub const ABORT_MESSAGE: &str = "abort-message";

impl AttemptResult {
    /// The result of an answer with `status`, given its `webhook-delivery` header. An abort
    /// on a 2xx means nothing: the event was delivered.
    pub fn from_response(status: u16, delivery_control: Option<&str>) -> Self {
        let abort = delivery_control.is_some_and(|value| {
            value
                .split(',')
                .any(|token| token.trim().eq_ignore_ascii_case(ABORT_MESSAGE))
        });
        match status {
            200..=299 => Self::Status(status),
            _ if abort => Self::Aborted(status),
            _ => Self::Status(status),
        }
    }

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
    /// or 3xx is about this request, not the origin; an abort is a deliberate answer).
    pub fn health_signal(&self) -> Option<bool> {
        match self {
            Self::Status(200..=299) => Some(true),
            Self::Status(408 | 425 | 429 | 500..=599) | Self::Timeout | Self::Network => {
                Some(false)
            }
            Self::Status(_) | Self::Aborted(_) => None,
        }
    }

    /// The HTTP status, when the origin answered.
    pub fn status(&self) -> Option<u16> {
        match *self {
            Self::Status(status) | Self::Aborted(status) => Some(status),
            Self::Timeout | Self::Network => None,
        }
    }

    /// A stable code for what went wrong, for the attempt log; `None` for a delivery.
    pub fn error_code(&self) -> Option<&'static str> {
        Some(match self {
            Self::Status(200..=299) => return None,
            Self::Status(429) => "throttled",
            Self::Status(408 | 425 | 500..=599) => "server_error",
            Self::Status(_) if self.is_refusal() => "refused",
            Self::Status(_) => "unexpected_status",
            Self::Aborted(_) => "aborted",
            Self::Timeout => "timeout",
            Self::Network => "network",
        })
    }
}

/// Why an event stopped being retried and became a dead letter.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DeadReason {
    /// Every wait of the retry schedule is used up.
    RetriesExhausted,
    /// An origin answered with `webhook-delivery: abort-message`.
    AbortedByOrigin,
    /// Every origin of the consumer refused the event with a permanent 4xx.
    RefusedByEveryOrigin,
}

impl DeadReason {
    /// The stable code stored and shown by the admin API.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::RetriesExhausted => "retries_exhausted",
            Self::AbortedByOrigin => "aborted_by_origin",
            Self::RefusedByEveryOrigin => "refused_by_every_origin",
        }
    }
}

impl core::str::FromStr for DeadReason {
    type Err = ();

    fn from_str(text: &str) -> Result<Self, ()> {
        [
            Self::RetriesExhausted,
            Self::AbortedByOrigin,
            Self::RefusedByEveryOrigin,
        ]
        .into_iter()
        .find(|reason| reason.as_str() == text)
        .ok_or(())
    }
}

/// Where one consumer's copy of a stored event stands.
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
    /// Given up on: kept with its payload for an operator to replay.
    Dead {
        /// When (Unix ms).
        at_ms: i64,
        /// Why.
        reason: DeadReason,
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

    /// The state after an attempt that came to `verdict` at `now_ms`. `jitter_seed` spreads
    /// the next wait (pass a fresh random number).
    pub fn after_attempt(
        self,
        verdict: &Verdict,
        now_ms: i64,
        schedule: &RetrySchedule,
        jitter_seed: u64,
    ) -> Self {
        let Self::Pending { failures, .. } = self else {
            return self;
        };
        match *verdict {
            Verdict::Delivered { .. } => Self::Delivered { at_ms: now_ms },
            Verdict::GiveUp(reason) => Self::Dead {
                at_ms: now_ms,
                reason,
            },
            // Nothing was sent, so nothing counts against the schedule.
            Verdict::Deferred { until_ms } => Self::Pending {
                failures,
                next_attempt_at_ms: until_ms.max(now_ms.saturating_add(1)),
            },
            Verdict::Failed => {
                let failures = failures.saturating_add(1);
                match schedule.wait_after_ms(failures, jitter_seed) {
                    Some(wait_ms) => Self::Pending {
                        failures,
                        next_attempt_at_ms: now_ms
                            .saturating_add(i64::try_from(wait_ms).unwrap_or(i64::MAX)),
                    },
                    None => Self::Dead {
                        at_ms: now_ms,
                        reason: DeadReason::RetriesExhausted,
                    },
                }
            }
        }
    }

    /// An operator's replay: a dead letter starts over with a fresh schedule, due now. Other
    /// states are left as they are (replaying twice is harmless).
    pub fn replayed(self, now_ms: i64) -> Self {
        match self {
            Self::Dead { .. } => Self::new(now_ms),
            other => other,
        }
    }
}

/// How long the pieces of a finished event are kept.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Retention {
    /// A delivered copy's payload, after delivery (`PAYLOAD_RETENTION_SECS`).
    pub payload_secs: u64,
    /// A dead letter's payload, after it died (`DEAD_LETTER_RETENTION_SECS`).
    pub dead_letter_secs: u64,
    /// The id, for deduplication, after the event was received (`DEDUP_TTL_SECS`).
    pub dedup_ttl_secs: u64,
}

/// When a finished event's payload goes and when its record goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Expiry {
    /// When the payload (identity data) must be dropped (Unix ms).
    pub payload_at_ms: i64,
    /// When the whole record, id included, is forgotten (Unix ms).
    pub record_at_ms: i64,
}

fn after_secs(at_ms: i64, secs: u64) -> i64 {
    at_ms.saturating_add(i64::try_from(secs.saturating_mul(1000)).unwrap_or(i64::MAX))
}

/// When an event received at `received_at_ms` expires, given where each consumer's copy
/// stands: `None` while any copy is pending (nothing of it may go). The payload stays for the
/// longest claim on it (the last delivery's retention, or a dead letter's, so it can be
/// replayed); the id stays for the dedup TTL, and never goes before the payload.
pub fn expiry(
    received_at_ms: i64,
    copies: impl IntoIterator<Item = Progress>,
    retention: &Retention,
) -> Option<Expiry> {
    let mut payload_at_ms = received_at_ms;
    for copy in copies {
        let kept_until = match copy {
            Progress::Pending { .. } => return None,
            Progress::Delivered { at_ms } => after_secs(at_ms, retention.payload_secs),
            Progress::Dead { at_ms, .. } => after_secs(at_ms, retention.dead_letter_secs),
        };
        payload_at_ms = payload_at_ms.max(kept_until);
    }
    Some(Expiry {
        payload_at_ms,
        record_at_ms: after_secs(received_at_ms, retention.dedup_ttl_secs).max(payload_at_ms),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    fn schedule() -> RetrySchedule {
        RetrySchedule::parse("1,10")
            .expect("valid")
            .with_jitter_percent(0)
    }

    #[test]
    fn failures_back_off_on_schedule_until_delivered() {
        let schedule = schedule();
        let mut progress = Progress::new(0);
        let mut seen = alloc::vec::Vec::new();
        for (now, verdict) in [
            (0, Verdict::Failed),
            (1_000, Verdict::Deferred { until_ms: 4_000 }),
            (4_000, Verdict::Failed),
        ] {
            progress = progress.after_attempt(&verdict, now, &schedule, 0);
            seen.push(progress);
        }
        assert_eq!(
            seen,
            [
                Progress::Pending {
                    failures: 1,
                    next_attempt_at_ms: 1_000
                },
                // Deferred: nothing was sent, so the failure count stands.
                Progress::Pending {
                    failures: 1,
                    next_attempt_at_ms: 4_000
                },
                Progress::Pending {
                    failures: 2,
                    next_attempt_at_ms: 14_000
                },
            ]
        );
        let delivered = progress.after_attempt(
            &Verdict::Delivered { origin: "a".into() },
            14_000,
            &schedule,
            0,
        );
        assert_eq!(delivered, Progress::Delivered { at_ms: 14_000 });
        assert_eq!(
            delivered.after_attempt(&Verdict::Failed, 40_000, &schedule, 0),
            delivered
        );
        assert_eq!(delivered.replayed(50_000), delivered);
    }

    #[test]
    fn the_schedule_running_out_makes_a_dead_letter_that_replay_revives() {
        let schedule = schedule();
        let mut progress = Progress::new(0);
        for now in [0, 1_000, 11_000] {
            progress = progress.after_attempt(&Verdict::Failed, now, &schedule, 0);
        }
        assert_eq!(
            progress,
            Progress::Dead {
                at_ms: 11_000,
                reason: DeadReason::RetriesExhausted
            }
        );
        assert_eq!(
            progress.after_attempt(&Verdict::Failed, 12_000, &schedule, 0),
            progress,
            "a dead letter is not attempted"
        );
        assert_eq!(progress.replayed(20_000), Progress::new(20_000));
    }

    #[test]
    fn giving_up_is_immediate_whatever_the_schedule() {
        for reason in [
            DeadReason::AbortedByOrigin,
            DeadReason::RefusedByEveryOrigin,
        ] {
            assert_eq!(
                Progress::new(0).after_attempt(&Verdict::GiveUp(reason), 5, &schedule(), 0),
                Progress::Dead { at_ms: 5, reason }
            );
            assert_eq!(reason.as_str().parse(), Ok(reason));
        }
        assert_eq!(
            "retries_exhausted".parse(),
            Ok(DeadReason::RetriesExhausted)
        );
        assert_eq!("other".parse::<DeadReason>(), Err(()));
    }

    #[test]
    fn a_deferral_into_the_past_still_moves_forward() {
        assert_eq!(
            Progress::new(0).after_attempt(&Verdict::Deferred { until_ms: 3 }, 10, &schedule(), 0),
            Progress::Pending {
                failures: 0,
                next_attempt_at_ms: 11
            }
        );
    }

    #[test]
    fn abort_needs_the_header_and_a_non_2xx() {
        use AttemptResult::*;
        for (status, header, result) in [
            (500, Some("abort-message"), Aborted(500)),
            (400, Some("Abort-Message"), Aborted(400)),
            (429, Some("disable, abort-message"), Aborted(429)),
            (200, Some("abort-message"), Status(200)),
            (500, Some("disable"), Status(500)),
            (500, Some("abort-messages"), Status(500)),
            (500, None, Status(500)),
        ] {
            assert_eq!(AttemptResult::from_response(status, header), result);
        }
        assert_eq!(Aborted(500).health_signal(), None);
        assert!(!Aborted(400).is_refusal());
        assert!(!Aborted(400).is_delivered());
    }

    #[test]
    fn error_codes_for_the_attempt_log() {
        use AttemptResult::*;
        for (result, code) in [
            (Status(204), None),
            (Status(503), Some("server_error")),
            (Status(408), Some("server_error")),
            (Status(429), Some("throttled")),
            (Status(404), Some("refused")),
            (Status(302), Some("unexpected_status")),
            (Aborted(500), Some("aborted")),
            (Timeout, Some("timeout")),
            (Network, Some("network")),
        ] {
            assert_eq!(result.error_code(), code, "{result:?}");
        }
        assert_eq!(Timeout.status(), None);
        assert_eq!(Aborted(418).status(), Some(418));
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
            (Aborted(503), None),
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
    fn finished_events_expire_by_their_longest_claim() {
        let retention = Retention {
            payload_secs: 0,
            dead_letter_secs: 100,
            dedup_ttl_secs: 60,
        };
        let delivered = |at_ms| Progress::Delivered { at_ms };
        let dead = |at_ms| Progress::Dead {
            at_ms,
            reason: DeadReason::RetriesExhausted,
        };
        // Delivered everywhere: the payload goes at once, the id after the TTL.
        assert_eq!(
            expiry(1_000, [delivered(2_000), delivered(5_000)], &retention),
            Some(Expiry {
                payload_at_ms: 5_000,
                record_at_ms: 61_000
            })
        );
        // A dead letter keeps the payload, and so the record, for its own retention.
        assert_eq!(
            expiry(1_000, [delivered(2_000), dead(3_000)], &retention),
            Some(Expiry {
                payload_at_ms: 103_000,
                record_at_ms: 103_000
            })
        );
        // Nothing expires while a copy is pending.
        assert_eq!(
            expiry(1_000, [delivered(2_000), Progress::new(2_000)], &retention),
            None
        );
        // No consumer: only the id is kept.
        assert_eq!(
            expiry(1_000, [], &retention),
            Some(Expiry {
                payload_at_ms: 1_000,
                record_at_ms: 61_000
            })
        );
        // Delivery after the TTL: the record outlives the delivery's payload retention.
        let late = Retention {
            payload_secs: 30,
            ..retention
        };
        assert_eq!(
            expiry(0, [delivered(100_000)], &late),
            Some(Expiry {
                payload_at_ms: 130_000,
                record_at_ms: 130_000
            })
        );
        assert_eq!(
            expiry(
                i64::MAX - 1,
                [dead(i64::MAX - 1)],
                &Retention {
                    payload_secs: u64::MAX,
                    dead_letter_secs: u64::MAX,
                    dedup_ttl_secs: u64::MAX
                }
            )
            .map(|e| e.record_at_ms),
            Some(i64::MAX)
        );
    }
}
