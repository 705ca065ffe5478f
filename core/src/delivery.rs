//! Where one consumer's copy of a stored event stands, what each delivery attempt makes of it,
//! and how long each part of a finished event is kept: pure, with time passed in.

use crate::attempt::{DeadReason, Verdict};
use crate::retry::RetrySchedule;
use crate::time::{UnixMs, UnixSecs};

/// Where one consumer's copy of a stored event stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CopyState {
    /// Not yet delivered.
    Pending {
        /// Failed attempts so far.
        failures: u32,
        /// Earliest time of the next attempt.
        next_attempt_at: UnixMs,
    },
    /// Delivered; the payload can go, the id stays until the dedup TTL ends.
    Delivered {
        /// When.
        at: UnixMs,
    },
    /// Given up on: kept with its payload for an operator to replay.
    Dead {
        /// When.
        at: UnixMs,
        /// Why.
        reason: DeadReason,
    },
    /// A dead letter past its retention: its payload is gone and it cannot be replayed.
    Expired {
        /// When it became a dead letter.
        at: UnixMs,
        /// Why.
        reason: DeadReason,
    },
}

impl CopyState {
    /// A new copy: due now.
    pub fn new(now: UnixMs) -> Self {
        Self::Pending {
            failures: 0,
            next_attempt_at: now,
        }
    }

    /// Whether the copy still waits for delivery.
    pub fn is_pending(&self) -> bool {
        matches!(self, Self::Pending { .. })
    }

    /// The state after an attempt that came to `verdict` at `now`. `jitter_seed` spreads the
    /// next wait (pass a fresh random number). Only a pending copy changes.
    pub fn after_attempt(
        self,
        verdict: &Verdict,
        now: UnixMs,
        schedule: &RetrySchedule,
        jitter_seed: u64,
    ) -> Self {
        let Self::Pending { failures, .. } = self else {
            return self;
        };
        match *verdict {
            Verdict::Delivered { .. } => Self::Delivered { at: now },
            Verdict::GiveUp(reason) => Self::Dead { at: now, reason },
            // Nothing was sent, so nothing counts against the schedule. The time is kept
            // exactly, even when it has passed: a limited origin's gate knows the copy's
            // reservation by the turn it told, which the copy presents as its due time.
            Verdict::Deferred { until_ms } => Self::Pending {
                failures,
                next_attempt_at: UnixMs(until_ms),
            },
            Verdict::Failed => {
                let failures = failures.saturating_add(1);
                match schedule.wait_after_ms(failures, jitter_seed) {
                    Some(wait_ms) => Self::Pending {
                        failures,
                        next_attempt_at: now.plus_ms(wait_ms),
                    },
                    None => Self::Dead {
                        at: now,
                        reason: DeadReason::RetriesExhausted,
                    },
                }
            }
        }
    }

    /// An operator's replay: a dead letter starts over with a fresh schedule, due now. Other
    /// states are left as they are (replaying twice is harmless; an expired letter has no
    /// payload left to send).
    pub fn replayed(self, now: UnixMs) -> Self {
        match self {
            Self::Dead { .. } => Self::new(now),
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

impl Retention {
    /// When a dead letter that died at `dead_at` expires (its payload goes, it leaves the list).
    pub fn dead_letter_until(&self, dead_at: UnixMs) -> UnixMs {
        dead_at.plus_secs(self.dead_letter_secs)
    }
}

/// When a finished event's payload goes and when its record goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Expiry {
    /// When the payload (identity data) must be dropped.
    pub payload_at: UnixMs,
    /// When the whole record, id included, is forgotten.
    pub record_at: UnixMs,
}

/// When an event received at `received_at` and created (by Didit) at `created_at` expires,
/// given where each consumer's copy stands: `None` while any copy is pending or a dead letter
/// (nothing of it may go; a dead letter first expires on its own, see
/// [`Retention::dead_letter_until`]). The payload stays for the longest claim on it (the last
/// delivery's retention, or an expired dead letter's); the id stays for the dedup TTL and past
/// the last moment a replay of the delivery could still pass the freshness check, so a replay
/// is always either stale or a known duplicate; and it never goes before the payload.
///
/// Computed from the retention in force whenever it is asked, never stored: a retention
/// setting that changes applies to every event already kept.
pub fn expiry(
    received_at: UnixMs,
    created_at: UnixSecs,
    copies: impl IntoIterator<Item = CopyState>,
    retention: &Retention,
) -> Option<Expiry> {
    let mut payload_at = received_at;
    for copy in copies {
        let kept_until = match copy {
            CopyState::Pending { .. } | CopyState::Dead { .. } => return None,
            CopyState::Delivered { at } => at.plus_secs(retention.payload_secs),
            // A superseded copy was never a dead letter: nothing is kept for a replay.
            CopyState::Expired {
                at,
                reason: DeadReason::Superseded,
            } => at,
            CopyState::Expired { at, .. } => retention.dead_letter_until(at),
        };
        payload_at = payload_at.max(kept_until);
    }
    let replayable_until = created_at
        .ms()
        .plus_secs(retention.freshness_secs.saturating_add(1));
    Some(Expiry {
        payload_at,
        record_at: received_at
            .plus_secs(retention.dedup_ttl_secs)
            .max(payload_at)
            .max(replayable_until),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec::Vec;
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
        let mut copy = CopyState::new(UnixMs(0));
        let mut seen = Vec::new();
        for (now, verdict) in [
            (0, Verdict::Failed),
            (1_000, Verdict::Deferred { until_ms: 4_000 }),
            (4_000, Verdict::Failed),
        ] {
            copy = copy.after_attempt(&verdict, UnixMs(now), &schedule, 0);
            seen.push(copy);
        }
        let pending = |failures, at| CopyState::Pending {
            failures,
            next_attempt_at: UnixMs(at),
        };
        // Deferred: nothing was sent, so the failure count stands.
        assert_eq!(
            seen,
            [pending(1, 1_000), pending(1, 4_000), pending(2, 14_000)]
        );
        let delivered = copy.after_attempt(
            &Verdict::Delivered { origin: "a".into() },
            UnixMs(14_000),
            &schedule,
            0,
        );
        assert_eq!(delivered, CopyState::Delivered { at: UnixMs(14_000) });
        assert_eq!(
            delivered.after_attempt(&Verdict::Failed, UnixMs(40_000), &schedule, 0),
            delivered
        );
        assert_eq!(delivered.replayed(UnixMs(50_000)), delivered);
    }

    #[test]
    fn the_schedule_running_out_makes_a_dead_letter_that_replay_revives() {
        let schedule = schedule();
        let mut copy = CopyState::new(UnixMs(0));
        for now in [0, 1_000, 11_000] {
            copy = copy.after_attempt(&Verdict::Failed, UnixMs(now), &schedule, 0);
        }
        let dead = CopyState::Dead {
            at: UnixMs(11_000),
            reason: DeadReason::RetriesExhausted,
        };
        assert_eq!(copy, dead);
        assert_eq!(
            copy.after_attempt(&Verdict::Failed, UnixMs(12_000), &schedule, 0),
            copy,
            "a dead letter is not attempted"
        );
        assert_eq!(
            copy.replayed(UnixMs(20_000)),
            CopyState::new(UnixMs(20_000))
        );
        let expired = CopyState::Expired {
            at: UnixMs(11_000),
            reason: DeadReason::RetriesExhausted,
        };
        assert_eq!(
            expired.replayed(UnixMs(20_000)),
            expired,
            "nothing left to send"
        );
    }

    #[test]
    fn giving_up_is_immediate_whatever_the_schedule() {
        let reason = DeadReason::AbortedByOrigin;
        assert_eq!(
            CopyState::new(UnixMs(0)).after_attempt(
                &Verdict::GiveUp(reason),
                UnixMs(5),
                &schedule(),
                0
            ),
            CopyState::Dead {
                at: UnixMs(5),
                reason
            }
        );
    }

    #[test]
    fn a_deferral_keeps_its_time_even_when_it_has_passed() {
        // A gate's turn that passed before its answer came is still the copy's ticket.
        assert_eq!(
            CopyState::new(UnixMs(0)).after_attempt(
                &Verdict::Deferred { until_ms: 3 },
                UnixMs(10),
                &schedule(),
                0
            ),
            CopyState::Pending {
                failures: 0,
                next_attempt_at: UnixMs(3)
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

    fn delivered(at: i64) -> CopyState {
        CopyState::Delivered { at: UnixMs(at) }
    }

    fn dead(at: i64) -> CopyState {
        CopyState::Dead {
            at: UnixMs(at),
            reason: DeadReason::RetriesExhausted,
        }
    }

    fn expiry_at(payload: i64, record: i64) -> Option<Expiry> {
        Some(Expiry {
            payload_at: UnixMs(payload),
            record_at: UnixMs(record),
        })
    }

    #[test]
    fn a_delivered_payload_goes_at_once_and_its_id_after_the_ttl() {
        let at = |copies: &[CopyState]| {
            expiry(
                UnixMs(1_000),
                UnixSecs(1),
                copies.iter().copied(),
                &retention(),
            )
        };
        assert_eq!(
            at(&[delivered(2_000), delivered(5_000)]),
            expiry_at(5_000, 61_000)
        );
        // No consumer: only the id is kept.
        assert_eq!(at(&[]), expiry_at(1_000, 61_000));
    }

    #[test]
    fn a_dead_letter_keeps_everything_until_it_expires_then_for_its_retention() {
        let at = |last| {
            expiry(
                UnixMs(1_000),
                UnixSecs(1),
                [delivered(2_000), last],
                &retention(),
            )
        };
        assert_eq!(at(dead(3_000)), None);
        let expired = CopyState::Expired {
            at: UnixMs(3_000),
            reason: DeadReason::AbortedByOrigin,
        };
        assert_eq!(at(expired), expiry_at(103_000, 103_000));
    }

    #[test]
    fn nothing_expires_while_a_copy_is_pending() {
        assert_eq!(
            expiry(
                UnixMs(1_000),
                UnixSecs(1),
                [delivered(2_000), CopyState::new(UnixMs(2_000))],
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
            expiry(UnixMs(0), UnixSecs(0), [delivered(100_000)], &late),
            expiry_at(130_000, 130_000)
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
            expiry(UnixMs(0), UnixSecs(100), [delivered(1_000)], &wide).map(|e| e.record_at),
            Some(UnixMs(221_000))
        );
    }

    #[test]
    fn expiry_saturates_instead_of_overflowing() {
        let forever = Retention {
            payload_secs: u64::MAX,
            dead_letter_secs: u64::MAX,
            dedup_ttl_secs: u64::MAX,
            freshness_secs: u64::MAX,
        };
        let expired = CopyState::Expired {
            at: UnixMs(i64::MAX - 1),
            reason: DeadReason::RetriesExhausted,
        };
        assert_eq!(
            expiry(
                UnixMs(i64::MAX - 1),
                UnixSecs(i64::MAX),
                [expired],
                &forever
            )
            .map(|e| e.record_at),
            Some(UnixMs(i64::MAX))
        );
    }
}
