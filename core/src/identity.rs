//! Who an event is about, and which Didit event it is.
//!
//! # Subject
//! Events are ordered and deduplicated per subject: the verification session for session
//! events, the entity for user and business events, the transaction for transaction events.
//! Each subject gets its own inbox (a Durable Object), so one busy session never slows another.
//!
//! # Event id
//! Didit's `event_id` is described both as stable and as unique per delivery attempt, so it
//! cannot be the only duplicate key. The id here is derived from what identifies one Didit
//! event whatever the attempt: the subject, `webhook_type`, the body's `timestamp` (when Didit
//! created the webhook, covered by every signature), `status`, and a digest of the whole
//! content the signature vouches for, leaving out `event_id` (the one field that may change
//! from one attempt to the next). So:
//! - every retry and duplicate of one event, which re-sends the same content, gets the same id;
//! - two distinct events in the same second (two `user.data.updated` with different changes)
//!   differ by content, and real repeated transitions (FLAGGED, ACTIVE, FLAGGED) by timestamp;
//! - a Didit resend, which carries the same `event_id` with a fresh `timestamp`, is caught by
//!   the inbox remembering `event_id` as an alias (for the same type and status; see
//!   [`crate::intake::Identified`]).
//!
//! The content digest is taken over Didit's canonical JSON (keys sorted, compact, non-ASCII
//! escaped), not the raw bytes: `X-Signature-V2` verifies any re-serialization of the same
//! content, and a re-serialized copy must not become a second event. When only
//! `X-Signature-Simple` vouches for a delivery, the content beyond its four fields is not
//! authenticated, so it does not count either: whoever holds a captured request could otherwise
//! mint new events by editing the decision.
//!
//! The id is the first 128 bits of SHA-256 over the length-prefixed fields, in hex, behind
//! `evt_`: stable across deployments and releases, opaque, and safe in a URL or header.
//! Events stored by releases before the content digest have ids of the first derivation
//! ([`EventId::derive_v1`]); the inbox still recognises those until they are forgotten.

use alloc::borrow::Cow;
use alloc::format;
use alloc::string::String;
use core::fmt;
use sha2::{Digest, Sha256};

use crate::canonical::{CanonicalJson, NonAscii};
use crate::envelope::Envelope;

/// What kind of thing an event is about.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SubjectKind {
    /// A KYC verification session.
    Session,
    /// A KYB (business) verification session.
    BusinessSession,
    /// A User entity, keyed by the integrator's `vendor_data`.
    User,
    /// A Business entity, keyed by the integrator's `vendor_business_id`.
    Business,
    /// A transaction.
    Transaction,
}

impl SubjectKind {
    /// The kind a name names, if any.
    pub fn from_name(name: &str) -> Option<Self> {
        [
            Self::Session,
            Self::BusinessSession,
            Self::User,
            Self::Business,
            Self::Transaction,
        ]
        .into_iter()
        .find(|kind| kind.as_str() == name)
    }

    /// The kind's name, as in inbox names and `data.subject.kind`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Session => "session",
            Self::BusinessSession => "business_session",
            Self::User => "user",
            Self::Business => "business",
            Self::Transaction => "transaction",
        }
    }
}

/// The subject of an event.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Subject<'a> {
    /// What kind of subject.
    pub kind: SubjectKind,
    /// Its id as Didit wrote it.
    pub id: Cow<'a, str>,
}

impl Subject<'_> {
    /// The name of the subject's inbox: kind and id, so equal ids of different kinds never share.
    pub fn inbox_name(&self) -> String {
        format!("{}:{}", self.kind.as_str(), self.id)
    }
}

fn present<'e, 'a>(field: &'e Option<Cow<'a, str>>) -> Option<&'e Cow<'a, str>> {
    field.as_ref().filter(|value| !value.trim().is_empty())
}

/// Finds the subject of an envelope, from the fields its `webhook_type` carries; for a type
/// Didit adds later, the first id present in a fixed order of preference.
pub fn subject_of<'a>(envelope: &Envelope<'a>) -> Option<Subject<'a>> {
    use SubjectKind::*;
    let kind_of_session = if envelope.session_kind.as_deref() == Some("business") {
        BusinessSession
    } else {
        Session
    };
    let family = envelope
        .webhook_type
        .as_deref()
        .and_then(|t| t.split_once('.'))
        .map(|(f, _)| f);
    let candidates: [(Option<&Cow<'a, str>>, SubjectKind); 3] = match family {
        Some("user") => [
            (present(&envelope.vendor_data), User),
            (present(&envelope.uuid), User),
            (None, User),
        ],
        Some("business") => [
            (present(&envelope.vendor_business_id), Business),
            (present(&envelope.uuid), Business),
            (None, Business),
        ],
        Some("transaction") => [
            (present(&envelope.transaction_id), Transaction),
            (present(&envelope.session_id), kind_of_session),
            (present(&envelope.vendor_data), User),
        ],
        _ => [
            (present(&envelope.session_id), kind_of_session),
            (present(&envelope.business_session_id), BusinessSession),
            (present(&envelope.transaction_id), Transaction),
        ],
    };
    let fallback = [
        (present(&envelope.vendor_data), User),
        (present(&envelope.vendor_business_id), Business),
        (present(&envelope.uuid), User),
    ];
    candidates
        .into_iter()
        .chain(fallback)
        .find_map(|(id, kind)| {
            id.map(|id| Subject {
                kind,
                id: id.clone(),
            })
        })
}

/// A digest of everything in a delivery's body but `event_id`, in canonical form.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ContentDigest([u8; 32]);

impl ContentDigest {
    /// Digests `body`. A body without a canonical form (which only an `X-Signature` over its
    /// exact bytes can vouch for) is digested as those bytes.
    pub fn of_body(body: &[u8]) -> Self {
        let mut hasher = Sha256::new();
        match CanonicalJson::parse(body) {
            Ok(mut canonical) => {
                canonical.remove_top_level("event_id");
                hasher.update(b"canonical:");
                hasher.update(canonical.to_string(NonAscii::Escaped).as_bytes());
            }
            Err(_) => {
                hasher.update(b"raw:");
                hasher.update(body);
            }
        }
        Self(hasher.finalize().into())
    }
}

/// The stable id of one Didit event (see the module documentation).
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct EventId(String);

fn digest_fields<'f>(domain: &[u8], fields: impl IntoIterator<Item = &'f [u8]>) -> EventId {
    let mut hasher = Sha256::new();
    hasher.update(domain);
    for field in fields {
        hasher.update((field.len() as u64).to_be_bytes());
        hasher.update(field);
    }
    let digest = hasher.finalize();
    let prefix = digest.get(..16).unwrap_or(&[]);
    EventId(format!("evt_{}", hex::encode(prefix)))
}

impl EventId {
    /// Derives the id. `content` is the digest of the body when the signature covers it, and
    /// `None` when only the four fields of `X-Signature-Simple` are authenticated.
    pub fn derive(
        subject: &Subject<'_>,
        webhook_type: &str,
        timestamp: i64,
        status: Option<&str>,
        content: Option<&ContentDigest>,
    ) -> Self {
        let timestamp = format!("{timestamp}");
        let content: &[u8] = content.map_or(&[], |digest| &digest.0);
        digest_fields(
            b"didit-edge/event-id/v2",
            [
                subject.kind.as_str().as_bytes(),
                subject.id.as_bytes(),
                webhook_type.as_bytes(),
                timestamp.as_bytes(),
                status.unwrap_or("").as_bytes(),
                content,
            ],
        )
    }

    /// The id the first releases derived, without the content: what events stored by them
    /// are known by, so their retries stay duplicates across an upgrade.
    pub fn derive_v1(
        subject: &Subject<'_>,
        webhook_type: &str,
        timestamp: i64,
        status: Option<&str>,
    ) -> Self {
        let timestamp = format!("{timestamp}");
        digest_fields(
            b"didit-edge/event-id/v1",
            [
                subject.kind.as_str().as_bytes(),
                subject.id.as_bytes(),
                webhook_type.as_bytes(),
                timestamp.as_bytes(),
                status.unwrap_or("").as_bytes(),
            ],
        )
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for EventId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    fn envelope(json: &str) -> Envelope<'_> {
        Envelope::parse(json.as_bytes()).expect("valid envelope")
    }

    #[test]
    fn subject_follows_the_event_family() {
        let cases = [
            (
                r#"{"webhook_type":"status.updated","session_id":"s1","vendor_data":"u1"}"#,
                SubjectKind::Session,
                "s1",
            ),
            (
                r#"{"webhook_type":"status.updated","session_kind":"business","session_id":"b1"}"#,
                SubjectKind::BusinessSession,
                "b1",
            ),
            (
                r#"{"webhook_type":"user.status.updated","vendor_data":"u1","session_id":"s1"}"#,
                SubjectKind::User,
                "u1",
            ),
            (
                r#"{"webhook_type":"user.data.updated","uuid":"x-1"}"#,
                SubjectKind::User,
                "x-1",
            ),
            (
                r#"{"webhook_type":"business.status.updated","vendor_business_id":"acme"}"#,
                SubjectKind::Business,
                "acme",
            ),
            (
                r#"{"webhook_type":"transaction.created","transaction_id":"t1","session_id":"s1"}"#,
                SubjectKind::Transaction,
                "t1",
            ),
            (
                r#"{"webhook_type":"something.new","vendor_data":"u9"}"#,
                SubjectKind::User,
                "u9",
            ),
            (
                r#"{"webhook_type":"status.updated","session_id":"  ","business_session_id":"bs"}"#,
                SubjectKind::BusinessSession,
                "bs",
            ),
        ];
        for (json, kind, id) in cases {
            let subject = subject_of(&envelope(json)).expect(json);
            assert_eq!((subject.kind, subject.id.as_ref()), (kind, id), "{json}");
        }
        assert_eq!(
            subject_of(&envelope(r#"{"webhook_type":"status.updated"}"#)),
            None
        );
    }

    fn user(id: &str) -> Subject<'_> {
        Subject {
            kind: SubjectKind::User,
            id: Cow::Borrowed(id),
        }
    }

    #[test]
    fn event_id_is_stable_and_separates_transitions() {
        let subject = user("u1");
        let content = ContentDigest::of_body(br#"{"status":"FLAGGED"}"#);
        let id = |kind: &Subject<'_>, webhook_type, timestamp, status| {
            EventId::derive(kind, webhook_type, timestamp, Some(status), Some(&content))
        };
        let flagged = id(&subject, "user.status.updated", 100, "FLAGGED");
        assert_eq!(flagged, id(&subject, "user.status.updated", 100, "FLAGGED"));
        assert!(flagged.as_str().starts_with("evt_") && flagged.as_str().len() == 36);
        assert_ne!(flagged, id(&subject, "user.status.updated", 101, "FLAGGED"));
        assert_ne!(flagged, id(&subject, "user.status.updated", 100, "ACTIVE"));
        assert_ne!(flagged, id(&subject, "user.data.updated", 100, "FLAGGED"));
        let other = Subject {
            kind: SubjectKind::Session,
            id: Cow::Borrowed("u1"),
        };
        assert_ne!(flagged, id(&other, "user.status.updated", 100, "FLAGGED"));
        // Length prefixes keep field boundaries: ("ab","c") and ("a","bc") differ.
        assert_ne!(
            EventId::derive(&user("ab"), "c", 1, None, None),
            EventId::derive(&user("a"), "bc", 1, None, None)
        );
    }

    #[test]
    fn distinct_content_in_the_same_second_gets_distinct_ids() {
        let first = br#"{"webhook_type":"user.data.updated","vendor_data":"u1","timestamp":100,"status":"ACTIVE","changes":{"email":"a@x"},"event_id":"e1"}"#;
        let second = br#"{"webhook_type":"user.data.updated","vendor_data":"u1","timestamp":100,"status":"ACTIVE","changes":{"phone":"+1"},"event_id":"e2"}"#;
        let id = |body: &[u8]| {
            EventId::derive(
                &user("u1"),
                "user.data.updated",
                100,
                Some("ACTIVE"),
                Some(&ContentDigest::of_body(body)),
            )
        };
        assert_ne!(id(first), id(second));
        // Only the content counts, not how it is written or which attempt's `event_id` it has.
        let retry = br#"{ "event_id" : "e9", "timestamp":100, "webhook_type":"user.data.updated",
            "vendor_data":"u1", "changes":{"email":"a@x"}, "status":"ACTIVE" }"#;
        assert_eq!(id(first), id(retry));
        // Nested `event_id`s are content like any other field.
        let nested = br#"{"webhook_type":"user.data.updated","vendor_data":"u1","timestamp":100,"status":"ACTIVE","changes":{"email":"a@x","event_id":"x"},"event_id":"e1"}"#;
        assert_ne!(id(first), id(nested));
    }

    #[test]
    fn a_body_without_canonical_form_is_digested_as_its_bytes() {
        let lone = br#"{"a":"\ud800"}"#;
        assert_eq!(ContentDigest::of_body(lone), ContentDigest::of_body(lone));
        assert_ne!(
            ContentDigest::of_body(lone),
            ContentDigest::of_body(br#"{"a":"\ud801"}"#)
        );
    }

    #[test]
    fn the_first_derivation_is_kept_byte_for_byte() {
        // Computed by Python's hashlib over the v1 layout, as the first releases stored it.
        assert_eq!(
            EventId::derive_v1(&user("u1"), "user.status.updated", 100, Some("FLAGGED")).as_str(),
            "evt_03479d8ee31fc72b4b2da566dba0deac"
        );
    }
}
