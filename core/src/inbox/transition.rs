//! What happened to an event, as the operator's log tells it: one [`Transition`] per step of
//! its life, queued by the machine next to the changes it makes, so that "what happened to
//! event X" and "how many failed in the last hour" are questions the logs answer.
//!
//! A line names the event by its id and its subject only by kind: subject ids are Didit's
//! session ids or the integrator's `vendor_data`, which is identity data and is never logged.
//! Lines are written at least once: after a crash between the log and the write, the step is
//! taken (and logged) again.

use alloc::string::String;

use serde::Serialize;

use crate::attempt::DeadReason;

/// One step in the life of an event, or of one consumer's copy of it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
#[non_exhaustive]
pub enum Transition {
    /// A claim stored a new event.
    Accepted {
        /// The event id.
        event_id: String,
        /// Didit's `webhook_type`.
        webhook_type: String,
        /// Whether it was classified at once (it waits otherwise for valid delivery settings).
        classified: bool,
    },
    /// A claim repeated an event already taken; nothing more happens.
    Duplicate {
        /// The original's id.
        event_id: String,
    },
    /// An event stored while the delivery settings were broken got its consumers.
    Classified {
        /// The event id.
        event_id: String,
        /// How many consumers take it.
        consumers: usize,
    },
    /// One origin was sent a copy (or, with no origin, why nothing could be sent).
    Attempt {
        /// The event id.
        event_id: String,
        /// The consumer.
        consumer: String,
        /// The origin tried.
        origin: Option<String>,
        /// Its HTTP status, if it answered.
        status: Option<u16>,
        /// A stable code for what went wrong; absent for a delivery.
        error: Option<&'static str>,
        /// From sending the request to its end.
        latency_ms: Option<u64>,
    },
    /// A consumer has its copy.
    Delivered {
        /// The event id.
        event_id: String,
        /// The consumer.
        consumer: String,
        /// The origin that took it.
        origin: String,
        /// Failed attempts before this one.
        failures: u32,
    },
    /// Every origin failed; the copy waits for its next attempt.
    RetryScheduled {
        /// The event id.
        event_id: String,
        /// The consumer.
        consumer: String,
        /// Failed attempts so far.
        failures: u32,
        /// When the next attempt is due.
        next_attempt_at_ms: i64,
    },
    /// Every origin that could take the copy is cooling down: no retry is used up.
    Deferred {
        /// The event id.
        event_id: String,
        /// The consumer.
        consumer: String,
        /// When the first of them may be tried again.
        until_ms: i64,
    },
    /// The copy was given up on and kept for replay.
    DeadLetter {
        /// The event id.
        event_id: String,
        /// The consumer.
        consumer: String,
        /// Why.
        #[serde(serialize_with = "reason_code")]
        reason: DeadReason,
        /// Failed attempts.
        failures: u32,
    },
    /// An operator put a dead letter back in line.
    Replayed {
        /// The event id.
        event_id: String,
        /// The consumer.
        consumer: String,
    },
    /// A dead letter's retention ended: its payload is gone and it cannot be replayed.
    DeadLetterExpired {
        /// The event id.
        event_id: String,
        /// The consumer.
        consumer: String,
    },
    /// An operator erased the subject: the event's payload and body are gone, its id stays
    /// for deduplication.
    Erased {
        /// The event id.
        event_id: String,
    },
}

fn reason_code<S: serde::Serializer>(
    reason: &DeadReason,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    serializer.serialize_str(reason.as_str())
}

/// The kind of an inbox's subject (`session`, `user`, …) without its id, which may be identity
/// data: anything but a known kind is `unknown`.
pub fn subject_kind(subject: Option<&str>) -> &'static str {
    const KINDS: [&str; 5] = [
        "session",
        "business_session",
        "user",
        "business",
        "transaction",
    ];
    let prefix = subject
        .and_then(|s| s.split_once(':'))
        .map(|(kind, _)| kind);
    KINDS
        .into_iter()
        .find(|kind| Some(*kind) == prefix)
        .unwrap_or("unknown")
}

/// A log record: the transition and its subject's kind. The log's own timestamp says when.
#[derive(Serialize)]
pub struct LogRecord<'a> {
    /// What happened.
    #[serde(flatten)]
    pub transition: &'a Transition,
    /// The subject's kind ([`subject_kind`]).
    pub subject_kind: &'static str,
}

impl LogRecord<'_> {
    /// The record as one line of JSON.
    pub fn to_line(&self) -> String {
        // Serializing owned strings and numbers into a String cannot fail.
        serde_json::to_string(self).unwrap_or_default()
    }
}
