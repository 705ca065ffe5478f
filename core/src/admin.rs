//! Who may use the admin API (`Authorization: Bearer <ADMIN_TOKEN>`, compared in constant
//! time), and what its paths and queries name.

use alloc::borrow::Cow;
use alloc::string::String;
use core::fmt;
use serde::Deserialize;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::identity::{Subject, SubjectKind};
use crate::rejection::Rejection;

/// The admin token. Shorter than this is refused: it guards replay and health data.
pub const MIN_TOKEN_LEN: usize = 24;

/// The configured admin token; never printed.
#[derive(Clone, PartialEq, Eq)]
pub struct AdminToken(String);

impl fmt::Debug for AdminToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("AdminToken(<redacted>)")
    }
}

impl AdminToken {
    /// Checks the token's length; the value is never echoed.
    pub fn parse(text: &str) -> Result<Self, usize> {
        let text = text.trim();
        if text.len() < MIN_TOKEN_LEN {
            return Err(text.len());
        }
        Ok(Self(text.into()))
    }
}

/// Whether `authorization` (the header's value) carries the token. Both sides are hashed first,
/// so the comparison takes the same time whatever the presented token's length or content.
pub fn authorize(authorization: Option<&str>, token: Option<&AdminToken>) -> Result<(), Rejection> {
    let Some(token) = token else {
        return Err(Rejection::Unauthorized {
            reason: "the admin API is off: ADMIN_TOKEN is not set",
        });
    };
    let presented = authorization
        .and_then(|value| value.trim().strip_prefix("Bearer "))
        .map(str::trim)
        .ok_or(Rejection::Unauthorized {
            reason: "expected `Authorization: Bearer <ADMIN_TOKEN>`",
        })?;
    let expected = Sha256::digest(token.0.as_bytes());
    let given = Sha256::digest(presented.as_bytes());
    if bool::from(expected.as_slice().ct_eq(given.as_slice())) {
        Ok(())
    } else {
        Err(Rejection::Unauthorized {
            reason: "wrong admin token",
        })
    }
}

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
}

/// Longest subject id an erasure accepts: Didit's ids are UUIDs, but `vendor_data` is the
/// integrator's own text (a 20 kB id is erased like any other).
pub const MAX_SUBJECT_ID_BYTES: usize = 64 * 1024;
/// Largest body of `POST /admin/erasures`: the longest id, every character escaped.
pub const MAX_ERASURE_BODY_BYTES: u64 = 512 * 1024;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ErasureBody<'a> {
    #[serde(borrow)]
    subject_kind: Cow<'a, str>,
    #[serde(borrow)]
    subject_id: Cow<'a, str>,
}

/// The subject a `POST /admin/erasures` body names: `{"subject_kind": "user", "subject_id":
/// "…"}`. The id travels in JSON, not in the path, so no URL normalisation (`.`, `..`, `%2F`,
/// `?`, `#`, whitespace) can change which subject is erased.
pub fn erasure_request(body: &[u8]) -> Result<Subject<'static>, Rejection> {
    let body: ErasureBody<'_> = serde_json::from_slice(body).map_err(|_| Rejection::InvalidSubject {
        reason: "the body must be {\"subject_kind\": \"…\", \"subject_id\": \"…\"} and nothing else",
    })?;
    let kind = SubjectKind::from_name(&body.subject_kind).ok_or(Rejection::InvalidSubject {
        reason:
            "unknown subject kind; use session, business_session, user, business or transaction",
    })?;
    let id = body.subject_id.into_owned();
    if id.trim().is_empty() || id.len() > MAX_SUBJECT_ID_BYTES {
        return Err(Rejection::InvalidSubject {
            reason: "the subject id must be 1 to 65536 bytes and not blank",
        });
    }
    Ok(Subject {
        kind,
        id: Cow::Owned(id),
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
    fn bearer_token_must_match() {
        let token = AdminToken::parse("a-long-enough-admin-token-123").expect("valid");
        assert_eq!(
            authorize(Some("Bearer a-long-enough-admin-token-123"), Some(&token)),
            Ok(())
        );
        for bad in [
            None,
            Some(""),
            Some("Bearer"),
            Some("Bearer wrong"),
            Some("Basic a-long-enough-admin-token-123"),
            Some("Bearer a-long-enough-admin-token-1234"),
        ] {
            assert!(
                matches!(
                    authorize(bad, Some(&token)),
                    Err(Rejection::Unauthorized { .. })
                ),
                "{bad:?}"
            );
        }
        assert!(matches!(
            authorize(Some("Bearer x"), None),
            Err(Rejection::Unauthorized { .. })
        ));
        assert_eq!(AdminToken::parse("short"), Err(5));
        assert_eq!(alloc::format!("{token:?}"), "AdminToken(<redacted>)");
    }

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
            serde_json::to_vec(&serde_json::json!({"subject_kind": kind, "subject_id": id}))
                .expect("json")
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
}
