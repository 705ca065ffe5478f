//! The message from the edge to a subject's inbox: claim this id, and if it is new, keep this
//! event. The CloudEvent rides as a raw JSON value, so it is neither escaped nor re-encoded.

use didit_edge_core::risk::Level;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

/// Path of the claim call on the inbox.
pub const PATH: &str = "/claim";

/// A claim, as sent and as received.
#[derive(Serialize, Deserialize)]
pub struct Claim<'a> {
    /// The stable event id.
    pub id: &'a str,
    /// The inbox's own name (its subject), which the dead-letter index needs for replays.
    pub inbox: &'a str,
    /// Didit's `event_id`, a second duplicate key.
    pub alias: Option<&'a str>,
    /// Didit's `webhook_type`, for choosing each consumer's origin at delivery time.
    pub webhook_type: &'a str,
    /// When Didit created the event (Unix seconds): events go out in this order.
    pub created_at: i64,
    /// The assessed risk level, for the same.
    pub risk_level: Level,
    /// The consumers that take this event (each gets its own ordered delivery).
    pub consumers: Vec<String>,
    /// The CloudEvent to deliver.
    #[serde(borrow)]
    pub cloud_event: &'a RawValue,
}
