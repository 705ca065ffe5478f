//! The webhook destinations (`GET /webhook/destinations/`): each with the delivery health
//! Didit reports, and which of them deliver to this edge.

use alloc::string::String;
use alloc::vec::Vec;
use serde::Serialize;
use serde_json::Value;

use super::{text, DiditViewError};

/// The path of the destinations list, under the API's base URL. Only the list: the single
/// destination's answer carries its `secret_shared_key`, which the edge never reads.
pub const DESTINATIONS_PATH: &str = "/webhook/destinations/";

/// The largest destinations list read (an application has a handful; each row with its
/// 30-day series is a few KiB).
pub const MAX_DESTINATIONS_BYTES: usize = 512 * 1024;

/// One destination as Didit reports it, without anything secret. Absent or mistyped fields
/// read as `None`: Didit adds and reshapes fields, and a health view should still show the
/// rest.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Destination {
    /// Didit's id of the destination.
    pub uuid: String,
    /// Its label in Didit's console.
    pub label: Option<String>,
    /// Where Didit posts, without user info, query or fragment (which may carry a
    /// credential).
    pub url: Option<String>,
    /// Whether Didit sends to it.
    pub enabled: Option<bool>,
    /// The payload version it is sent (`v1`, `v2`, `v3`).
    pub webhook_version: Option<String>,
    /// The event types it is subscribed to.
    pub subscribed_events: Vec<String>,
    /// Deliveries Didit made to it (every attempt counts).
    pub deliveries_count: Option<u64>,
    /// Of them, the failed ones.
    pub failed_deliveries_count: Option<u64>,
    /// Mean response time.
    pub average_response_time_ms: Option<f64>,
    /// Failed share, in percent.
    pub error_rate_percentage: Option<f64>,
    /// When Didit last delivered to it (as Didit writes it).
    pub last_delivery_at: Option<String>,
    /// Didit's word for its health, as given (its values are not documented).
    pub health_status: Option<String>,
    /// Whether this edge reads its deliveries for a session's attempts (see
    /// [`select_destinations`]).
    pub this_edge: bool,
}

/// Reads the destinations list: an array of objects, each with a `uuid`. A row that is not
/// one is left out; a body that is not an array is unreadable.
pub fn parse_destinations(body: &str) -> Result<Vec<Destination>, DiditViewError> {
    let Ok(Value::Array(rows)) = crate::json::from_str::<Value>(body) else {
        return Err(DiditViewError::Unreadable {
            reason: "a destinations list that is not a JSON array",
        });
    };
    Ok(rows
        .iter()
        .filter_map(Value::as_object)
        .filter_map(|row| {
            Some(Destination {
                uuid: text(row, "uuid")?,
                label: text(row, "label"),
                url: text(row, "url").map(|url| without_credentials(&url)),
                enabled: row.get("enabled").and_then(Value::as_bool),
                webhook_version: text(row, "webhook_version"),
                subscribed_events: row
                    .get("subscribed_events")
                    .and_then(Value::as_array)
                    .map(|events| {
                        events
                            .iter()
                            .filter_map(Value::as_str)
                            .map(String::from)
                            .collect()
                    })
                    .unwrap_or_default(),
                deliveries_count: row.get("deliveries_count").and_then(Value::as_u64),
                failed_deliveries_count: row.get("failed_deliveries_count").and_then(Value::as_u64),
                average_response_time_ms: row
                    .get("average_response_time_ms")
                    .and_then(Value::as_f64),
                error_rate_percentage: row.get("error_rate_percentage").and_then(Value::as_f64),
                last_delivery_at: text(row, "last_delivery_at"),
                health_status: text(row, "health_status"),
                this_edge: false,
            })
        })
        .collect())
}

/// How the destinations of this edge were chosen.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ChosenBy {
    /// `DIDIT_DESTINATION` names one.
    Setting,
    /// The enabled destinations whose URL has the scheme, host and port of the admin request:
    /// the host the operator reached this edge on is, unless set otherwise, the one Didit
    /// posts to.
    SameHost,
}

/// Marks the destinations this edge reads a session's attempts from: the one
/// `DIDIT_DESTINATION` names (enabled or not: the operator chose it), else every enabled one
/// whose URL has the origin of `request_url`. None marked means none matched, which the
/// answer shows rather than guessing.
pub fn select_destinations(
    destinations: &mut [Destination],
    configured: Option<&str>,
    request_url: &str,
) -> ChosenBy {
    let here = origin_of(request_url);
    for destination in destinations.iter_mut() {
        destination.this_edge = match configured {
            Some(uuid) => destination.uuid == uuid,
            None => {
                destination.enabled == Some(true)
                    && here.is_some()
                    && destination.url.as_deref().and_then(origin_of) == here
            }
        };
    }
    if configured.is_some() {
        ChosenBy::Setting
    } else {
        ChosenBy::SameHost
    }
}

/// A URL's origin, `scheme://host[:port]` in lower case, with user info left out and a
/// scheme's default port dropped; `None` for anything but an `http`/`https` URL with a host.
pub fn origin_of(url: &str) -> Option<String> {
    let (scheme, rest) = url.trim().split_once("://")?;
    let scheme = scheme.to_ascii_lowercase();
    let default_port = match scheme.as_str() {
        "http" => ":80",
        "https" => ":443",
        _ => return None,
    };
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    let host = authority
        .rsplit_once('@')
        .map_or(authority, |(_, host)| host)
        .to_ascii_lowercase();
    let host = host.strip_suffix(default_port).unwrap_or(&host);
    if host.is_empty() {
        return None;
    }
    Some(alloc::format!("{scheme}://{host}"))
}

/// `url` without user info, query or fragment: what identifies a destination, never a token
/// someone put in it.
fn without_credentials(url: &str) -> String {
    let url = url.split(['?', '#']).next().unwrap_or_default();
    match url.split_once("://") {
        Some((scheme, rest)) => {
            let (authority, path) = rest.find('/').map_or((rest, ""), |at| rest.split_at(at));
            let host = authority
                .rsplit_once('@')
                .map_or(authority, |(_, host)| host);
            alloc::format!("{scheme}://{host}{path}")
        }
        None => String::from(url),
    }
}

/// `GET /admin/didit/destinations`: Didit's destinations with their health, and which are
/// this edge's.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct DestinationsView {
    /// Always `true` here; `{"enabled": false}` is answered while `DIDIT_API_KEY` is unset.
    pub enabled: bool,
    /// How this edge's destinations were chosen.
    pub chosen_by: ChosenBy,
    /// Every destination, in Didit's order (oldest first).
    pub destinations: Vec<Destination>,
}
