//! The event an origin receives: CloudEvents 1.0, structured JSON mode.
//!
//! Consumers read stable fields from `data` and never need Didit's payload versions; the
//! original payload rides along byte-for-byte under `data.payload`, so nothing Didit sent is
//! lost or re-encoded.

use alloc::boxed::Box;
use alloc::string::String;
use serde::Serialize;
use serde_json::value::RawValue;

use crate::envelope::Envelope;
use crate::identity::{EventId, Subject};
use crate::normalize::{DecisionSummary, PayloadVersion, Status};
use crate::risk::Risk;
use crate::time::to_rfc3339;
use crate::verify::{Provenance, SignatureHeader};

/// Content type of a structured-mode CloudEvent.
pub const CONTENT_TYPE: &str = "application/cloudevents+json";
/// Prefix of every event `type`: reverse DNS of the producer, then Didit's `webhook_type`.
pub const TYPE_PREFIX: &str = "me.didit.";
/// Version of the `data` layout; bumped only on incompatible change.
pub const DATA_SCHEMA_VERSION: u32 = 1;

/// The fields the four-field simple signature authenticates.
pub const SIMPLE_SIGNATURE_FIELDS: [&str; 4] =
    ["timestamp", "session_id", "status", "webhook_type"];

#[derive(Serialize)]
struct CloudEvent<'a> {
    specversion: &'static str,
    id: &'a str,
    source: String,
    #[serde(rename = "type")]
    event_type: String,
    subject: &'a str,
    time: String,
    datacontenttype: &'static str,
    traceparent: String,
    data: Data<'a>,
}

#[derive(Serialize)]
struct Data<'a> {
    schema_version: u32,
    payload_version: Option<PayloadVersion>,
    webhook_type: &'a str,
    subject: SubjectRef<'a>,
    session_id: Option<&'a str>,
    status: Option<&'a str>,
    status_code: Option<&'a str>,
    previous_status: Option<&'a str>,
    previous_status_code: Option<String>,
    vendor_data: Option<&'a str>,
    workflow_id: Option<&'a str>,
    application_id: Option<&'a str>,
    environment: Option<&'a str>,
    didit_event_id: Option<&'a str>,
    test: bool,
    verification: Verification,
    received_at: String,
    decision: Option<&'a DecisionSummary>,
    resubmission: Option<&'a RawValue>,
    risk: &'a Risk,
    payload: &'a RawValue,
}

#[derive(Serialize)]
struct SubjectRef<'a> {
    kind: &'static str,
    id: &'a str,
}

#[derive(Serialize)]
struct Verification {
    /// `"webhook"` (a signed delivery) or `"api"` (read from Didit's API by reconciliation).
    source: &'static str,
    /// The signature header that matched; `null` for an event from the API.
    header: Option<&'static str>,
    /// `"payload"` when every byte is authenticated, else the list of authenticated fields.
    covers: Covers,
    /// Which configured secret matched; `null` for an event from the API.
    secret_index: Option<usize>,
    /// What vouched for an event from the API: `"tls+x-api-key"`; absent for a webhook.
    #[serde(skip_serializing_if = "Option::is_none")]
    authenticated_by: Option<&'static str>,
}

impl Verification {
    fn of(provenance: Provenance) -> Self {
        match provenance {
            Provenance::Signed(verified) => Self {
                source: "webhook",
                header: Some(verified.header.header_name()),
                covers: if verified.header == SignatureHeader::Simple {
                    Covers::Fields(SIMPLE_SIGNATURE_FIELDS)
                } else {
                    Covers::Payload("payload")
                },
                secret_index: Some(verified.secret_index),
                authenticated_by: None,
            },
            Provenance::Api => Self {
                source: "api",
                header: None,
                covers: Covers::Payload("payload"),
                secret_index: None,
                authenticated_by: Some("tls+x-api-key"),
            },
        }
    }
}

#[derive(Serialize)]
#[serde(untagged)]
enum Covers {
    Payload(&'static str),
    Fields([&'static str; 4]),
}

/// What goes into one event.
pub struct EventParts<'a> {
    /// The stable id.
    pub id: &'a EventId,
    /// Who it is about.
    pub subject: &'a Subject<'a>,
    /// Didit's `webhook_type`.
    pub webhook_type: &'a str,
    /// Didit's timestamp (Unix seconds): the event's `time`.
    pub timestamp: i64,
    /// The parsed envelope.
    pub envelope: &'a Envelope<'a>,
    /// The original body as one JSON value.
    pub payload: &'a RawValue,
    /// How it was authenticated.
    pub provenance: Provenance,
    /// Whether it is a console test delivery (header or body flag).
    pub test: bool,
    /// When the edge accepted it (Unix seconds).
    pub received_at: i64,
    /// The payload version, when the decision tells.
    pub payload_version: Option<PayloadVersion>,
    /// The event's status.
    pub status: Option<Status>,
    /// The decision, feature by feature.
    pub decision: Option<DecisionSummary>,
    /// The assessed risk.
    pub risk: Risk,
}

/// Writes the CloudEvent as one JSON value.
pub fn to_json(parts: &EventParts<'_>) -> Result<Box<RawValue>, serde_json::Error> {
    let envelope = parts.envelope;
    let source = match envelope.application_id.as_deref() {
        Some(app) if !app.is_empty() => alloc::format!("https://didit.me/applications/{app}"),
        _ => String::from("https://didit.me"),
    };
    let event = CloudEvent {
        specversion: "1.0",
        id: parts.id.as_str(),
        source,
        event_type: alloc::format!("{TYPE_PREFIX}{}", parts.webhook_type),
        subject: &parts.subject.id,
        time: to_rfc3339(parts.timestamp),
        datacontenttype: "application/json",
        traceparent: crate::trace::traceparent(parts.id.as_str()),
        data: Data {
            schema_version: DATA_SCHEMA_VERSION,
            payload_version: parts.payload_version,
            webhook_type: parts.webhook_type,
            subject: SubjectRef {
                kind: parts.subject.kind.as_str(),
                id: &parts.subject.id,
            },
            session_id: envelope.session_id.as_deref(),
            status: parts.status.as_ref().map(|s| s.text.as_str()),
            status_code: parts.status.as_ref().map(|s| s.code.as_str()),
            previous_status: envelope.previous_status.as_deref(),
            previous_status_code: envelope
                .previous_status
                .as_deref()
                .map(crate::normalize::status_code),
            vendor_data: envelope.vendor_data.as_deref(),
            workflow_id: envelope.workflow_id.as_deref(),
            application_id: envelope.application_id.as_deref(),
            environment: envelope.environment.as_deref(),
            didit_event_id: envelope.event_id.as_deref(),
            test: parts.test,
            verification: Verification::of(parts.provenance),
            received_at: to_rfc3339(parts.received_at),
            decision: parts.decision.as_ref(),
            resubmission: envelope.resubmit_info,
            risk: &parts.risk,
            payload: parts.payload,
        },
    };
    serde_json::value::to_raw_value(&event)
}
