//! Naming an event: from a body and how it was authenticated to an [`Identified`] event with
//! its stable id, its subject and the facts kept with it.
//!
//! One naming serves every way an event arrives: a webhook just verified
//! ([`super::Intake::identify`]), a stored one named again to be classified later
//! ([`Identified::recall`]), and one reconciliation wrote from Didit's API
//! ([`Identified::from_api`]). The naming rules are written once, whichever way it came.

use alloc::borrow::Cow;
use alloc::string::String;
use serde_json::value::RawValue;

use crate::envelope::Envelope;
use crate::identity::{subject_of, ContentDigest, EventId, Subject};
use crate::rejection::Rejection;
use crate::verify::{Provenance, Verified};

/// An authentic, fresh, well-formed delivery with its stable name; nothing in it depends on
/// configuration beyond the secrets and the freshness window.
#[derive(Debug)]
pub struct Identified<'a> {
    /// The stable event id (see [`crate::identity`]).
    pub event_id: EventId,
    /// The id releases before the content digest gave the same event
    /// ([`EventId::derive_v1`]), so their stored events still catch its retries.
    pub legacy_id: EventId,
    /// Didit's own `event_id`, remembered as an alias so a resend with a fresh timestamp but
    /// the same `event_id` (and the same type and status) is still recognised.
    pub alias: Option<String>,
    /// Who the event is about: its inbox.
    pub subject: Subject<'a>,
    /// Didit's `webhook_type`.
    pub webhook_type: Cow<'a, str>,
    /// Didit's `status`, when the event has one.
    pub status: Option<Cow<'a, str>>,
    /// When Didit created the event (its `timestamp`, Unix seconds): the delivery order.
    pub created_at: i64,
    /// The body as received, one JSON value.
    pub body: &'a RawValue,
    /// How it was authenticated.
    pub provenance: Provenance,
    /// A console test delivery (the header or the body says so).
    pub test: bool,
    /// When the edge accepted it (Unix seconds).
    pub received_at: i64,
    /// The parsed envelope, which classification reads again.
    pub(super) envelope: Envelope<'a>,
}

impl<'a> Identified<'a> {
    /// Names a stored event again from its body and the facts kept with it, for classifying
    /// it later; freshness was judged when it arrived.
    pub fn recall(
        body: &'a [u8],
        verified: Verified,
        test_header: bool,
        received_at: i64,
    ) -> Result<Self, Rejection> {
        let envelope = Envelope::parse(body).map_err(|_| Rejection::MalformedJson)?;
        Self::name(
            body,
            envelope,
            Provenance::Signed(verified),
            test_header,
            received_at,
        )
    }

    /// Names an event that reconciliation built from Didit's API ([`crate::reconcile`]): the
    /// body is Didit's webhook shape, written by the edge, so no freshness or signature
    /// applies; the connection and the API key vouched for what it holds.
    pub fn from_api(body: &'a [u8], received_at: i64) -> Result<Self, Rejection> {
        let envelope = Envelope::parse(body).map_err(|_| Rejection::MalformedJson)?;
        Self::name(body, envelope, Provenance::Api, false, received_at)
    }

    /// Names the event `body` holds; the freshness of a webhook was judged before.
    pub(super) fn name(
        body: &'a [u8],
        envelope: Envelope<'a>,
        provenance: Provenance,
        test_header: bool,
        received_at: i64,
    ) -> Result<Self, Rejection> {
        let webhook_type = envelope
            .webhook_type
            .clone()
            .filter(|t| !t.trim().is_empty())
            .ok_or(Rejection::MissingField {
                field: "webhook_type",
            })?;
        let created_at = envelope
            .timestamp
            .ok_or(Rejection::MissingField { field: "timestamp" })?;
        let subject = subject_of(&envelope).ok_or(Rejection::MissingField {
            field: "session_id (or the entity or transaction id its webhook_type carries)",
        })?;
        let text = core::str::from_utf8(body).map_err(|_| Rejection::MalformedJson)?;
        let body: &RawValue = crate::json::from_str(text).map_err(|_| Rejection::MalformedJson)?;
        let status = envelope.status.clone();
        // An event from the API has no body Didit wrote to digest; it is matched to the
        // webhook of the same transition by type and status instead (see `crate::inbox`).
        let content = matches!(provenance, Provenance::Signed(v) if v.header.covers_payload())
            .then(|| ContentDigest::of_body(body.get().as_bytes()));
        let event_id = EventId::derive(
            &subject,
            &webhook_type,
            created_at,
            status.as_deref(),
            content.as_ref(),
        );
        let legacy_id = EventId::derive_v1(&subject, &webhook_type, created_at, status.as_deref());
        let alias = envelope
            .event_id
            .as_deref()
            .filter(|id| !id.is_empty())
            .map(String::from);
        let test = test_header || envelope.is_test();
        Ok(Self {
            event_id,
            legacy_id,
            alias,
            subject,
            webhook_type,
            status,
            created_at,
            body,
            provenance,
            test,
            received_at,
            envelope,
        })
    }

    /// The inbox (Durable Object) that owns the subject.
    pub fn inbox(&self) -> String {
        self.subject.inbox_name()
    }
}
