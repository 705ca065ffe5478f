//! The records an inbox keeps: an event as stored (without its payload), each consumer's copy
//! of it, and the values beside them. These are what the adapter loads into the machine and
//! what the machine's [`super::Change`]s carry back to storage; how each value is spelled in a
//! column is [`super::text`]'s job, kept apart so that a record reads as what the machine
//! knows, not as how SQLite holds it.

use alloc::string::String;
use alloc::vec::Vec;

use crate::delivery::CopyState;
use crate::inbox::history::History;
use crate::risk::Level;
use crate::time::{UnixMs, UnixSecs};
use crate::verify::Verified;

/// An event's place in its inbox, in order of arrival.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Seq(pub i64);

/// Which derivation an event's id comes from (see [`crate::identity`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IdVersion {
    /// Subject, type, timestamp and status: what releases before the content digest stored.
    Legacy,
    /// The same plus the content digest.
    ContentDigest,
    /// Learned from Didit's API by reconciliation, with no webhook body to digest: the same
    /// event as the webhook of the same transition (see [`crate::inbox::Inbox::knows_transition`]).
    Reconciled,
}

/// A change to the dead-letter index that the index has not confirmed yet (an outbox).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IndexSync {
    /// List this dead letter.
    Put,
    /// It was replayed or expired: unlist it.
    Remove,
}

/// An origin that answered a copy's last attempt with a 3xx or 4xx: tried after the others
/// in the next attempt.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rejected {
    /// The origin.
    pub origin: String,
    /// What it answered.
    pub status: u16,
}

/// One consumer's copy of an event.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CopyRecord {
    /// Where it stands.
    pub state: CopyState,
    /// The origin that took it, once delivered.
    pub delivered_to: Option<String>,
    /// Origins that answered the last attempt with a 3xx or 4xx.
    pub rejected_by: Vec<Rejected>,
    /// What the dead-letter index has yet to hear about it.
    pub index: Option<IndexSync>,
    /// What its attempts and replays were, kept in the same row as its state.
    pub history: History,
}

impl CopyRecord {
    /// A new copy, due now.
    pub fn new(now: UnixMs) -> Self {
        Self {
            state: CopyState::new(now),
            delivered_to: None,
            rejected_by: Vec::new(),
            index: None,
            history: History::default(),
        }
    }
}

/// An event as stored, without its payload (which the adapter reads only to send it).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EventRecord {
    /// Its place in the inbox.
    pub seq: Seq,
    /// The stable event id.
    pub id: String,
    /// How the id was derived.
    pub id_version: IdVersion,
    /// Didit's `event_id`.
    pub alias: Option<String>,
    /// Didit's `webhook_type`.
    pub webhook_type: String,
    /// Didit's `status`.
    pub status: Option<String>,
    /// When Didit created it: the delivery order.
    pub created_at: UnixSecs,
    /// When the edge received it.
    pub received_at: UnixMs,
    /// Its risk level, once classified; `None` while it waits to be classified.
    pub risk_level: Option<Level>,
    /// Whether its payload (the CloudEvent) is still stored.
    pub has_payload: bool,
}

/// What an event carries when it is first stored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StoredContent {
    /// The CloudEvent, when a consumer takes it (`None`: only the id is kept).
    Classified {
        /// The CloudEvent's JSON text.
        payload: Option<String>,
        /// Which signature verified it (`None` from Didit's API).
        verified: Option<Verified>,
    },
    /// Didit's body as received, to classify once the delivery settings allow.
    Unclassified {
        /// Didit's body.
        body: String,
        /// How it was authenticated.
        verified: Verified,
        /// A console test delivery.
        test: bool,
    },
}
