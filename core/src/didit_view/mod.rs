//! Didit's own view of its webhooks, shown beside the edge's: the webhook destinations with
//! the delivery health Didit reports, and every attempt Didit made for one session, so an
//! operator can read "Didit tried three times, we answered 401 once" next to the lookup's
//! timeline. Read-only calls of Didit's management API (`/webhook/destinations/…`) with the
//! reconciliation key; nothing here is stored.
//!
//! The list ([`parse_destinations`]) and a deliveries page ([`parse_deliveries_page`]) are read
//! as `serde_json::Value` walks rather than derived readers: the worker already carries the
//! `Value` parser, and a derived reader per type would grow the upload for two admin calls.
//! Which destinations are read, over which days and how far ([`SessionScan`]) is decided here.
//! The destination's secret is never read: only the list is fetched, which does not carry it.

mod deliveries;
mod destinations;
mod scan;

pub use deliveries::*;
pub use destinations::*;
pub use scan::*;

use alloc::string::String;
use core::fmt;

use crate::reconcile::api::{retry_after_secs, Answer};
use crate::time::UnixSecs;

/// How long one request to Didit's API may take here: an operator is waiting, and a scan makes
/// up to a dozen.
pub const REQUEST_TIMEOUT_MS: u64 = 10_000;

/// The scopes a Didit API key needs for these calls, named in the refusal an operator sees.
pub const NEEDED_SCOPES: &str = "webhooks: read and decisions: read";

/// Why Didit's view could not be shown.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DiditViewError {
    /// Didit answered 401 or 403: the key is wrong or lacks a scope ([`NEEDED_SCOPES`]).
    KeyNotAllowed {
        /// The status Didit answered.
        status: u16,
    },
    /// Didit answered 429; wait at least this long when it said (capped like
    /// reconciliation's waits).
    RateLimited {
        /// What `Retry-After` asked for, in seconds.
        retry_after_secs: Option<u64>,
    },
    /// No answer within the timeout, a failed connection, or a 5xx or 408.
    Unreachable {
        /// The status, `None` when nothing answered.
        status: Option<u16>,
    },
    /// Another 4xx or 3xx: the request is not one Didit takes (a wrong `DIDIT_API_BASE_URL`,
    /// or a `DIDIT_DESTINATION` Didit does not know).
    Refused {
        /// The status Didit answered.
        status: u16,
    },
    /// A 2xx whose body is not what Didit documents, or larger than the edge reads.
    Unreadable {
        /// What was wrong (never the body: a page names sessions).
        reason: &'static str,
    },
}

impl DiditViewError {
    /// The stable code clients match on.
    pub fn code(&self) -> &'static str {
        match self {
            Self::KeyNotAllowed { .. } => "didit_key_not_allowed",
            Self::RateLimited { .. } => "didit_rate_limited",
            Self::Unreachable { .. } => "didit_unreachable",
            Self::Refused { .. } => "didit_refused",
            Self::Unreadable { .. } => "didit_unreadable",
        }
    }

    /// The HTTP status of the admin API's answer. Not 401: the operator's own credential was
    /// good (and the console signs out on a 401).
    pub fn status(&self) -> u16 {
        match self {
            Self::KeyNotAllowed { .. } => 403,
            Self::RateLimited { .. } => 429,
            Self::Unreachable { .. } | Self::Refused { .. } | Self::Unreadable { .. } => 502,
        }
    }
}

impl fmt::Display for DiditViewError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::KeyNotAllowed { status } => write!(
                f,
                "Didit's API refused DIDIT_API_KEY with {status}: the key needs the scopes {NEEDED_SCOPES}"
            ),
            Self::RateLimited {
                retry_after_secs: Some(secs),
            } => write!(f, "Didit's API is rate limiting this key: retry after {secs} s"),
            Self::RateLimited {
                retry_after_secs: None,
            } => f.write_str("Didit's API is rate limiting this key: retry later"),
            Self::Unreachable { status: Some(status) } => {
                write!(f, "Didit's API answered {status}")
            }
            Self::Unreachable { status: None } => f.write_str("Didit's API did not answer"),
            Self::Refused { status } => write!(
                f,
                "Didit's API refused the request with {status} (check DIDIT_API_BASE_URL and DIDIT_DESTINATION)"
            ),
            Self::Unreadable { reason } => write!(f, "Didit's API sent {reason}"),
        }
    }
}

/// The body of a 2xx, or why there is none.
pub fn answer_body(answer: Answer<'_>, now: UnixSecs) -> Result<&str, DiditViewError> {
    match answer {
        Answer::Ok(body) => Ok(body),
        Answer::Status {
            status: status @ (401 | 403),
            ..
        } => Err(DiditViewError::KeyNotAllowed { status }),
        Answer::Status {
            status: 429,
            retry_after,
        } => Err(DiditViewError::RateLimited {
            retry_after_secs: retry_after.and_then(|text| retry_after_secs(text, now)),
        }),
        Answer::Status { status, .. } if status == 408 || status >= 500 => {
            Err(DiditViewError::Unreachable {
                status: Some(status),
            })
        }
        Answer::Status { status, .. } => Err(DiditViewError::Refused { status }),
        Answer::Unreachable => Err(DiditViewError::Unreachable { status: None }),
        Answer::TooLarge => Err(DiditViewError::Unreadable {
            reason: "an answer larger than the edge reads",
        }),
    }
}

/// A JSON string field of `object`, if it is one.
fn text(object: &serde_json::Map<String, serde_json::Value>, key: &str) -> Option<String> {
    object
        .get(key)
        .and_then(serde_json::Value::as_str)
        .map(String::from)
}

#[cfg(test)]
mod tests;
