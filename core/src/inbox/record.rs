//! What an inbox keeps about each event and each consumer's copy of it: the records the
//! adapter stores and loads, and the changes it writes.

use alloc::string::String;
use alloc::vec::Vec;

use crate::attempt::LogEntry;
use crate::delivery::CopyState;
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
    /// event as the webhook of the same transition (see [`super::Inbox::knows_transition`]).
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
}

impl CopyRecord {
    /// A new copy, due now.
    pub fn new(now: UnixMs) -> Self {
        Self {
            state: CopyState::new(now),
            delivered_to: None,
            rejected_by: Vec::new(),
            index: None,
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

/// One change to write, in order. Each is one atomic write of the adapter (its statements
/// run with no `.await` between them); any prefix of a step's changes leaves a state the
/// inbox recovers from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Change {
    /// The inbox's subject name (for the dead-letter index), written once.
    Subject(String),
    /// The subject was erased: its name (which holds its id) goes, until a new event names it.
    ForgetSubject,
    /// A new event with its content and its copies.
    InsertEvent {
        /// The event.
        event: EventRecord,
        /// What it carries.
        content: StoredContent,
        /// One copy per consumer (none while unclassified).
        copies: Vec<(String, CopyRecord)>,
    },
    /// A stored event is classified: its risk, its payload, its copies; its body goes.
    Classify {
        /// The event.
        seq: Seq,
        /// Its risk level.
        risk_level: Level,
        /// The CloudEvent's JSON text, when a consumer takes it.
        payload: Option<String>,
        /// One copy per consumer.
        copies: Vec<(String, CopyRecord)>,
    },
    /// One copy's whole record but its rejections ([`Change::SetRejections`]).
    PutCopy {
        /// The event.
        seq: Seq,
        /// The consumer.
        consumer: String,
        /// The record.
        copy: CopyRecord,
    },
    /// The origins that answered a copy's last attempt with a 3xx or 4xx, replacing those
    /// kept before (written only when they change).
    SetRejections {
        /// The event.
        seq: Seq,
        /// The consumer.
        consumer: String,
        /// The origins, in the order they answered.
        rejected_by: Vec<Rejected>,
    },
    /// Attempts to append to one copy's log (only ever needed by a dead letter's listing).
    AppendAttempts {
        /// The event.
        seq: Seq,
        /// The consumer.
        consumer: String,
        /// What happened, in order.
        entries: Vec<LogEntry>,
    },
    /// The payload (identity data) goes; the record stays for deduplication.
    DropPayload(Seq),
    /// The event is forgotten, id and attempt log included (its attached aliases too).
    ForgetEvent(Seq),
    /// Another of Didit's `event_id`s names this event: a later resend carrying it (with a
    /// fresh timestamp, after the subject moved on) is the same event.
    AttachAlias {
        /// The event.
        seq: Seq,
        /// Didit's `event_id`.
        alias: String,
    },
    /// The subject was erased at this moment: reconciliation takes nothing more about it
    /// until the mark expires ([`super::Inbox::erased_until`]).
    MarkErased(UnixMs),
    /// The erasure mark expired.
    ForgetErasure,
}
