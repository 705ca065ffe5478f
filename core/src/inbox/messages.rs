//! What goes into an inbox and what comes out of it: the claims, settings and answers the
//! adapter exchanges with the machine, apart from the machine itself so that a reader finds the
//! vocabulary in one place.

use alloc::string::String;
use alloc::vec::Vec;

use serde::{Deserialize, Serialize};

use super::{Rejected, Seq};
use crate::attempt::{DeadReason, LogEntry, Verdict};
use crate::delivery::Retention;
use crate::intake::{Classified, Identified};
use crate::retry::RetrySchedule;
use crate::risk::Level;
use crate::time::{UnixMs, UnixSecs};
use crate::verify::{Provenance, Verified};

/// What a consumer's later events of the same subject do while an earlier one is a dead letter.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum AfterDeadLetter {
    /// They wait (nothing is sent or counted against their schedule) until the dead letter is
    /// replayed and delivered, or its retention ends: the origin never sees a subject's events
    /// out of order. The default, since an out-of-order "approved" after a lost "declined" is
    /// how a person gets wrongly onboarded.
    #[default]
    Hold,
    /// They are delivered; a replayed dead letter then arrives after newer events, and the
    /// origin must order by the event's `time`.
    Continue,
}

impl AfterDeadLetter {
    /// The setting's value for this choice.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Hold => "hold",
            Self::Continue => "continue",
        }
    }
}

/// The delivery settings an inbox decides by.
#[derive(Clone, Copy, Debug)]
pub struct InboxPolicy<'a> {
    /// Waits between attempts.
    pub retry_schedule: &'a RetrySchedule,
    /// How long each part of a finished event is kept.
    pub retention: Retention,
    /// What a dead letter does to the copies after it.
    pub after_dead_letter: AfterDeadLetter,
}

/// A delivery the edge asks the inbox to keep.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Claim {
    /// The stable event id.
    pub id: String,
    /// The id releases before the content digest gave it.
    pub legacy_id: String,
    /// The inbox's subject name.
    pub subject: String,
    /// Didit's `event_id`.
    pub alias: Option<String>,
    /// Didit's `webhook_type`.
    pub webhook_type: String,
    /// Didit's `status`.
    pub status: Option<String>,
    /// When Didit created it.
    pub created_at: UnixSecs,
    /// What the edge made of it.
    pub content: ClaimContent,
    /// Where the edge learned of it.
    pub source: Source,
    /// Which signature verified it (`None` from Didit's API): kept for the lookup's timeline.
    pub verified: Option<Verified>,
}

/// Where the edge learned of an event.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Source {
    /// A webhook Didit signed.
    #[default]
    Webhook,
    /// Didit's API, by reconciliation ([`crate::reconcile`]).
    Api,
}

crate::named::by_name!(Source {
    Webhook = "webhook",
    Api = "api",
});

/// What the edge could make of a delivery.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ClaimContent {
    /// Classified at the edge.
    Classified(Classification),
    /// Stored as received, while the delivery settings are broken.
    Unclassified {
        /// Didit's body.
        body: String,
        /// How it was authenticated.
        verified: Verified,
        /// A console test delivery.
        test: bool,
    },
}

/// Where an event goes and what it says.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Classification {
    /// Its risk level.
    pub risk_level: Level,
    /// The consumers that take it.
    pub consumers: Vec<String>,
    /// The CloudEvent's JSON text.
    pub payload: String,
}

impl From<Classified> for Classification {
    /// What an inbox keeps of a classification: the status update is the stream's, not kept.
    fn from(classified: Classified) -> Self {
        Self {
            risk_level: classified.risk_level,
            consumers: classified.consumers,
            payload: classified.cloud_event.get().into(),
        }
    }
}

impl Claim {
    /// The claim of an identified event, with what the edge made of it.
    pub fn of(identified: &Identified<'_>, content: ClaimContent, source: Source) -> Self {
        Self {
            id: identified.event_id.as_str().into(),
            legacy_id: identified.legacy_id.as_str().into(),
            subject: identified.inbox(),
            alias: identified.alias.clone(),
            webhook_type: String::from(identified.webhook_type.as_ref()),
            status: identified.status.as_deref().map(String::from),
            created_at: UnixSecs(identified.created_at),
            content,
            source,
            verified: match identified.provenance {
                Provenance::Signed(verified) => Some(verified),
                Provenance::Api => None,
            },
        }
    }
}

/// One thing the inbox wants done now.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Work {
    /// Classify a stored event (read its body, classify it, [`Inbox::handle_classified`](super::Inbox::handle_classified)).
    Classify(Seq),
    /// Attempt a delivery ([`Inbox::handle_attempt`](super::Inbox::handle_attempt) with what came of it).
    Deliver(DueCopy),
}

/// Where the copy of an attempt in progress stands ([`Inbox::standing`](super::Inbox::standing)).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Standing {
    /// Still its consumer's next copy to send: the attempt goes on.
    Next,
    /// Still pending, but an earlier event now comes first (it arrived, or was classified,
    /// while an origin was tried): the attempt stops, and the earlier one goes first.
    Overtaken,
    /// No longer pending (an erasure ended it): nothing more is sent or recorded.
    Settled,
}

/// A consumer's copy of an event that is due for an attempt: what the attempt needs to know.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DueCopy {
    /// The event.
    pub seq: Seq,
    /// Its id: the `webhook-id` of every attempt.
    pub id: String,
    /// The consumer.
    pub consumer: String,
    /// Didit's `webhook_type`, for choosing origins.
    pub webhook_type: String,
    /// The risk level, for choosing origins.
    pub risk_level: Level,
    /// Whether the payload is still stored (an attempt without it fails visibly).
    pub has_payload: bool,
    /// Origins that answered the last attempt with a 3xx or 4xx.
    pub rejected_by: Vec<String>,
    /// When it was due: the turn a limited origin's gate told it last, if that is why it
    /// waited, which it presents to keep its place in that gate's line.
    pub due_at: UnixMs,
}

/// What an attempt came to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Outcome {
    /// The plan's verdict.
    pub verdict: Verdict,
    /// What happened at each origin.
    pub log: Vec<LogEntry>,
    /// Origins that answered with a 3xx or 4xx.
    pub rejected_by: Vec<Rejected>,
}

/// Which dead letters a replay covers.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ReplayFilter<'a> {
    /// Only this event (its id or Didit's `event_id`).
    pub id: Option<&'a str>,
    /// Only this consumer's copies.
    pub consumer: Option<&'a str>,
}

/// A copy, named as the admin API names it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CopyKey {
    /// The event id.
    pub id: String,
    /// The consumer.
    pub consumer: String,
}

/// A change the dead-letter index is to hear about.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IndexChange {
    /// The event.
    pub seq: Seq,
    /// Which copy.
    pub key: CopyKey,
    /// List it (with what the listing shows) or unlist it.
    pub change: IndexEntry,
}

/// What the index lists of a dead letter, or that it goes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum IndexEntry {
    /// List it.
    Put {
        /// Didit's `webhook_type`.
        webhook_type: String,
        /// Why it died.
        reason: DeadReason,
        /// When the edge received the event.
        received_at: UnixMs,
        /// When it died.
        dead_at: UnixMs,
    },
    /// Unlist it.
    Remove,
}

/// What an erasure removed from an inbox (also the inbox's answer to the admin API).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Erasure {
    /// Events of the subject the inbox knew (each keeps only what deduplication needs).
    pub events: usize,
    /// Stored payloads and bodies removed.
    pub payloads: usize,
    /// Copies that were waiting for delivery and never will be.
    pub pending_deliveries: usize,
    /// Dead letters removed (and unlisted).
    pub dead_letters: usize,
}

/// What an inbox holds of a transition reconciliation found in Didit's API.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Knowledge {
    /// An event of that transition: nothing is missing.
    Held,
    /// None: the result is missing (or its webhook is late).
    Missing,
    /// The subject was erased: reconciliation must take nothing more about it.
    Erased,
}

crate::named::by_name!(Knowledge {
    Held = "held",
    Missing = "missing",
    Erased = "erased",
});
