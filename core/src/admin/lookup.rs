//! `POST /admin/lookup`: what happened to a subject's events, one timeline each, read from
//! the subject's inbox and changing nothing. What the body names, and the answer's shape.
//!
//! An event id (the `webhook-id` an origin saw) is a digest: the subject cannot be read back
//! from it, and nothing on the event's path writes an index from ids to subjects (that would
//! be a row written to a global object for every event). So a lookup names the subject
//! (`session` id, `user` by `vendor_data`, …), optionally with one event of it; an event id
//! alone is found only while it is a dead letter, through the dead-letter index that already
//! maps its ids to their subjects.

use alloc::borrow::Cow;
use alloc::string::String;
use alloc::vec::Vec;
use serde::{Deserialize, Serialize};

use super::LoggedAttempt;
use crate::identity::{Subject, SubjectKind};
use crate::rejection::Rejection;

/// Largest body of `POST /admin/lookup`: the longest subject id and an event id, every
/// character escaped.
pub const MAX_LOOKUP_BODY_BYTES: u64 = 520 * 1024;

/// Longest event id a lookup accepts (ours are `evt_` and 64 hex digits; Didit's are UUIDs).
pub const MAX_EVENT_ID_BYTES: usize = 256;

/// The body of `POST /admin/lookup`, as the CLI writes it and [`lookup_request`] reads it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LookupRequest<'a> {
    /// The subject's kind (`session`, `business_session`, `user`, `business`, `transaction`).
    #[serde(borrow, default, skip_serializing_if = "Option::is_none")]
    pub subject_kind: Option<Cow<'a, str>>,
    /// Its id: the session id, or for a user the `vendor_data`.
    #[serde(borrow, default, skip_serializing_if = "Option::is_none")]
    pub subject_id: Option<Cow<'a, str>>,
    /// One event: its id (the `webhook-id` origins saw) or Didit's `event_id`.
    #[serde(borrow, default, skip_serializing_if = "Option::is_none")]
    pub event_id: Option<Cow<'a, str>>,
}

/// What a lookup names.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LookupTarget {
    /// A subject's events, or one of them.
    Subject {
        /// The subject.
        subject: Subject<'static>,
        /// Only this event (its id or Didit's `event_id`).
        event_id: Option<String>,
    },
    /// An event by id alone: found through the dead-letter index, so only while it is a dead
    /// letter.
    Event(String),
}

/// What a `POST /admin/lookup` body names: a subject (`subject_kind` and `subject_id`), with or
/// without an `event_id`, or an `event_id` alone. Ids ride in the body, as an erasure's do, so
/// no URL normalisation changes what is looked up.
pub fn lookup_request(body: &[u8]) -> Result<LookupTarget, Rejection> {
    let body = read_lookup_body(body).ok_or(Rejection::InvalidSubject {
            reason: "the body must be {\"subject_kind\", \"subject_id\"}, {\"event_id\"} or all three, and nothing else",
        })?;
    let event_id = match body.event_id {
        Some(id) if id.trim().is_empty() || id.len() > MAX_EVENT_ID_BYTES => {
            return Err(Rejection::InvalidSubject {
                reason: "the event id must be 1 to 256 bytes and not blank",
            })
        }
        id => id.map(Cow::into_owned),
    };
    match (body.subject_kind, body.subject_id, event_id) {
        (None, None, Some(event_id)) => Ok(LookupTarget::Event(event_id)),
        (Some(kind), Some(id), event_id) => Ok(LookupTarget::Subject {
            subject: super::query::subject_named(&kind, id)?,
            event_id,
        }),
        _ => Err(Rejection::InvalidSubject {
            reason: "name a subject (subject_kind and subject_id), an event_id, or both",
        }),
    }
}

/// A body with a lookup's fields (an erasure's are two of them), read as text (JSON is UTF-8:
/// one copy of serde_json's parser serves every input); `None` when it is not one.
pub(super) fn read_lookup_body(body: &[u8]) -> Option<LookupRequest<'_>> {
    core::str::from_utf8(body)
        .ok()
        .and_then(|text| crate::json::from_str(text).ok())
}

/// The subject kind of an inbox's name (`session:…` → `session`), as the dead-letter index
/// lists it; `None` for a name no inbox has.
pub fn subject_of_inbox(inbox: &str) -> Option<Subject<'static>> {
    let (kind, id) = inbox.split_once(':')?;
    Some(Subject {
        kind: SubjectKind::from_name(kind)?,
        id: Cow::Owned(id.into()),
    })
}

/// What the admin API asks an inbox: its events' timelines, or one event's.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LookupAsk {
    /// The subject's kind, for the answer (the inbox forgets its name on an erasure).
    pub subject_kind: String,
    /// Only this event (its id or Didit's `event_id`).
    pub event_id: Option<String>,
}

/// Why an inbox found nothing to show.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LookupMiss {
    /// The inbox keeps nothing: no event, no erasure mark.
    Subject,
    /// The inbox keeps events, but not the one named.
    Event,
}

impl LookupMiss {
    /// The inbox's answer for this miss: the refusal's code, which no [`Lookup`]'s JSON is.
    pub fn as_str(self) -> &'static str {
        Rejection::from(self).code()
    }
}

/// Reads an inbox's answer to a lookup: a [`Lookup`]'s JSON text, passed on as it is (the
/// admin API never reads the views back, which would compile a reader for each), or a
/// [`LookupMiss`] by its name; anything else is an inbox that could not answer.
pub fn lookup_answer(answer: &str) -> Result<&str, Rejection> {
    if answer.starts_with('{') {
        return Ok(answer);
    }
    Err([LookupMiss::Subject, LookupMiss::Event]
        .into_iter()
        .find(|miss| miss.as_str() == answer)
        .map_or(Rejection::StorageUnavailable, Rejection::from))
}

impl From<LookupMiss> for Rejection {
    fn from(miss: LookupMiss) -> Self {
        match miss {
            LookupMiss::Subject => Self::SubjectNotFound,
            LookupMiss::Event => Self::EventNotFound,
        }
    }
}

/// `POST /admin/lookup`: one subject's events, each as a timeline. Nothing in it is identity
/// data: no payload, no name, not even the subject's id (the caller has it).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lookup {
    /// The subject's kind.
    pub subject_kind: String,
    /// When the subject was erased, while the mark lasts (`DEDUP_TTL_SECS`).
    pub erased_at_ms: Option<i64>,
    /// Its events still kept, in order of arrival.
    pub events: Vec<EventTimeline>,
}

/// One event, from its arrival to where each consumer's copy stands.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct EventTimeline {
    /// The event id: the `webhook-id` every origin got.
    pub id: String,
    /// Didit's `event_id`.
    pub didit_event_id: Option<String>,
    /// Didit's `webhook_type`.
    pub webhook_type: String,
    /// Didit's `status`.
    pub status: Option<String>,
    /// When Didit created it (its `timestamp`, Unix seconds).
    pub created_at: i64,
    /// How it arrived.
    pub received: Received,
    /// How it was classified; `None` while it waits for valid delivery settings.
    pub classified: Option<ClassifiedView>,
    /// Whether its payload is still kept (it goes once every consumer has it, on an
    /// erasure, or when its retention ends).
    pub payload_kept: bool,
    /// Each consumer's copy.
    pub copies: Vec<CopyTimeline>,
}

/// How an event arrived.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Received {
    /// When the edge stored it (Unix ms).
    pub at_ms: i64,
    /// `webhook`, or `api`: injected by reconciliation from Didit's API.
    pub source: String,
    /// The signature that verified it (`None` from the API, and for events stored before
    /// this was kept).
    pub signature: Option<SignatureView>,
    /// How old Didit's `timestamp` was when it arrived (ms; negative when it was ahead of the
    /// edge's clock): what freshness was judged on.
    pub age_ms: i64,
}

/// Which signature verified an event: small facts, never the signature or the secret.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignatureView {
    /// `X-Signature`, `X-Signature-V2` or `X-Signature-Simple`.
    pub header: String,
    /// Which configured secret matched (0 is the first): tells when an old one can go.
    pub secret_index: usize,
}

/// How an event was classified.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClassifiedView {
    /// Its risk level.
    pub risk_level: String,
    /// The consumers that take it.
    pub consumers: Vec<String>,
}

/// One consumer's copy: its attempts and where it stands.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CopyTimeline {
    /// The consumer.
    pub consumer: String,
    /// `pending`, `delivered`, `dead` (a dead letter) or `expired`.
    pub state: String,
    /// Failed attempts since it was last due afresh (pending copies).
    pub failures: Option<u32>,
    /// When it is tried next (pending copies).
    pub next_attempt_at_ms: Option<i64>,
    /// When it was delivered, became a dead letter, or expired.
    pub at_ms: Option<i64>,
    /// The origin that took it.
    pub delivered_to: Option<String>,
    /// Why it is dead or expired (`retries_exhausted`, `aborted_by_origin`, `erased`,
    /// `superseded`).
    pub reason: Option<String>,
    /// Attempts made (each tries up to four origins).
    pub attempts: u32,
    /// Requests made in all.
    pub requests: u32,
    /// Requests older than those listed, counted but no longer kept.
    pub requests_not_kept: u32,
    /// Times an operator replayed it, and when last.
    pub replays: u32,
    /// When it was last replayed.
    pub replayed_at_ms: Option<i64>,
    /// The requests, oldest first.
    pub log: Vec<LoggedAttempt>,
}

#[cfg(test)]
mod tests {
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    use super::*;

    #[test]
    fn a_subject_with_or_without_an_event() {
        let target = lookup_request(br#"{"subject_kind":"user","subject_id":"a/../b"}"#);
        assert_eq!(
            target,
            Ok(LookupTarget::Subject {
                subject: Subject {
                    kind: SubjectKind::User,
                    id: Cow::Owned("a/../b".into()),
                },
                event_id: None,
            })
        );
        let target =
            lookup_request(br#"{"subject_kind":"session","subject_id":"s1","event_id":"evt_1"}"#);
        assert!(matches!(
            target,
            Ok(LookupTarget::Subject { event_id: Some(ref id), .. }) if id == "evt_1"
        ));
    }

    #[test]
    fn an_event_id_alone() {
        assert_eq!(
            lookup_request(br#"{"event_id":"evt_1"}"#),
            Ok(LookupTarget::Event("evt_1".into()))
        );
    }

    #[test]
    fn anything_else_is_refused() {
        for body in [
            &br#"{}"#[..],
            br#"{"subject_kind":"session"}"#,
            br#"{"subject_id":"s1"}"#,
            br#"{"subject_kind":"planet","subject_id":"s1"}"#,
            br#"{"subject_kind":"session","subject_id":"  "}"#,
            br#"{"event_id":""}"#,
            br#"{"event_id":"evt_1","extra":1}"#,
            b"not json",
        ] {
            let refused = lookup_request(body);
            assert!(
                matches!(refused, Err(Rejection::InvalidSubject { .. })),
                "{body:?}: {refused:?}"
            );
        }
    }

    #[test]
    fn an_inbox_answer_is_passed_on_or_read_as_a_miss() {
        assert_eq!(lookup_answer("{\"events\":[]}"), Ok("{\"events\":[]}"));
        assert_eq!(
            lookup_answer(LookupMiss::Subject.as_str()),
            Err(Rejection::SubjectNotFound)
        );
        assert_eq!(
            lookup_answer(LookupMiss::Event.as_str()),
            Err(Rejection::EventNotFound)
        );
        assert_eq!(lookup_answer("garbled"), Err(Rejection::StorageUnavailable));
    }

    #[test]
    fn an_inbox_name_names_its_subject() {
        let subject = subject_of_inbox("user:alice:with:colons").expect("a user");
        assert_eq!(subject.kind, SubjectKind::User);
        assert_eq!(subject.id, "alice:with:colons");
        assert_eq!(subject_of_inbox("planet:x"), None);
        assert_eq!(subject_of_inbox("nocolon"), None);
    }
}
