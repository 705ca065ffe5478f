//! Operational alerts: CloudEvents about the edge itself, POSTed to `ALERTS_URL` and signed per
//! Standard Webhooks with their own key (`ALERTS_SIGNING_SECRET`, never the key that makes
//! forwarded events authentic), so a team can wire them to a chat channel or a pager.
//!
//! - `didit-edge.dead_letter.created`: a consumer's copy of an event was given up on and waits
//!   for an operator (listed by the admin API, replayable).
//! - `didit-edge.origin.unhealthy`: an origin's breaker opened (it failed too often in a row),
//!   so its traffic goes to the consumer's other origins until it recovers.
//! - `didit-edge.origin.recovered`: the breaker of an origin that had opened closed again.
//! - `didit-edge.reconciliation.gave_up`: reconciliation tried a missing result's decision (or
//!   its inbox) on every try of its schedule and stopped; an operator should look at the
//!   session (`GET /admin/reconciliation` lists it by the same `gap` reference).
//! - `didit-edge.storage.unreadable`: an inbox holds a stored row with a value this release
//!   does not know (a corrupted state, say); the row is left as it is and its copy is not sent
//!   until an operator repairs it. Raised once per row and value, not on every run.
//!
//! An alert names events by id and subjects by kind only; identity data never leaves in one.
//! Each alert's id derives from what it reports, so a retried alert keeps its `webhook-id` and
//! a receiver can deduplicate. Alerts wait in an outbox and are retried on [`RETRY_WAITS_SECS`].

use alloc::string::String;
use alloc::vec::Vec;

use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::attempt::DeadReason;
use crate::health::BreakerState;
use crate::time::to_rfc3339;

/// Waits between attempts to send one alert (then it is dropped, and the drop logged): about a
/// day, as an alert older than that has been overtaken by what the admin API shows.
pub const RETRY_WAITS_SECS: [u64; 10] =
    [5, 30, 120, 600, 1_800, 3_600, 7_200, 14_400, 28_800, 28_800];

/// When to try an alert again after `failures` failed attempts, or `None` to give up.
pub fn retry_wait_ms(failures: u32) -> Option<u64> {
    let index = usize::try_from(failures.checked_sub(1)?).ok()?;
    RETRY_WAITS_SECS.get(index).map(|secs| secs * 1_000)
}

/// Something operators should hear about.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Alert {
    /// A copy became a dead letter.
    DeadLetter {
        /// The event id.
        event_id: String,
        /// The consumer.
        consumer: String,
        /// Why.
        reason: DeadReason,
        /// Didit's `webhook_type`.
        webhook_type: String,
        /// The subject's kind (`session`, `user`, …), never its id.
        subject_kind: String,
        /// When it died (Unix ms).
        dead_at_ms: i64,
    },
    /// An origin's breaker opened.
    OriginUnhealthy {
        /// The origin.
        origin: String,
        /// When (Unix ms).
        at_ms: i64,
        /// When a probe may go (Unix ms).
        until_ms: i64,
    },
    /// An origin's breaker closed after it had opened.
    OriginRecovered {
        /// The origin.
        origin: String,
        /// When (Unix ms).
        at_ms: i64,
    },
    /// Reconciliation gave up on a missing result.
    ReconciliationGaveUp {
        /// The gap's reference: its subject's erasure digest, never the session id.
        gap: String,
        /// The subject's kind (`session` or `business_session`).
        subject_kind: String,
        /// Why the last try failed ([`crate::reconcile::Failure::code`]).
        failure: &'static str,
        /// The HTTP status Didit's API answered, if one came.
        status: Option<u16>,
        /// Tries made.
        tries: u32,
        /// When it gave up (Unix ms).
        at_ms: i64,
    },
    /// An inbox holds a row it cannot read ([`crate::inbox::Unreadable`]) and leaves alone.
    StorageUnreadable {
        /// The table.
        table: &'static str,
        /// The column.
        column: &'static str,
        /// The row's key (`event_seq=3 consumer=crm`): numbers and configured names only.
        row: String,
        /// What the column should hold ([`crate::inbox::UnknownValue::code`]).
        expected: &'static str,
        /// What it holds, cut short (`None`: `NULL`).
        text: Option<String>,
        /// The event's id, when its own row could be read.
        event_id: Option<String>,
        /// The subject's kind (`session`, `user`, …), never its id.
        subject_kind: String,
        /// When it was found (Unix ms); not part of the alert's id, so finding it again is
        /// the same alert.
        at_ms: i64,
    },
}

impl Alert {
    /// The alert for a row an inbox of `subject_kind` cannot read.
    pub fn storage_unreadable(
        unreadable: &crate::inbox::Unreadable,
        event_id: Option<&str>,
        subject_kind: &str,
        at_ms: i64,
    ) -> Self {
        Self::StorageUnreadable {
            table: unreadable.row.table(),
            column: unreadable.value.column,
            row: alloc::string::ToString::to_string(&unreadable.row),
            expected: unreadable.value.unknown.code(),
            text: unreadable.value.text.clone(),
            event_id: event_id.map(Into::into),
            subject_kind: subject_kind.into(),
            at_ms,
        }
    }
}

/// What a breaker's change from `before` to `after` is worth telling: its first opening after
/// being closed (not every failed probe of a long outage), and its closing after that.
pub fn breaker_alert(
    origin: &str,
    before: BreakerState,
    after: BreakerState,
    at_ms: i64,
) -> Option<Alert> {
    match (before, after) {
        (BreakerState::Closed { .. }, BreakerState::Open { until_ms, .. }) => {
            Some(Alert::OriginUnhealthy {
                origin: origin.into(),
                at_ms,
                until_ms,
            })
        }
        (
            BreakerState::Open { .. } | BreakerState::HalfOpen { .. },
            BreakerState::Closed { .. },
        ) => Some(Alert::OriginRecovered {
            origin: origin.into(),
            at_ms,
        }),
        _ => None,
    }
}

#[derive(Serialize)]
struct CloudEvent<'a, D: Serialize> {
    specversion: &'static str,
    id: &'a str,
    source: &'static str,
    #[serde(rename = "type")]
    event_type: &'static str,
    time: String,
    datacontenttype: &'static str,
    data: D,
}

#[derive(Serialize)]
struct DeadLetterData<'a> {
    event_id: &'a str,
    consumer: &'a str,
    reason: &'static str,
    webhook_type: &'a str,
    subject_kind: &'a str,
}

#[derive(Serialize)]
struct GaveUpData<'a> {
    gap: &'a str,
    subject_kind: &'a str,
    failure: &'static str,
    status: Option<u16>,
    tries: u32,
}

#[derive(Serialize)]
struct UnreadableData<'a> {
    table: &'a str,
    column: &'a str,
    row: &'a str,
    expected: &'a str,
    text: Option<&'a str>,
    event_id: Option<&'a str>,
    subject_kind: &'a str,
}

#[derive(Serialize)]
struct OriginData<'a> {
    origin: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    retry_at: Option<String>,
}

impl Alert {
    /// The CloudEvent `type`.
    pub fn event_type(&self) -> &'static str {
        match self {
            Self::DeadLetter { .. } => "didit-edge.dead_letter.created",
            Self::OriginUnhealthy { .. } => "didit-edge.origin.unhealthy",
            Self::OriginRecovered { .. } => "didit-edge.origin.recovered",
            Self::ReconciliationGaveUp { .. } => "didit-edge.reconciliation.gave_up",
            Self::StorageUnreadable { .. } => "didit-edge.storage.unreadable",
        }
    }

    fn at_ms(&self) -> i64 {
        match self {
            Self::DeadLetter { dead_at_ms, .. } => *dead_at_ms,
            Self::OriginUnhealthy { at_ms, .. }
            | Self::OriginRecovered { at_ms, .. }
            | Self::ReconciliationGaveUp { at_ms, .. }
            | Self::StorageUnreadable { at_ms, .. } => *at_ms,
        }
    }

    /// The alert's id (`alr_` and 32 hex digits), the same however often it is sent. An
    /// unreadable row's is the same however often it is found: the row and what it holds.
    pub fn id(&self) -> String {
        let mut digest = Sha256::new();
        digest.update(self.event_type().as_bytes());
        if let Self::StorageUnreadable {
            table,
            column,
            row,
            text,
            event_id,
            ..
        } = self
        {
            let text = text.as_deref().unwrap_or_default();
            let event_id = event_id.as_deref().unwrap_or_default();
            for part in [table, column, row.as_str(), text, event_id] {
                digest.update((part.len() as u64).to_be_bytes());
                digest.update(part.as_bytes());
            }
            return hex_id(digest);
        }
        let parts: [&str; 2] = match self {
            Self::DeadLetter {
                event_id, consumer, ..
            } => [event_id, consumer],
            Self::OriginUnhealthy { origin, .. } | Self::OriginRecovered { origin, .. } => {
                [origin, ""]
            }
            Self::ReconciliationGaveUp {
                gap, subject_kind, ..
            } => [gap, subject_kind],
            Self::StorageUnreadable { .. } => ["", ""],
        };
        for part in parts {
            digest.update((part.len() as u64).to_be_bytes());
            digest.update(part.as_bytes());
        }
        digest.update(self.at_ms().to_be_bytes());
        hex_id(digest)
    }

    /// The alert as a CloudEvent (structured JSON).
    pub fn to_cloud_event(&self) -> String {
        match self {
            Self::DeadLetter {
                event_id,
                consumer,
                reason,
                webhook_type,
                subject_kind,
                ..
            } => self.with_data(DeadLetterData {
                event_id,
                consumer,
                reason: reason.as_str(),
                webhook_type,
                subject_kind,
            }),
            Self::OriginUnhealthy {
                origin, until_ms, ..
            } => self.with_data(OriginData {
                origin,
                retry_at: Some(to_rfc3339(until_ms.div_euclid(1_000))),
            }),
            Self::OriginRecovered { origin, .. } => self.with_data(OriginData {
                origin,
                retry_at: None,
            }),
            Self::ReconciliationGaveUp {
                gap,
                subject_kind,
                failure,
                status,
                tries,
                ..
            } => self.with_data(GaveUpData {
                gap,
                subject_kind,
                failure,
                status: *status,
                tries: *tries,
            }),
            Self::StorageUnreadable {
                table,
                column,
                row,
                expected,
                text,
                event_id,
                subject_kind,
                ..
            } => self.with_data(UnreadableData {
                table,
                column,
                row,
                expected,
                text: text.as_deref(),
                event_id: event_id.as_deref(),
                subject_kind,
            }),
        }
    }

    fn with_data<D: Serialize>(&self, data: D) -> String {
        let id = self.id();
        let event = CloudEvent {
            specversion: "1.0",
            id: &id,
            source: "/didit-edge",
            event_type: self.event_type(),
            time: to_rfc3339(self.at_ms().div_euclid(1_000)),
            datacontenttype: "application/json",
            data,
        };
        // Strings and numbers into a String: serializing cannot fail.
        serde_json::to_string(&event).unwrap_or_default()
    }
}

fn hex_id(digest: Sha256) -> String {
    let digest = digest.finalize();
    alloc::format!("alr_{}", hex::encode(digest.get(..16).unwrap_or_default()))
}

/// Of `alerts` about what an object keeps finding (an unreadable row is found again on every
/// load), the ones not yet raised, given the ids `raised` before (space-separated, as kept),
/// and the ids to keep from now on: exactly those found now, so that a repaired row's alert is
/// forgotten and would be raised again should it break again. An operator hears of each row
/// and value once, not on every run.
pub fn not_yet_raised(alerts: Vec<Alert>, raised: &str) -> (Vec<Alert>, String) {
    let ids: Vec<String> = alerts.iter().map(Alert::id).collect();
    let new = alerts
        .into_iter()
        .zip(&ids)
        .filter(|(_, id)| !raised.split(' ').any(|known| known == id.as_str()))
        .map(|(alert, _)| alert)
        .collect();
    (new, ids.join(" "))
}

#[cfg(test)]
mod tests {
    use super::*;
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    fn dead_letter(dead_at_ms: i64) -> Alert {
        Alert::DeadLetter {
            event_id: "evt_1".into(),
            consumer: "crm".into(),
            reason: DeadReason::RetriesExhausted,
            webhook_type: "status.updated".into(),
            subject_kind: "session".into(),
            dead_at_ms,
        }
    }

    #[test]
    fn an_alert_is_a_cloud_event_with_a_stable_id_and_no_identity_data() {
        let alert = dead_letter(1_764_000_000_500);
        let event: serde_json::Value = serde_json::from_str(&alert.to_cloud_event()).expect("JSON");
        assert_eq!(event["type"], "didit-edge.dead_letter.created");
        assert_eq!(event["specversion"], "1.0");
        assert_eq!(event["time"], "2025-11-24T16:00:00Z");
        assert_eq!(event["data"]["event_id"], "evt_1");
        assert_eq!(event["data"]["reason"], "retries_exhausted");
        assert_eq!(event["data"]["subject_kind"], "session");
        assert_eq!(event["id"], alert.id().as_str());
        assert!(alert.id().starts_with("alr_") && alert.id().len() == 36);
        assert_eq!(
            alert.id(),
            dead_letter(1_764_000_000_500).id(),
            "a retry keeps it"
        );
        assert_ne!(
            alert.id(),
            dead_letter(1_764_000_000_501).id(),
            "a new death is new"
        );
    }

    #[test]
    fn a_breaker_alerts_when_it_first_opens_and_when_it_closes_again() {
        let closed = BreakerState::Closed {
            consecutive_failures: 2,
        };
        let open = BreakerState::Open {
            until_ms: 60_000,
            cool_down_ms: 30_000,
        };
        let half_open = BreakerState::HalfOpen {
            consecutive_successes: 0,
            cool_down_ms: 30_000,
            probe_since_ms: Some(1),
        };
        let opened = breaker_alert("aws", closed, open, 30_000).expect("opened");
        assert_eq!(opened.event_type(), "didit-edge.origin.unhealthy");
        let event: serde_json::Value =
            serde_json::from_str(&opened.to_cloud_event()).expect("JSON");
        assert_eq!(event["data"]["origin"], "aws");
        assert_eq!(event["data"]["retry_at"], "1970-01-01T00:01:00Z");
        assert_eq!(
            breaker_alert("aws", half_open, open, 90_000),
            None,
            "a failed probe"
        );
        assert_eq!(breaker_alert("aws", closed, closed, 1), None);
        assert_eq!(breaker_alert("aws", open, half_open, 1), None);
        let recovered = breaker_alert("aws", half_open, closed, 2).expect("closed");
        assert_eq!(recovered.event_type(), "didit-edge.origin.recovered");
    }

    #[test]
    fn an_unreadable_row_is_one_alert_however_often_it_is_found() {
        use crate::inbox::{BadValue, RowKey, Seq, UnknownValue, Unreadable};
        let unreadable = |text: &str| Unreadable {
            row: RowKey::Copy {
                seq: Seq(3),
                consumer: "crm".into(),
            },
            value: BadValue::new("state", UnknownValue::CopyState, Some(text)),
        };
        let found = |text: &str, at_ms| {
            Alert::storage_unreadable(&unreadable(text), Some("evt_1"), "session", at_ms)
        };
        let alert = found("deadd", 1_764_000_000_000);
        assert_eq!(alert.event_type(), "didit-edge.storage.unreadable");
        assert_eq!(alert.id(), found("deadd", 1_764_999_000_000).id());
        assert_ne!(alert.id(), found("dea", 1_764_000_000_000).id());
        let event: serde_json::Value = serde_json::from_str(&alert.to_cloud_event()).expect("JSON");
        assert_eq!(
            event["data"],
            serde_json::json!({
                "table": "events.copies", "column": "state", "row": "seq=3 consumer=crm",
                "expected": "copy_state", "text": "deadd", "event_id": "evt_1",
                "subject_kind": "session",
            })
        );
    }

    #[test]
    fn a_row_found_again_is_raised_once_and_forgotten_once_repaired() {
        use crate::inbox::{BadValue, RowKey, Seq, UnknownValue, Unreadable};
        let found = |seq: i64| {
            let unreadable = Unreadable {
                row: RowKey::Event(Seq(seq)),
                value: BadValue::new("risk_level", UnknownValue::RiskLevel, Some("severe")),
            };
            Alert::storage_unreadable(&unreadable, None, "user", 1_764_000_000_000)
        };
        let (new, kept) = not_yet_raised(alloc::vec![found(1)], "");
        assert_eq!((new.len(), kept.clone()), (1, found(1).id()));
        let (new, kept) = not_yet_raised(alloc::vec![found(1), found(2)], &kept);
        assert_eq!(
            new.iter().map(Alert::id).collect::<Vec<_>>(),
            [found(2).id()]
        );
        let (new, kept) = not_yet_raised(alloc::vec![found(2)], &kept);
        assert!(new.is_empty(), "found again: not raised again");
        assert_eq!(
            kept,
            found(2).id(),
            "row 1 was repaired: its id is forgotten"
        );
        let (new, _) = not_yet_raised(alloc::vec![found(1), found(2)], &kept);
        assert_eq!(
            new.iter().map(Alert::id).collect::<Vec<_>>(),
            [found(1).id()]
        );
    }

    #[test]
    fn an_alert_is_retried_for_about_a_day_then_dropped() {
        assert_eq!(retry_wait_ms(0), None);
        assert_eq!(retry_wait_ms(1), Some(5_000));
        assert_eq!(retry_wait_ms(10), Some(28_800_000));
        assert_eq!(retry_wait_ms(11), None);
        let total: u64 = RETRY_WAITS_SECS.iter().sum();
        assert!((80_000..=90_000).contains(&total), "{total}");
    }
}
