//! Telling an operator about the rows an inbox cannot read: the alerts for them, and raising
//! each once. The rows themselves are found while loading ([`super::load`]); this is what
//! happens to them afterwards, on every alarm run, apart from the loading so that an alert
//! that cannot go out never stands in the way of the machine.

use didit_edge_core::alert::{not_yet_raised, Alert};
use didit_edge_core::inbox::{subject_kind, Inbox, Seq};
use worker::{console_error, Env, SqlStorage};

use super::meta::{meta_text, set_meta_text};

/// The id of the event `seq`, when its own row could be read; unreadable rows are logged
/// and alerted by it.
pub(super) fn event_id(inbox: &Inbox, seq: Seq) -> Option<&str> {
    inbox
        .events()
        .find(|(record, _)| record.seq == seq)
        .map(|(record, _)| record.id.as_str())
}

/// The alerts for the rows `inbox` cannot read, found at `now_ms`.
pub(in crate::inbox) fn unreadable_alerts(inbox: &Inbox, now_ms: i64) -> Vec<Alert> {
    let kind = subject_kind(inbox.subject());
    inbox
        .unreadable()
        .iter()
        .map(|unreadable| {
            let event_id = event_id(inbox, unreadable.row.seq());
            Alert::storage_unreadable(unreadable, event_id, kind, now_ms)
        })
        .collect()
}

/// Where an inbox remembers which unreadable rows it has alerted about (their alert ids).
const ALERTED: &str = "unreadable_alerted";

/// Raises the `alerts` (about unreadable rows) this inbox has not raised before, so that an
/// operator hears of each row and value once, not on every run. What was raised is remembered
/// in `meta` (only while some row is unreadable). A failure is logged and left to the next run:
/// an alert that cannot go out must not stop the delivery of everything else.
pub(in crate::inbox) async fn alert_unreadable(env: &Env, sql: &SqlStorage, alerts: Vec<Alert>) {
    if alerts.is_empty() {
        return;
    }
    let raised = match meta_text(sql, ALERTED) {
        Ok(raised) => raised.unwrap_or_default(),
        Err(error) => return console_error!("inbox could not read the alerts it raised: {error}"),
    };
    let (new, ids) = not_yet_raised(alerts, &raised);
    if let Err(error) = crate::alerts::enqueue(env, &new).await {
        return console_error!(
            "inbox could not raise its unreadable-row alerts, will retry: {error}"
        );
    }
    if ids != raised {
        if let Err(error) = set_meta_text(sql, ALERTED, &ids) {
            console_error!("inbox could not remember the alerts it raised: {error}");
        }
    }
}
