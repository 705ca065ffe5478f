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
//! created the webhook, covered by every signature) and `status`. This is Didit's own fallback
//! key (`session_id + webhook_type + timestamp`) plus the status, so that:
//! - every retry and duplicate of one event, which re-sends the same body, gets the same id;
//! - real repeated transitions (a user FLAGGED, then ACTIVE, then FLAGGED again) differ by
//!   timestamp, and two changes within one second still differ by status;
//! - a retry that did carry a fresh timestamp is still caught when its `event_id` is stable:
//!   the inbox also remembers Didit's `event_id` as an alias (see [`crate::intake::Admission`]).
//!   A per-attempt `event_id` never collides, so the alias can only merge true duplicates.
//!
//! The id is the first 128 bits of SHA-256 over the length-prefixed fields, in hex, behind
//! `evt_`: stable across deployments and releases, opaque, and safe in a URL or header.

use alloc::borrow::Cow;
use alloc::format;
use alloc::string::String;
use core::fmt;
use sha2::{Digest, Sha256};

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
    /// The stable name used in events and inbox names.
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

/// The stable id of one Didit event (see the module documentation).
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct EventId(String);

impl EventId {
    /// Derives the id.
    pub fn derive(
        subject: &Subject<'_>,
        webhook_type: &str,
        timestamp: i64,
        status: Option<&str>,
    ) -> Self {
        let mut hasher = Sha256::new();
        hasher.update(b"didit-edge/event-id/v1");
        let timestamp = format!("{timestamp}");
        for field in [
            subject.kind.as_str(),
            subject.id.as_ref(),
            webhook_type,
            timestamp.as_str(),
            status.unwrap_or(""),
        ] {
            hasher.update((field.len() as u64).to_be_bytes());
            hasher.update(field.as_bytes());
        }
        let digest = hasher.finalize();
        let prefix = digest.get(..16).unwrap_or(&[]);
        Self(format!("evt_{}", hex::encode(prefix)))
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

    #[test]
    fn event_id_is_stable_and_separates_transitions() {
        let subject = Subject {
            kind: SubjectKind::User,
            id: Cow::Borrowed("u1"),
        };
        let flagged = EventId::derive(&subject, "user.status.updated", 100, Some("FLAGGED"));
        assert_eq!(
            flagged,
            EventId::derive(&subject, "user.status.updated", 100, Some("FLAGGED"))
        );
        assert!(flagged.as_str().starts_with("evt_") && flagged.as_str().len() == 36);
        assert_ne!(
            flagged,
            EventId::derive(&subject, "user.status.updated", 101, Some("FLAGGED"))
        );
        assert_ne!(
            flagged,
            EventId::derive(&subject, "user.status.updated", 100, Some("ACTIVE"))
        );
        assert_ne!(
            flagged,
            EventId::derive(&subject, "user.data.updated", 100, Some("FLAGGED"))
        );
        let other = Subject {
            kind: SubjectKind::Session,
            id: Cow::Borrowed("u1"),
        };
        assert_ne!(
            flagged,
            EventId::derive(&other, "user.status.updated", 100, Some("FLAGGED"))
        );
        // Length prefixes keep field boundaries: ("ab","c") and ("a","bc") differ.
        let ab = Subject {
            kind: SubjectKind::User,
            id: Cow::Borrowed("ab"),
        };
        let a = Subject {
            kind: SubjectKind::User,
            id: Cow::Borrowed("a"),
        };
        assert_ne!(
            EventId::derive(&ab, "c", 1, None),
            EventId::derive(&a, "bc", 1, None)
        );
    }
}
