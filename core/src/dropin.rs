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

use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;
use core::fmt;

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
    /// The stored event is not a CloudEvent with `data.payload`.
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

/// One attempt's request, before signing: the body, and the messages to MAC.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DropIn {
    timestamp: String,
    body: String,
    simple: Option<String>,
    covers_payload: bool,
}

/// Writes the drop-in request for the stored CloudEvent `cloud_event` of the event `id` (the
/// CloudEvent's `id`, which the inbox holds beside it), attempted at `now` (Unix seconds).
pub fn build(cloud_event: &str, id: &str, now: i64) -> Result<DropIn, DropInError> {
    let timestamp = format!("{now}");
    let mut event =
        CanonicalJson::parse(cloud_event.as_bytes()).map_err(|_| DropInError::NotACloudEvent)?;
    // Only an event whose whole payload was vouched for (a full signature, or the API) gets
    // the full signatures; one accepted on X-Signature-Simple alone keeps only that one.
    let covers_payload = event.string_at(&["data", "verification", "covers"]) == Some("payload");
    if !event.descend(&["data", "payload"]) {
        return Err(DropInError::NotACloudEvent);
    }
    let field = |name| event.string_at(&[name]);
    let simple = match (field("session_id"), field("status"), field("webhook_type")) {
        (Some(session), Some(status), Some(kind)) => {
            Some(format!("{timestamp}:{session}:{status}:{kind}"))
        }
        _ => None,
    };
    if !event.set_top_level_integer("timestamp", &timestamp)
        || !event.set_top_level_string("event_id", String::from(id))
    {
        return Err(DropInError::PayloadNotAnObject);
    }
    Ok(DropIn {
        body: event.to_string(NonAscii::Utf8),
        timestamp,
        simple,
        covers_payload,
    })
}

impl DropIn {
    /// The body to send, and the message behind `X-Signature` and `X-Signature-V2` alike.
    pub fn body(&self) -> &str {
        &self.body
    }

    /// The messages to MAC with the origin's secret, in the order [`Self::headers`] takes
    /// their tags: the body (for `X-Signature` and `X-Signature-V2` alike), then the simple
    /// form when the body has its four fields.
    pub fn messages(&self) -> impl Iterator<Item = &[u8]> {
        core::iter::once(self.body.as_bytes()).chain(self.simple.as_deref().map(str::as_bytes))
    }

    /// The headers, given the tags of [`Self::messages`] in order: Didit's four (a signature
    /// is `None`, not sent, without its tag). A fixed list rather than a growing one: smaller
    /// in the upload. The adapter adds what every delivery carries, `webhook-id` (the body's
    /// `event_id`; the SDK ignores it) among them.
    pub fn headers(&self, tags: &[Tag]) -> [(&'static str, Option<String>); 5] {
        let hex = |tag: &Tag| hex::encode(&tag[..]);
        let body = tags.first().filter(|_| self.covers_payload).map(hex);
        [
            ("content-type", Some(String::from(CONTENT_TYPE))),
            ("x-signature", body.clone()),
            ("x-signature-v2", body),
            (
                "x-signature-simple",
                tags.get(1).filter(|_| self.simple.is_some()).map(hex),
            ),
            ("x-timestamp", Some(self.timestamp.clone())),
        ]
    }

    /// Signs synchronously with `mac`: the headers for [`Self::body`].
    pub fn sign(
        &self,
        secret: &WebhookSecret,
        mac: &mut impl HmacSha256,
    ) -> [(&'static str, Option<String>); 5] {
        let tags: Vec<Tag> = self
            .messages()
            .map(|message| mac.tag(secret.key(), message))
            .collect();
        self.headers(&tags)
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
            (r#"{"id":"evt_1","data":[]}"#, DropInError::NotACloudEvent),
            (
                r#"{"id":"evt_1","data":{"payload":[1,2]}}"#,
                DropInError::PayloadNotAnObject,
            ),
            (
                r#"{"id":"evt_1","data":{"payload":"text"}}"#,
                DropInError::PayloadNotAnObject,
            ),
        ] {
            assert_eq!(build(stored, "evt_1", 0), Err(error), "{stored}");
        }
    }

    #[test]
    fn each_attempt_is_dated_and_signed_anew_with_the_same_event_id() {
        let stored = r#"{"id":"evt_1","data":{"verification":{"covers":"payload"},"payload":{"timestamp":100,"event_id":"x","timestamp":100,"session_id":"s","status":"Approved","webhook_type":"status.updated"}}}"#;
        let secret = WebhookSecret::parse_one("k").expect("secret");
        let first = build(stored, "evt_1", 200).expect("builds");
        let later = build(stored, "evt_1", 200 + 3 * 86_400).expect("builds");
        assert_eq!(
            first.body(),
            r#"{"event_id":"evt_1","session_id":"s","status":"Approved","timestamp":200,"webhook_type":"status.updated"}"#
        );
        assert!(later.body().contains(r#""timestamp":259400"#));
        let (a, b) = (
            first.sign(&secret, &mut RustCrypto),
            later.sign(&secret, &mut RustCrypto),
        );
        let value = |headers: &[(&str, Option<String>)], name: &str| {
            headers
                .iter()
                .find(|(n, _)| *n == name)
                .and_then(|(_, v)| v.clone())
        };
        for name in ["x-signature", "x-signature-simple", "x-timestamp"] {
            assert_ne!(value(&a, name), value(&b, name), "{name}");
        }
        for headers in [&a, &b] {
            assert_eq!(value(headers, "webhook-id"), None, "added by the adapter");
        }
        assert_eq!(value(&a, "x-signature"), value(&a, "x-signature-v2"));
        // A record that does not say its payload was wholly vouched for gets no full signature.
        let unsure = stored.replace(r#"{"covers":"payload"}"#, "{}");
        let headers = build(&unsure, "evt_1", 200)
            .expect("builds")
            .sign(&secret, &mut RustCrypto);
        assert_eq!(value(&headers, "x-signature"), None);
        assert!(value(&headers, "x-signature-simple").is_some());
    }
}
