//! What the admin API's queries and bodies name: which dead letters a listing or a replay
//! covers, and which subject an erasure erases.

use alloc::borrow::Cow;
use alloc::string::String;
use serde::{Deserialize, Serialize};

use super::LookupRequest;
use crate::identity::{Subject, SubjectKind};
use crate::rejection::Rejection;

/// Dead letters listed per page when the caller does not say.
pub const DEFAULT_PAGE_SIZE: u32 = 100;
/// Most dead letters listed per page, so one listing stays one bounded query.
pub const MAX_PAGE_SIZE: u32 = 500;

/// Which dead letters a listing or a bulk replay covers: `?consumer=…&limit=…&after=…`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeadLetterQuery {
    /// Only this consumer's dead letters.
    pub consumer: Option<String>,
    /// At most this many per page.
    pub limit: u32,
    /// The cursor from the previous page's `next`.
    pub after: u64,
}

impl DeadLetterQuery {
    /// Parses a query string (without `?`). Unknown parameters are refused rather than
    /// ignored: a typo in `consumer` must not turn a replay of one consumer into a replay of all.
    pub fn parse(query: Option<&str>) -> Result<Self, Rejection> {
        let mut parsed = Self {
            consumer: None,
            limit: DEFAULT_PAGE_SIZE,
            after: 0,
        };
        for pair in query.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            match key {
                "consumer" if is_plain_name(value) => parsed.consumer = Some(value.into()),
                "consumer" => {
                    return Err(Rejection::InvalidQuery {
                        reason:
                            "`consumer` must be a consumer name (letters, digits, `.`, `_`, `-`)",
                    })
                }
                "limit" => {
                    parsed.limit = value
                        .parse()
                        .ok()
                        .filter(|n| (1..=MAX_PAGE_SIZE).contains(n))
                        .ok_or(Rejection::InvalidQuery {
                            reason: "`limit` must be a whole number from 1 to 500",
                        })?;
                }
                "after" => {
                    parsed.after = value.parse().map_err(|_| Rejection::InvalidQuery {
                        reason: "`after` must be the `next` cursor of a previous page",
                    })?;
                }
                _ => {
                    return Err(Rejection::InvalidQuery {
                        reason: "unknown parameter; use `consumer`, `limit` or `after`",
                    })
                }
            }
        }
        Ok(parsed)
    }

    /// How many subjects one bulk replay visits: at most [`SUBJECTS_PER_REPLAY`], and never
    /// more than the caller's `limit` (each subject holds at least one of the dead letters the
    /// caller asked for, so a smaller limit replays fewer).
    pub fn subjects_to_replay(&self) -> u32 {
        SUBJECTS_PER_REPLAY.min(self.limit)
    }
}

/// Most subjects (inboxes) one replay call visits, each with a subrequest, so one call stays
/// well inside the platform's subrequest limit; a bulk replay's answer says how many dead
/// letters remain for the next call.
pub const SUBJECTS_PER_REPLAY: u32 = 40;

/// Longest subject id an erasure accepts: Didit's ids are UUIDs, but `vendor_data` is the
/// integrator's own text (a 20 kB id is erased like any other).
pub const MAX_SUBJECT_ID_BYTES: usize = 64 * 1024;
/// Largest body of `POST /admin/erasures`: the longest id, every character escaped.
pub const MAX_ERASURE_BODY_BYTES: u64 = 512 * 1024;

/// The body of `POST /admin/erasures`, as the CLI writes it and [`erasure_request`] reads it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ErasureRequest<'a> {
    /// The subject's kind (`session`, `business_session`, `user`, `business`, `transaction`).
    #[serde(borrow)]
    pub subject_kind: Cow<'a, str>,
    /// Its id: the session id, or for a user the `vendor_data` (any text).
    #[serde(borrow)]
    pub subject_id: Cow<'a, str>,
}

/// The subject a `POST /admin/erasures` body names: `{"subject_kind": "user", "subject_id":
/// "…"}`. The id travels in JSON, not in the path, so no URL normalisation (`.`, `..`, `%2F`,
/// `?`, `#`, whitespace) can change which subject is erased.
pub fn erasure_request(body: &[u8]) -> Result<Subject<'static>, Rejection> {
    // Read with the lookup's body reader (its fields, all optional), then held to exactly the
    // two an erasure takes: one struct reader in the upload instead of two.
    let body = super::read_lookup_body(body);
    match body {
        Some(LookupRequest {
            subject_kind: Some(kind),
            subject_id: Some(id),
            event_id: None,
        }) => subject_named(&kind, id),
        _ => Err(Rejection::InvalidSubject {
            reason:
                "the body must be {\"subject_kind\": \"…\", \"subject_id\": \"…\"} and nothing else",
        }),
    }
}

/// The subject `kind` and `id` name, if the kind is known and the id neither blank nor too long.
pub(super) fn subject_named(kind: &str, id: Cow<'_, str>) -> Result<Subject<'static>, Rejection> {
    let kind = SubjectKind::from_name(kind).ok_or(Rejection::InvalidSubject {
        reason:
            "unknown subject kind; use session, business_session, user, business or transaction",
    })?;
    if id.trim().is_empty() || id.len() > MAX_SUBJECT_ID_BYTES {
        return Err(Rejection::InvalidSubject {
            reason: "the subject id must be 1 to 65536 bytes and not blank",
        });
    }
    Ok(Subject {
        kind,
        id: Cow::Owned(id.into_owned()),
    })
}

fn is_plain_name(text: &str) -> bool {
    (1..=64).contains(&text.len())
        && text
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

#[cfg(test)]
mod tests {
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    use super::*;
    use alloc::vec::Vec;

    #[test]
    fn dead_letter_queries() {
        assert_eq!(
            DeadLetterQuery::parse(None),
            Ok(DeadLetterQuery {
                consumer: None,
                limit: 100,
                after: 0
            })
        );
        assert_eq!(
            DeadLetterQuery::parse(Some("consumer=crm-eu&limit=500&after=42")),
            Ok(DeadLetterQuery {
                consumer: Some("crm-eu".into()),
                limit: 500,
                after: 42
            })
        );
        for bad in [
            "limit=0",
            "limit=501",
            "limit=x",
            "after=-1",
            "consumer=",
            "consumer=a%20b",
            "consumers=crm",
            "limit",
        ] {
            let rejection = DeadLetterQuery::parse(Some(bad)).expect_err(bad);
            assert_eq!(rejection.code(), "invalid_query", "{bad}");
            assert_eq!(rejection.status(), 400);
        }
    }

    #[test]
    fn an_erasure_names_its_subject_in_the_body_whatever_the_id_holds() {
        let body = |kind: &str, id: &str| {
            let request = ErasureRequest {
                subject_kind: kind.into(),
                subject_id: id.into(),
            };
            let body = serde_json::to_vec(&request).expect("json");
            assert_eq!(
                serde_json::from_slice::<serde_json::Value>(&body).expect("json"),
                serde_json::json!({"subject_kind": kind, "subject_id": id}),
                "the wire shape"
            );
            body
        };
        let long = "é".repeat(10_000);
        for id in [
            ".",
            "..",
            "/",
            "a/../b",
            "%2F",
            "?x#y",
            " a b ",
            "日本\u{1F600}",
            long.as_str(),
        ] {
            let subject = erasure_request(&body("user", id)).expect(id);
            assert_eq!((subject.kind, subject.id.as_ref()), (SubjectKind::User, id));
            assert_eq!(subject.inbox_name(), alloc::format!("user:{id}"));
        }
        assert_eq!(
            erasure_request(&body("business_session", "b-1"))
                .expect("valid")
                .inbox_name(),
            "business_session:b-1"
        );
        let too_long = "a".repeat(MAX_SUBJECT_ID_BYTES + 1);
        assert!(erasure_request(&body("user", &too_long[1..])).is_ok());
        for bad in [
            body("person", "a"),
            body("user", ""),
            body("user", "  "),
            body("user", &too_long),
            br#"{"subject_kind":"user"}"#.to_vec(),
            br#"{"subject_kind":"user","subject_id":"a","extra":1}"#.to_vec(),
            br#"{"subject_kind":"user","subject_id":"a","event_id":"evt_1"}"#.to_vec(),
            br#"{"subject_kind":"user","subject_id":7}"#.to_vec(),
            b"user/alice".to_vec(),
            Vec::new(),
        ] {
            let rejection = erasure_request(&bad).expect_err("refused");
            assert_eq!(
                (rejection.code(), rejection.status()),
                ("invalid_subject", 400)
            );
        }
    }

    #[test]
    fn a_bulk_replay_visits_at_most_forty_subjects_and_no_more_than_the_limit() {
        let subjects = |query: &str| {
            DeadLetterQuery::parse(Some(query))
                .expect(query)
                .subjects_to_replay()
        };
        assert_eq!(subjects(""), 40, "the default page of 100 is capped");
        assert_eq!(subjects("limit=500"), 40);
        assert_eq!(subjects("limit=40"), 40);
        assert_eq!(subjects("limit=7"), 7, "a smaller limit is kept");
        assert_eq!(subjects("limit=1"), 1);
    }
}
