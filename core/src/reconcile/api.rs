//! Didit's API as reconciliation uses it, the way the official SDK (`didit-sdk`) does: the
//! session list (`GET /sessions/`) and one session's decision (`GET /session/{id}/decision/`),
//! both under the base URL (`https://verification.didit.me/v3`) with the `x-api-key` header.
//!
//! Only what reconciliation needs is read from a listed session (its id, kind, status and
//! creation time): the rows also carry names, portraits, phone numbers and emails, which are
//! neither kept nor logged.

use alloc::borrow::Cow;
use alloc::string::String;
use alloc::vec::Vec;
use core::fmt::Write as _;

use serde::Deserialize;

use crate::time::{parse_http_date, parse_rfc3339_micros, to_rfc3339, UnixMicros, UnixSecs};

/// Didit's API, as its SDK names it.
pub const DEFAULT_BASE_URL: &str = "https://verification.didit.me/v3";
/// Sessions per list page: the most the SDK asks for.
pub const PAGE_SIZE: u32 = 100;
/// The largest decision read: the event written from it must fit the stored row an inbox
/// keeps (as a webhook's body must, see `MAX_BODY_BYTES`). A larger one is set aside.
pub const MAX_DECISION_BYTES: usize = 1_048_576;
/// The largest list page read: a page of [`PAGE_SIZE`] rows with their identity data is far
/// less, and a body past this is not Didit's list (it is read no further and counts as an
/// unreadable page).
pub const MAX_PAGE_BYTES: usize = 4 * 1_048_576;
/// The longest `Retry-After` honoured; a longer one is read as this (the SDK caps at 60 s; a
/// background sweep can afford to wait longer, not forever).
pub const MAX_RETRY_AFTER_SECS: u64 = 3_600;

/// Which kind of session a list covers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SessionKind {
    /// User Verification (KYC).
    User,
    /// Business Verification (KYB).
    Business,
}

crate::named::by_name!(SessionKind {
    User = "user",
    Business = "business",
});

impl SessionKind {
    /// The value of the list's `session_kind` parameter.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::User => "user",
            Self::Business => "business",
        }
    }

    /// The subject kind its events belong to.
    pub fn subject_kind(self) -> crate::identity::SubjectKind {
        match self {
            Self::User => crate::identity::SubjectKind::Session,
            Self::Business => crate::identity::SubjectKind::BusinessSession,
        }
    }
}

/// The path and query of one list page, relative to the base URL. The trailing slash is the
/// canonical route: without it Didit answers 301, and the edge never follows redirects.
pub fn list_path(kind: SessionKind, from: UnixSecs, to: UnixSecs, offset: u64) -> String {
    let mut path = String::from("/sessions/?session_kind=");
    let _ = write!(
        path,
        "{}&date_from={}&date_to={}&limit={PAGE_SIZE}&offset={offset}",
        kind.as_str(),
        to_rfc3339(from.0),
        to_rfc3339(to.0),
    );
    path
}

/// The path of a session's decision.
pub fn decision_path(session_id: &str) -> String {
    let mut path = String::from("/session/");
    for byte in session_id.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'_' | b'.' | b'~') {
            path.push(char::from(byte));
        } else {
            let _ = write!(path, "%{byte:02X}");
        }
    }
    path.push_str("/decision/");
    path
}

/// What an API call came to, as the adapter saw it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Answer<'a> {
    /// A 2xx with this body.
    Ok(&'a str),
    /// Any other status, with its `Retry-After` header if one came.
    Status {
        /// The HTTP status.
        status: u16,
        /// The `Retry-After` header as sent.
        retry_after: Option<&'a str>,
    },
    /// No answer: the connection failed or the timeout passed.
    Unreachable,
    /// A 2xx whose body is larger than [`MAX_DECISION_BYTES`] (not read further).
    TooLarge,
}

/// Why an API call gave nothing usable.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ApiError {
    /// A status worth retrying (408, 429, 5xx) or no answer; wait at least `retry_after_secs`
    /// when Didit said how long.
    Unavailable {
        /// The status, `None` when nothing answered.
        status: Option<u16>,
        /// What `Retry-After` asked for, capped.
        retry_after_secs: Option<u64>,
    },
    /// A status retrying will not mend soon (401 and 403: the key; 400: the query): it is
    /// retried on the backoff schedule, and `/admin/reconciliation` shows it.
    Refused {
        /// The status.
        status: u16,
    },
    /// A 2xx whose body is not what the API documents.
    Unreadable {
        /// What was wrong.
        reason: String,
    },
}

impl ApiError {
    /// One line for the admin API and the log (never a body, which may hold identity data).
    pub fn describe(&self) -> String {
        let mut text = String::new();
        let _ = match self {
            Self::Unavailable {
                status: Some(status),
                ..
            } => write!(text, "Didit's API answered {status}"),
            Self::Unavailable { status: None, .. } => write!(text, "Didit's API did not answer"),
            Self::Refused { status } => write!(
                text,
                "Didit's API refused the request with {status} (check DIDIT_API_KEY and DIDIT_API_BASE_URL)"
            ),
            Self::Unreadable { reason } => write!(text, "Didit's API sent {reason}"),
        };
        text
    }
}

/// Whether `status` is worth retrying, as the SDK decides.
fn retryable(status: u16) -> bool {
    matches!(status, 408 | 429 | 500..=599)
}

/// A `Retry-After` value (seconds, or an HTTP-date) as seconds from `now`, capped.
pub fn retry_after_secs(text: &str, now: UnixSecs) -> Option<u64> {
    let text = text.trim();
    let secs = match text.parse::<u64>() {
        Ok(secs) => secs,
        Err(_) => {
            let at = parse_http_date(text)?;
            u64::try_from(at.saturating_sub(now.0)).unwrap_or(0)
        }
    };
    Some(secs.min(MAX_RETRY_AFTER_SECS))
}

impl<'a> Answer<'a> {
    /// The body of a 2xx, or why there is none.
    pub fn body(self, now: UnixSecs) -> Result<&'a str, ApiError> {
        match self {
            Self::Ok(body) => Ok(body),
            Self::Status {
                status,
                retry_after,
            } if retryable(status) => Err(ApiError::Unavailable {
                status: Some(status),
                retry_after_secs: retry_after.and_then(|text| retry_after_secs(text, now)),
            }),
            Self::Status { status, .. } => Err(ApiError::Refused { status }),
            Self::Unreachable => Err(ApiError::Unavailable {
                status: None,
                retry_after_secs: None,
            }),
            Self::TooLarge => Err(ApiError::Unreadable {
                reason: "an answer larger than the edge reads".into(),
            }),
        }
    }
}

/// One listed session: what reconciliation reads of it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SessionRow {
    /// Didit's session id.
    pub session_id: String,
    /// KYC or KYB.
    pub kind: SessionKind,
    /// Its status now.
    pub status: String,
    /// When it was created, to the microsecond as Didit writes it.
    pub created_at: UnixMicros,
}

/// One page of the list.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Page {
    /// Its sessions, in the API's order (newest first).
    pub rows: Vec<SessionRow>,
    /// How many the page held, readable or not: what the next offset moves by.
    pub len: u64,
    /// Whether there is a next page.
    pub has_next: bool,
    /// Rows without a usable id, status or creation time (skipped, and counted).
    pub unreadable_rows: u64,
    /// What made this page the last one although Didit's metadata disagrees.
    pub inconsistency: Option<&'static str>,
}

#[derive(Deserialize)]
struct RawPage<'a> {
    #[serde(default)]
    count: Option<u64>,
    #[serde(default, borrow)]
    next: Option<Cow<'a, str>>,
    #[serde(borrow)]
    results: Vec<RawRow<'a>>,
}

#[derive(Deserialize)]
struct RawRow<'a> {
    #[serde(default, borrow)]
    session_id: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    status: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    session_kind: Option<Cow<'a, str>>,
    #[serde(default)]
    created_at: Option<Moment<'a>>,
}

/// `created_at` as the SDK accepts it: ISO 8601 text or Unix seconds.
enum Moment<'a> {
    Seconds(f64),
    Text(Cow<'a, str>),
}

/// Read by its JSON type rather than derived `#[serde(untagged)]`, which buffers the value in
/// serde's `Content` tree and tries each variant on it (docs/performance.md). Accepts the
/// same: any number (as `f64`), or text (borrowed when it has no escapes).
impl<'de: 'a, 'a> Deserialize<'de> for Moment<'a> {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Shape;
        impl<'de> serde::de::Visitor<'de> for Shape {
            type Value = Moment<'de>;
            fn expecting(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
                f.write_str("Unix seconds or RFC 3339 text")
            }
            fn visit_f64<E>(self, secs: f64) -> Result<Moment<'de>, E> {
                Ok(Moment::Seconds(secs))
            }
            fn visit_i64<E>(self, secs: i64) -> Result<Moment<'de>, E> {
                Ok(Moment::Seconds(secs as f64))
            }
            fn visit_u64<E>(self, secs: u64) -> Result<Moment<'de>, E> {
                Ok(Moment::Seconds(secs as f64))
            }
            fn visit_borrowed_str<E>(self, text: &'de str) -> Result<Moment<'de>, E> {
                Ok(Moment::Text(Cow::Borrowed(text)))
            }
            fn visit_str<E>(self, text: &str) -> Result<Moment<'de>, E> {
                Ok(Moment::Text(Cow::Owned(text.into())))
            }
        }
        deserializer.deserialize_any(Shape)
    }
}

impl Moment<'_> {
    fn micros(&self) -> Option<UnixMicros> {
        match self {
            Self::Seconds(secs) if secs.is_finite() => Some(UnixMicros((secs * 1e6) as i64)),
            Self::Seconds(_) => None,
            Self::Text(text) => parse_rfc3339_micros(text),
        }
    }
}

/// Reads one list page of `kind` sessions at `offset`. A page that cannot move the walk on
/// (empty with a `next`, or the last one short of the `count` it gives) ends the walk of this
/// kind, with the inconsistency named: the SDK raises there, but a sweep that stopped for good
/// would find nothing again, and the next sweep lists everything anew.
pub fn parse_page(body: &str, kind: SessionKind, offset: u64) -> Result<Page, ApiError> {
    let raw: RawPage<'_> = crate::json::from_str(body).map_err(|_| ApiError::Unreadable {
        reason: "a session list that is not the documented JSON".into(),
    })?;
    let len = raw.results.len() as u64;
    let mut has_next = raw.next.as_deref().is_some_and(|next| !next.is_empty());
    let mut inconsistency = None;
    if len == 0 && has_next {
        inconsistency = Some("an empty session page with a next page");
        has_next = false;
    }
    // KYB counts are capped at 100, so only a KYC count can say a page is missing.
    if kind == SessionKind::User
        && inconsistency.is_none()
        && !has_next
        && raw
            .count
            .is_some_and(|count| offset.saturating_add(len) < count)
    {
        inconsistency = Some("a last session page short of the count it gives");
    }
    let mut rows = Vec::with_capacity(raw.results.len());
    let mut unreadable_rows = 0;
    for row in raw.results {
        let kind = match row.session_kind.as_deref() {
            None => kind,
            Some("business") => SessionKind::Business,
            Some(_) => SessionKind::User,
        };
        match (
            row.session_id.filter(|id| !id.trim().is_empty()),
            row.status.filter(|status| !status.trim().is_empty()),
            row.created_at.as_ref().and_then(Moment::micros),
        ) {
            (Some(session_id), Some(status), Some(created_at)) => rows.push(SessionRow {
                session_id: session_id.into_owned(),
                kind,
                status: status.into_owned(),
                created_at,
            }),
            _ => unreadable_rows += 1,
        }
    }
    Ok(Page {
        rows,
        len,
        has_next,
        unreadable_rows,
        inconsistency,
    })
}

/// Whether Didit sends a `status.updated` for reaching `status` that is a result: a session
/// still `Not Started` or `In Progress` has nothing to deliver yet, so it is never a gap.
pub fn is_result_status(status: &str) -> bool {
    !matches!(
        crate::normalize::status_code(status).as_str(),
        "not_started" | "in_progress" | ""
    )
}
