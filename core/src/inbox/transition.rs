//! What happened to an event, as the operator's log tells it: one [`Transition`] per step of
//! its life, queued by the machine next to the changes it makes, so that "what happened to
//! event X" and "how many failed in the last hour" are questions the logs answer.
//!
//! A line names the event by its id and its subject only by kind: subject ids are Didit's
//! session ids or the integrator's `vendor_data`, which is identity data and is never logged.
//! Lines are written at least once: after a crash between the log and the write, the step is
//! taken (and logged) again.

use alloc::string::String;
use core::fmt::Write as _;

use crate::attempt::DeadReason;
use crate::identity::SubjectKind;

/// One step in the life of an event, or of one consumer's copy of it.
#[derive(Clone, Debug, PartialEq, Eq)]
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
    /// A later status of the subject reached the consumer first: this copy is never sent.
    Superseded {
        /// The event id.
        event_id: String,
        /// The consumer.
        consumer: String,
    },
    /// Reconciliation offered an event about an erased subject; it was not taken.
    RefusedAfterErasure {
        /// The event id it would have had.
        event_id: String,
    },
}

/// The kind of an inbox's subject (`session`, `user`, …) without its id, which may be identity
/// data: anything but a known kind is `unknown`.
pub fn subject_kind(subject: Option<&str>) -> &'static str {
    subject
        .and_then(|s| s.split_once(':'))
        .and_then(|(kind, _)| SubjectKind::from_name(kind))
        .map_or("unknown", SubjectKind::as_str)
}

/// A log record: the transition and its subject's kind. The log's own timestamp says when.
pub struct LogRecord<'a> {
    /// What happened.
    pub transition: &'a Transition,
    /// The subject's kind ([`subject_kind`]).
    pub subject_kind: &'static str,
}

impl LogRecord<'_> {
    /// The record as one line of JSON: `{"event":"<transition>",…,"subject_kind":"…"}`.
    /// (Written by hand: a derived serializer for thirteen shapes cost the upload 8 KiB.)
    pub fn to_line(&self) -> String {
        let mut line = Line(String::from("{"));
        match self.transition {
            Transition::Accepted {
                event_id,
                webhook_type,
                classified,
            } => line
                .event("accepted", event_id)
                .text("webhook_type", webhook_type)
                .raw("classified", if *classified { "true" } else { "false" }),
            Transition::Duplicate { event_id } => line.event("duplicate", event_id),
            Transition::Classified {
                event_id,
                consumers,
            } => line
                .event("classified", event_id)
                .number("consumers", *consumers),
            Transition::Attempt {
                event_id,
                consumer,
                origin,
                status,
                error,
                latency_ms,
            } => line
                .event("attempt", event_id)
                .text("consumer", consumer)
                .optional_text("origin", origin.as_deref())
                .optional_number("status", *status)
                .optional_text("error", *error)
                .optional_number("latency_ms", *latency_ms),
            Transition::Delivered {
                event_id,
                consumer,
                origin,
                failures,
            } => line
                .event("delivered", event_id)
                .text("consumer", consumer)
                .text("origin", origin)
                .number("failures", *failures),
            Transition::RetryScheduled {
                event_id,
                consumer,
                failures,
                next_attempt_at_ms,
            } => line
                .event("retry_scheduled", event_id)
                .text("consumer", consumer)
                .number("failures", *failures)
                .number("next_attempt_at_ms", *next_attempt_at_ms),
            Transition::Deferred {
                event_id,
                consumer,
                until_ms,
            } => line
                .event("deferred", event_id)
                .text("consumer", consumer)
                .number("until_ms", *until_ms),
            Transition::DeadLetter {
                event_id,
                consumer,
                reason,
                failures,
            } => line
                .event("dead_letter", event_id)
                .text("consumer", consumer)
                .text("reason", reason.as_str())
                .number("failures", *failures),
            Transition::Replayed { event_id, consumer } => {
                line.event("replayed", event_id).text("consumer", consumer)
            }
            Transition::DeadLetterExpired { event_id, consumer } => line
                .event("dead_letter_expired", event_id)
                .text("consumer", consumer),
            Transition::Erased { event_id } => line.event("erased", event_id),
            Transition::Superseded { event_id, consumer } => line
                .event("superseded", event_id)
                .text("consumer", consumer),
            Transition::RefusedAfterErasure { event_id } => {
                line.event("refused_after_erasure", event_id)
            }
        };
        line.text("subject_kind", self.subject_kind);
        line.0.push('}');
        line.0
    }
}

/// A JSON object being written, one field at a time.
struct Line(String);

impl Line {
    fn key(&mut self, key: &str) -> &mut Self {
        if self.0.len() > 1 {
            self.0.push(',');
        }
        self.0.push('"');
        self.0.push_str(key);
        self.0.push_str("\":");
        self
    }

    fn raw(&mut self, key: &str, json: &str) -> &mut Self {
        self.key(key).0.push_str(json);
        self
    }

    fn event(&mut self, name: &str, event_id: &str) -> &mut Self {
        self.text("event", name).text("event_id", event_id)
    }

    fn text(&mut self, key: &str, value: &str) -> &mut Self {
        self.key(key);
        self.0.push('"');
        for c in value.chars() {
            match c {
                '"' => self.0.push_str("\\\""),
                '\\' => self.0.push_str("\\\\"),
                c if u32::from(c) < 0x20 => {
                    let _ = write!(self.0, "\\u{:04x}", u32::from(c));
                }
                c => self.0.push(c),
            }
        }
        self.0.push('"');
        self
    }

    fn optional_text(&mut self, key: &str, value: Option<&str>) -> &mut Self {
        match value {
            Some(value) => self.text(key, value),
            None => self.raw(key, "null"),
        }
    }

    fn number(&mut self, key: &str, value: impl core::fmt::Display) -> &mut Self {
        self.key(key);
        let _ = write!(self.0, "{value}");
        self
    }

    fn optional_number(&mut self, key: &str, value: Option<impl core::fmt::Display>) -> &mut Self {
        match value {
            Some(value) => self.number(key, value),
            None => self.raw(key, "null"),
        }
    }
}
