//! What happens to a stored event after each delivery attempt, and how long each part of it
//! is kept: pure, with time passed in.

use crate::attempt::{DeadReason, Verdict};
use crate::retry::RetrySchedule;

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
    /// The freshness window (`TIMESTAMP_TOLERANCE_SECS`): a delivery dated `t` is accepted
    /// until `t` plus this, so its id is kept at least that long, whatever the TTL.
    pub freshness_secs: u64,
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

/// When an event received at `received_at_ms` and created (by Didit) at `created_at_secs`
/// expires, given where each consumer's copy stands: `None` while any copy is pending (nothing
/// of it may go). The payload stays for the longest claim on it (the last delivery's
/// retention, or a dead letter's, so it can be replayed); the id stays for the dedup TTL and
/// past the last moment a replay of the delivery could still pass the freshness check, so a
/// replay is always either stale or a known duplicate; and it never goes before the payload.
pub fn expiry(
    received_at_ms: i64,
    created_at_secs: i64,
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
    let replayable_until_ms = after_secs(
        created_at_secs.saturating_mul(1000),
        retention.freshness_secs.saturating_add(1),
    );
    Some(Expiry {
        payload_at_ms,
        record_at_ms: after_secs(received_at_ms, retention.dedup_ttl_secs)
            .max(payload_at_ms)
            .max(replayable_until_ms),
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
        let reason = DeadReason::AbortedByOrigin;
        assert_eq!(
            Progress::new(0).after_attempt(&Verdict::GiveUp(reason), 5, &schedule(), 0),
            Progress::Dead { at_ms: 5, reason }
        );
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

    fn retention() -> Retention {
        Retention {
            payload_secs: 0,
            dead_letter_secs: 100,
            dedup_ttl_secs: 60,
            freshness_secs: 10,
        }
    }

    fn delivered(at_ms: i64) -> Progress {
        Progress::Delivered { at_ms }
    }

    fn dead(at_ms: i64) -> Progress {
        Progress::Dead {
            at_ms,
            reason: DeadReason::RetriesExhausted,
        }
    }

    #[test]
    fn a_delivered_payload_goes_at_once_and_its_id_after_the_ttl() {
        assert_eq!(
            expiry(1_000, 1, [delivered(2_000), delivered(5_000)], &retention()),
            Some(Expiry {
                payload_at_ms: 5_000,
                record_at_ms: 61_000
            })
        );
        // No consumer: only the id is kept.
        assert_eq!(
            expiry(1_000, 1, [], &retention()),
            Some(Expiry {
                payload_at_ms: 1_000,
                record_at_ms: 61_000
            })
        );
    }

    #[test]
    fn a_dead_letter_keeps_the_payload_and_the_record_for_its_retention() {
        assert_eq!(
            expiry(1_000, 1, [delivered(2_000), dead(3_000)], &retention()),
            Some(Expiry {
                payload_at_ms: 103_000,
                record_at_ms: 103_000
            })
        );
    }

    #[test]
    fn nothing_expires_while_a_copy_is_pending() {
        assert_eq!(
            expiry(
                1_000,
                1,
                [delivered(2_000), Progress::new(2_000)],
                &retention()
            ),
            None
        );
    }

    #[test]
    fn a_late_delivery_keeps_its_record_for_its_payload_retention() {
        let late = Retention {
            payload_secs: 30,
            ..retention()
        };
        assert_eq!(
            expiry(0, 0, [delivered(100_000)], &late),
            Some(Expiry {
                payload_at_ms: 130_000,
                record_at_ms: 130_000
            })
        );
    }

    #[test]
    fn the_id_outlives_every_replay_that_would_still_be_fresh() {
        // Dated 100 s ahead (within a 120 s window): a replay passes the freshness check until
        // 220 s, later than received + TTL (60 s), so the id is kept until after then.
        let wide = Retention {
            freshness_secs: 120,
            ..retention()
        };
        assert_eq!(
            expiry(0, 100, [delivered(1_000)], &wide).map(|e| e.record_at_ms),
            Some(221_000)
        );
    }

    #[test]
    fn expiry_saturates_instead_of_overflowing() {
        assert_eq!(
            expiry(
                i64::MAX - 1,
                i64::MAX,
                [dead(i64::MAX - 1)],
                &Retention {
                    payload_secs: u64::MAX,
                    dead_letter_secs: u64::MAX,
                    dedup_ttl_secs: u64::MAX,
                    freshness_secs: u64::MAX,
                }
            )
            .map(|e| e.record_at_ms),
            Some(i64::MAX)
        );
    }
}
