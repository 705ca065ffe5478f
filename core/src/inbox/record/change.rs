//! The changes an inbox asks its adapter to write, in order. They are the machine's only way
//! to storage: each is one atomic write, so the list of variants is the list of every write
//! the adapter has to be able to make (and crash between).

use alloc::string::String;
use alloc::vec::Vec;

use super::{CopyRecord, EventRecord, Rejected, Seq, StoredContent};
use crate::risk::Level;
use crate::time::UnixMs;

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
    /// The payload (identity data) goes; the record stays for deduplication.
    DropPayload(Seq),
    /// The event is forgotten, id and attempt log included (its attached aliases too).
    ForgetEvent(Seq),
    /// Nothing is left: no event, no erasure mark, no row this release cannot read. The
    /// object's storage is released whole (Durable Objects bill an object's storage, even an
    /// empty table's, until it is deleted), and starts afresh with the next claim.
    Vacate,
    /// Another of Didit's `event_id`s names this event: a later resend carrying it (with a
    /// fresh timestamp, after the subject moved on) is the same event.
    AttachAlias {
        /// The event.
        seq: Seq,
        /// Didit's `event_id`.
        alias: String,
    },
    /// The subject was erased at this moment: reconciliation takes nothing more about it
    /// until the mark expires ([`crate::inbox::Inbox::erased_until`]).
    MarkErased(UnixMs),
    /// The erasure mark expired.
    ForgetErasure,
}
