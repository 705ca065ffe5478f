//! The rules of the dead-letter index (the `DeadLetters` Durable Object, one list of every
//! subject's dead letters): which pushed entries are worth an alert, until when a listed one is
//! replayable, and where a page ends. The object reads and writes; it decides nothing itself.

use alloc::string::String;

use crate::alert::Alert;
use crate::attempt::DeadReason;
use crate::config::DEFAULT_DEAD_LETTER_RETENTION_SECS;
use crate::delivery::Retention;
use crate::inbox::subject_kind;
use crate::time::UnixMs;

/// Until when a dead letter that died at `dead_at` is replayable, by the retention in force
/// now (`None`: the delivery settings are broken). Its inbox expires it by the same rule and
/// unlists it then. While the settings are broken the inboxes forget nothing, so the listing
/// shows what the default retention would keep.
pub fn replayable_until(retention: Option<&Retention>, dead_at: UnixMs) -> UnixMs {
    match retention {
        Some(retention) => retention.dead_letter_until(dead_at),
        None => dead_at.plus_secs(DEFAULT_DEAD_LETTER_RETENTION_SECS),
    }
}

/// One entry an inbox pushes to the index.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Pushed<'a> {
    /// The event id.
    pub event_id: &'a str,
    /// The consumer.
    pub consumer: &'a str,
    /// The subject's inbox (`session:…`).
    pub subject: &'a str,
    /// Didit's `webhook_type`.
    pub webhook_type: &'a str,
    /// Why it died, as stored ([`DeadReason::as_str`]).
    pub reason: &'a str,
    /// When it died.
    pub dead_at: UnixMs,
}

/// A pushed entry worth an alert.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewDeadLetter {
    /// The alert to queue before the entry is listed.
    pub alert: Alert,
    /// The reason as pushed, when this release does not know it. The dead letter is real and
    /// operators must hear of it, so it is alerted as [`DeadReason::RetriesExhausted`] (the
    /// reason that says least: the copy was given up on); the caller logs it, and the listing
    /// keeps the reason as pushed.
    pub unknown_reason: Option<String>,
}

/// Whether `pushed` is worth an alert, given when the index lists it as having died (`None`:
/// not listed): only a death the index has not listed yet is, so a push that is repeated (an
/// inbox retrying after a lost answer) alerts once, while a copy that died again after a replay
/// alerts again.
pub fn new_dead_letter(
    pushed: &Pushed<'_>,
    listed_dead_at: Option<UnixMs>,
) -> Option<NewDeadLetter> {
    if listed_dead_at == Some(pushed.dead_at) {
        return None;
    }
    let (reason, unknown_reason) = match pushed.reason.parse::<DeadReason>() {
        Ok(reason) => (reason, None),
        Err(_) => (
            DeadReason::RetriesExhausted,
            Some(String::from(pushed.reason)),
        ),
    };
    Some(NewDeadLetter {
        alert: Alert::DeadLetter {
            event_id: pushed.event_id.into(),
            consumer: pushed.consumer.into(),
            reason,
            webhook_type: pushed.webhook_type.into(),
            subject_kind: subject_kind(Some(pushed.subject)).into(),
            dead_at_ms: pushed.dead_at.0,
        },
        unknown_reason,
    })
}

/// Where the next page starts (`after`), from a page of `len` rows asked with `limit` whose last
/// row is `last_seq`: only a full page may have a next one.
pub fn next_page(len: usize, limit: u32, last_seq: Option<i64>) -> Option<i64> {
    (u32::try_from(len).is_ok_and(|len| len == limit))
        .then_some(last_seq)
        .flatten()
}

#[cfg(test)]
mod tests {
    use super::*;
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    fn pushed(reason: &str, dead_at: i64) -> Pushed<'_> {
        Pushed {
            event_id: "evt_1",
            consumer: "crm",
            subject: "session:abc",
            webhook_type: "status.updated",
            reason,
            dead_at: UnixMs(dead_at),
        }
    }

    #[test]
    fn a_dead_letter_is_alerted_once_per_death() {
        let first = new_dead_letter(&pushed("aborted_by_origin", 5), None).expect("new");
        assert_eq!(first.unknown_reason, None);
        assert_eq!(
            first.alert,
            Alert::DeadLetter {
                event_id: "evt_1".into(),
                consumer: "crm".into(),
                reason: DeadReason::AbortedByOrigin,
                webhook_type: "status.updated".into(),
                subject_kind: "session".into(),
                dead_at_ms: 5,
            }
        );
        assert_eq!(
            new_dead_letter(&pushed("aborted_by_origin", 5), Some(UnixMs(5))),
            None,
            "a repeated push"
        );
        assert!(
            new_dead_letter(&pushed("retries_exhausted", 9), Some(UnixMs(5))).is_some(),
            "died again after a replay"
        );
    }

    #[test]
    fn an_unknown_reason_is_still_alerted_and_said() {
        let new = new_dead_letter(&pushed("eaten_by_bears", 5), None).expect("still alerted");
        assert_eq!(new.unknown_reason.as_deref(), Some("eaten_by_bears"));
        assert!(matches!(
            new.alert,
            Alert::DeadLetter {
                reason: DeadReason::RetriesExhausted,
                ..
            }
        ));
    }

    #[test]
    fn replayable_until_follows_the_retention_in_force_or_the_default() {
        let retention = Retention {
            payload_secs: 1,
            dead_letter_secs: 10,
            dedup_ttl_secs: 1,
            freshness_secs: 1,
        };
        assert_eq!(
            replayable_until(Some(&retention), UnixMs(1_000)),
            UnixMs(11_000)
        );
        assert_eq!(
            replayable_until(None, UnixMs(1_000)),
            UnixMs(1_000 + 14 * 86_400_000)
        );
    }

    #[test]
    fn only_a_full_page_has_a_next() {
        assert_eq!(next_page(50, 50, Some(77)), Some(77));
        assert_eq!(next_page(49, 50, Some(77)), None);
        assert_eq!(next_page(0, 0, None), None);
    }
}
