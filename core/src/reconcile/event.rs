//! The event a reconciled session becomes: Didit's v3 `status.updated` webhook, written by the
//! edge from the session's decision, so it goes through the same naming, risk, routing and
//! CloudEvent as a webhook ([`crate::intake::Identified::from_api`]). Its `decision` is the
//! API's answer byte for byte: the v3 decision a webhook carries.

use alloc::borrow::Cow;
use alloc::string::String;

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use super::api::{ApiError, SessionKind, SessionRow};
use crate::time::UnixSecs;

/// The `webhook_type` of every reconciled event: only status transitions are reconciled.
pub const WEBHOOK_TYPE: &str = "status.updated";

#[derive(Deserialize)]
struct DecisionFields<'a> {
    #[serde(default, borrow)]
    session_id: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    status: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    vendor_data: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    workflow_id: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    workflow_version: Option<&'a RawValue>,
    #[serde(default, borrow)]
    metadata: Option<&'a RawValue>,
    #[serde(default, borrow)]
    session_kind: Option<Cow<'a, str>>,
}

#[derive(Serialize)]
struct Webhook<'a> {
    webhook_type: &'static str,
    session_id: &'a str,
    status: &'a str,
    timestamp: i64,
    created_at: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    session_kind: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    business_session_id: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    vendor_data: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    workflow_id: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    workflow_version: Option<&'a RawValue>,
    #[serde(skip_serializing_if = "Option::is_none")]
    metadata: Option<&'a RawValue>,
    decision: &'a RawValue,
}

/// A session's result as an event to inject.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reconciled {
    /// Didit's webhook shape, as JSON text.
    pub body: String,
    /// The status the decision gives (it may have moved on since the session was listed).
    pub status: String,
}

/// Writes the webhook for `row` from its decision, asked for at `now` (the event's time: the
/// API does not say when the session changed, only that it had by the time it answered).
pub fn from_decision(
    decision: &str,
    row: &SessionRow,
    now: UnixSecs,
) -> Result<Reconciled, ApiError> {
    let unreadable = |reason: &str| ApiError::Unreadable {
        reason: reason.into(),
    };
    let whole: &RawValue =
        crate::json::from_str(decision).map_err(|_| unreadable("a decision that is not JSON"))?;
    let fields: DecisionFields<'_> = crate::json::from_str(whole.get())
        .map_err(|_| unreadable("a decision that is not the documented object"))?;
    if fields
        .session_id
        .as_deref()
        .is_some_and(|id| id != row.session_id)
    {
        return Err(unreadable("the decision of another session"));
    }
    let status = fields
        .status
        .as_deref()
        .filter(|status| !status.trim().is_empty())
        .ok_or_else(|| unreadable("a decision without a status"))?;
    let business =
        row.kind == SessionKind::Business || fields.session_kind.as_deref() == Some("business");
    let webhook = Webhook {
        webhook_type: WEBHOOK_TYPE,
        session_id: &row.session_id,
        status,
        timestamp: now.0,
        created_at: now.0,
        session_kind: business.then_some("business"),
        business_session_id: business.then_some(row.session_id.as_str()),
        vendor_data: fields.vendor_data.as_deref(),
        workflow_id: fields.workflow_id.as_deref(),
        workflow_version: fields.workflow_version,
        metadata: fields.metadata,
        decision: whole,
    };
    let body = serde_json::to_string(&webhook)
        .map_err(|_| unreadable("a decision that cannot be written"))?;
    Ok(Reconciled {
        body,
        status: String::from(status),
    })
}
