//! The drop-in format: what an origin of `"format": "didit"` receives. Didit's own webhook
//! body and headers, re-signed for that origin with its Didit-style secret, so an app that
//! verifies with Didit's official SDK (`didit.webhooks.verify_webhook_signature`) takes it
//! unchanged. Built from the stored CloudEvent (its `data.payload` is Didit's body as received,
//! or the body reconciliation wrote), so nothing is stored twice.
//!
//! Why each attempt is rewritten: the SDK judges freshness on the body's signed `timestamp`
//! (within 300 s of its clock, either way), and an `X-Timestamp` header must equal it. A retry
//! ten minutes or three days after the event must still verify, so every attempt sets the
//! body's `timestamp` to the attempt's time and signs everything anew. `event_id` is set to the
//! edge's stable event id, the same on every attempt, which is what the SDK's dedup store keys
//! on; Didit's own `event_id` may differ between Didit's attempts and is replaced. A captured
//! request is no use later (its signed `timestamp` ages out in 300 s) nor elsewhere (each origin
//! has its own secret).
//!
//! The body is written in Didit's canonical JSON with raw UTF-8 (sorted keys, compact, whole
//! floats as integers), exactly what the SDK rebuilds for `X-Signature-V2`, so `X-Signature`
//! (the bytes sent) and `X-Signature-V2` (the canonical form) carry the same tag: one HMAC.

use alloc::borrow::Cow;
use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;
use core::fmt;
use serde::Deserialize;
use serde_json::value::RawValue;

use crate::canonical::{CanonicalJson, NonAscii};
use crate::mac::{HmacSha256, Tag};
use crate::secret::WebhookSecret;

/// The content type Didit sends.
pub const CONTENT_TYPE: &str = "application/json";

/// Why a stored event cannot be written in the drop-in format. The edge wrote the event
/// itself, so these mean a stored record is damaged; the attempt fails and is retried.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum DropInError {
    /// The stored event is not a CloudEvent with `id` and `data.payload`.
    NotACloudEvent,
    /// `data.payload` is not a JSON object (Didit's bodies always are).
    PayloadNotAnObject,
}

impl fmt::Display for DropInError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::NotACloudEvent => "the stored event is not a CloudEvent with data.payload",
            Self::PayloadNotAnObject => "the stored event's payload is not a JSON object",
        })
    }
}

impl core::error::Error for DropInError {}

#[derive(Deserialize)]
struct Stored<'a> {
    #[serde(borrow)]
    id: Cow<'a, str>,
    #[serde(borrow)]
    data: StoredData<'a>,
}

#[derive(Deserialize)]
struct StoredData<'a> {
    #[serde(borrow)]
    payload: &'a RawValue,
    #[serde(default, borrow)]
    verification: Option<Verification<'a>>,
}

#[derive(Deserialize)]
struct Verification<'a> {
    #[serde(borrow)]
    covers: &'a RawValue,
}

/// The four fields `X-Signature-Simple` covers, read from Didit's body.
#[derive(Deserialize)]
struct SimpleFields<'a> {
    #[serde(default, borrow)]
    session_id: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    status: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    webhook_type: Option<Cow<'a, str>>,
}

/// One attempt's request, before signing: the body, and the messages to MAC.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DropIn {
    id: String,
    timestamp: String,
    body: String,
    simple: Option<String>,
    covers_payload: bool,
}

/// Writes the drop-in request for the stored CloudEvent `cloud_event`, attempted at `now`
/// (Unix seconds).
pub fn build(cloud_event: &str, now: i64) -> Result<DropIn, DropInError> {
    let stored: Stored<'_> =
        crate::json::from_str(cloud_event).map_err(|_| DropInError::NotACloudEvent)?;
    let payload = stored.data.payload.get();
    let timestamp = format!("{now}");
    let mut canonical =
        CanonicalJson::parse(payload.as_bytes()).map_err(|_| DropInError::NotACloudEvent)?;
    if !canonical.set_top_level_integer("timestamp", &timestamp)
        || !canonical.set_top_level_string("event_id", &stored.id)
    {
        return Err(DropInError::PayloadNotAnObject);
    }
    let body = canonical.to_string(NonAscii::Utf8);
    let fields: Option<SimpleFields<'_>> = crate::json::from_str(payload).ok();
    let simple = fields.and_then(|fields| {
        Some(format!(
            "{timestamp}:{}:{}:{}",
            fields.session_id?, fields.status?, fields.webhook_type?
        ))
    });
    // Only an event whose whole payload was vouched for (a full signature, or the API) gets
    // the full signatures; one accepted on X-Signature-Simple alone keeps only that.
    let covers_payload = stored
        .data
        .verification
        .is_none_or(|v| v.covers.get() == r#""payload""#);
    Ok(DropIn {
        id: stored.id.into_owned(),
        timestamp,
        body,
        simple,
        covers_payload,
    })
}

impl DropIn {
    /// The body to send, and the message behind `X-Signature` and `X-Signature-V2` alike.
    pub fn body(&self) -> &str {
        &self.body
    }

    /// The message behind `X-Signature-Simple`, when the body has its four fields.
    pub fn simple_message(&self) -> Option<&[u8]> {
        self.simple.as_deref().map(str::as_bytes)
    }

    /// The headers, given the tag of [`Self::body`] and that of [`Self::simple_message`]:
    /// Didit's four, plus `webhook-id` (the stable event id; the SDK ignores it).
    pub fn headers(&self, body_tag: &Tag, simple_tag: Option<&Tag>) -> Vec<(&'static str, String)> {
        let mut headers = Vec::with_capacity(6);
        headers.push(("content-type", String::from(CONTENT_TYPE)));
        if self.covers_payload {
            headers.push(("x-signature", hex::encode(body_tag)));
            headers.push(("x-signature-v2", hex::encode(body_tag)));
        }
        if let Some(tag) = simple_tag.filter(|_| self.simple.is_some()) {
            headers.push(("x-signature-simple", hex::encode(tag)));
        }
        headers.push(("x-timestamp", self.timestamp.clone()));
        headers.push(("webhook-id", self.id.clone()));
        headers
    }

    /// Signs synchronously with `mac`: the headers for [`Self::body`].
    pub fn sign(
        &self,
        secret: &WebhookSecret,
        mac: &mut impl HmacSha256,
    ) -> Vec<(&'static str, String)> {
        let body_tag = mac.tag(secret.key(), self.body.as_bytes());
        let simple_tag = self
            .simple_message()
            .map(|message| mac.tag(secret.key(), message));
        self.headers(&body_tag, simple_tag.as_ref())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mac::RustCrypto;
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    #[test]
    fn a_damaged_record_is_an_error_not_a_panic() {
        for (stored, error) in [
            ("", DropInError::NotACloudEvent),
            (r#"{"id":"evt_1"}"#, DropInError::NotACloudEvent),
            (r#"{"id":"evt_1","data":{}}"#, DropInError::NotACloudEvent),
            (
                r#"{"id":"evt_1","data":{"payload":[1,2]}}"#,
                DropInError::PayloadNotAnObject,
            ),
            (
                r#"{"id":"evt_1","data":{"payload":"text"}}"#,
                DropInError::PayloadNotAnObject,
            ),
        ] {
            assert_eq!(build(stored, 0), Err(error), "{stored}");
        }
    }

    #[test]
    fn each_attempt_is_dated_and_signed_anew_with_the_same_event_id() {
        let stored = r#"{"id":"evt_1","data":{"payload":{"timestamp":100,"event_id":"x","timestamp":100,"session_id":"s","status":"Approved","webhook_type":"status.updated"}}}"#;
        let secret = WebhookSecret::parse_one("k").expect("secret");
        let first = build(stored, 200).expect("builds");
        let later = build(stored, 200 + 3 * 86_400).expect("builds");
        assert_eq!(
            first.body(),
            r#"{"event_id":"evt_1","session_id":"s","status":"Approved","timestamp":200,"webhook_type":"status.updated"}"#
        );
        assert!(later.body().contains(r#""timestamp":259400"#));
        let (a, b) = (
            first.sign(&secret, &mut RustCrypto),
            later.sign(&secret, &mut RustCrypto),
        );
        let value = |headers: &[(&str, String)], name: &str| {
            headers
                .iter()
                .find(|(n, _)| *n == name)
                .map(|(_, v)| v.clone())
        };
        for name in ["x-signature", "x-signature-simple", "x-timestamp"] {
            assert_ne!(value(&a, name), value(&b, name), "{name}");
        }
        assert_eq!(value(&a, "webhook-id"), value(&b, "webhook-id"));
        assert_eq!(value(&a, "x-signature"), value(&a, "x-signature-v2"));
    }
}
