//! One page of a destination's deliveries
//! (`GET /webhook/destinations/{uuid}/deliveries/`): every attempt is its own row (the first
//! send, each automatic retry, each resend), newest first, with no payload.

use alloc::string::String;
use alloc::vec::Vec;
use serde::Serialize;
use serde_json::Value;

use super::{text, DiditViewError};
use crate::time::parse_rfc3339_micros;

/// The largest deliveries page read: 100 rows of a few hundred bytes each are far less.
pub const MAX_DELIVERIES_PAGE_BYTES: usize = 1_048_576;

/// One attempt Didit made, as its deliveries list reports it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct DiditAttempt {
    /// Didit's id of this attempt.
    pub uuid: Option<String>,
    /// The destination it went to.
    pub destination: String,
    /// The session it was about.
    #[serde(skip)]
    pub session_id: Option<String>,
    /// When Didit made it, as Didit writes it.
    pub created_at: Option<String>,
    /// The same moment in Unix ms, to place it beside the edge's timeline; `None` when
    /// Didit's time does not read.
    pub at_ms: Option<i64>,
    /// The HTTP status this edge answered; `None` when nothing answered (a timeout).
    pub response_status: Option<u16>,
    /// How long the answer took, as Didit measured it.
    pub response_time_ms: Option<u64>,
    /// Didit's word for the attempt (as given).
    pub status: Option<String>,
    /// The event type sent.
    pub webhook_type: Option<String>,
}

/// A deliveries page: its rows and the next page's URL.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeliveriesPage {
    /// The attempts listed, newest first.
    pub results: Vec<DiditAttempt>,
    /// The next page's absolute URL, `None` on the last.
    pub next: Option<String>,
}

/// Reads a deliveries page of `destination`: an object with a `results` array. A row that is
/// not an object is left out; its fields are read leniently (a mistyped one is `None`).
pub fn parse_deliveries_page(
    body: &str,
    destination: &str,
) -> Result<DeliveriesPage, DiditViewError> {
    let page = crate::json::from_str::<Value>(body).ok();
    let Some(rows) = page
        .as_ref()
        .and_then(|page| page.get("results"))
        .and_then(Value::as_array)
    else {
        return Err(DiditViewError::Unreadable {
            reason: "a deliveries page without its results",
        });
    };
    let results = rows
        .iter()
        .filter_map(Value::as_object)
        .map(|row| {
            let created_at = text(row, "created_at");
            DiditAttempt {
                uuid: text(row, "uuid"),
                destination: String::from(destination),
                session_id: text(row, "session_id"),
                at_ms: created_at
                    .as_deref()
                    .and_then(parse_rfc3339_micros)
                    .map(|at| at.0.div_euclid(1_000)),
                created_at,
                response_status: row
                    .get("response_status")
                    .and_then(Value::as_u64)
                    .and_then(|status| u16::try_from(status).ok()),
                response_time_ms: row.get("response_time_ms").and_then(|time| {
                    time.as_u64().or_else(|| {
                        time.as_f64()
                            .filter(|ms| ms.is_finite() && *ms >= 0.0)
                            // Saturates: a float past u64 becomes u64::MAX, never a panic.
                            .map(|ms| ms as u64)
                    })
                }),
                status: text(row, "status"),
                webhook_type: text(row, "webhook_type"),
            }
        })
        .collect();
    Ok(DeliveriesPage {
        results,
        next: page
            .as_ref()
            .and_then(|page| page.get("next"))
            .and_then(Value::as_str)
            .map(String::from),
    })
}
