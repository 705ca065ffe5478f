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
        /// The origin's 2xx status.
        status: Option<u16>,
        /// From sending the request that delivered to its answer.
        latency_ms: Option<u64>,
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
    ///
    /// Every line starts the same way (what happened, to which event, and for a copy, whose)
    /// and ends with the subject's kind; in between, what only that step has to say.
    pub fn to_line(&self) -> String {
        let transition = self.transition;
        let mut line = Line(String::from("{"));
        line.event(transition.name(), transition.event_id());
        if let Some(consumer) = transition.consumer() {
            line.text("consumer", consumer);
        }
        transition.write_details(&mut line);
        line.text("subject_kind", self.subject_kind);
        line.0.push('}');
        line.0
    }
}

impl Transition {
    /// The step's name in the log (`"event"`).
    fn name(&self) -> &'static str {
        match self {
            Self::Accepted { .. } => "accepted",
            Self::Duplicate { .. } => "duplicate",
            Self::Classified { .. } => "classified",
            Self::Attempt { .. } => "attempt",
            Self::Delivered { .. } => "delivered",
            Self::RetryScheduled { .. } => "retry_scheduled",
            Self::Deferred { .. } => "deferred",
            Self::DeadLetter { .. } => "dead_letter",
            Self::Replayed { .. } => "replayed",
            Self::DeadLetterExpired { .. } => "dead_letter_expired",
            Self::Erased { .. } => "erased",
            Self::Superseded { .. } => "superseded",
            Self::RefusedAfterErasure { .. } => "refused_after_erasure",
        }
    }

    /// The event the step happened to.
    fn event_id(&self) -> &str {
        match self {
            Self::Accepted { event_id, .. }
            | Self::Duplicate { event_id }
            | Self::Classified { event_id, .. }
            | Self::Attempt { event_id, .. }
            | Self::Delivered { event_id, .. }
            | Self::RetryScheduled { event_id, .. }
            | Self::Deferred { event_id, .. }
            | Self::DeadLetter { event_id, .. }
            | Self::Replayed { event_id, .. }
            | Self::DeadLetterExpired { event_id, .. }
            | Self::Erased { event_id }
            | Self::Superseded { event_id, .. }
            | Self::RefusedAfterErasure { event_id } => event_id,
        }
    }

    /// The consumer whose copy the step is about; `None` for a step of the event as a whole.
    fn consumer(&self) -> Option<&str> {
        match self {
            Self::Attempt { consumer, .. }
            | Self::Delivered { consumer, .. }
            | Self::RetryScheduled { consumer, .. }
            | Self::Deferred { consumer, .. }
            | Self::DeadLetter { consumer, .. }
            | Self::Replayed { consumer, .. }
            | Self::DeadLetterExpired { consumer, .. }
            | Self::Superseded { consumer, .. } => Some(consumer),
            Self::Accepted { .. }
            | Self::Duplicate { .. }
            | Self::Classified { .. }
            | Self::Erased { .. }
            | Self::RefusedAfterErasure { .. } => None,
        }
    }

    /// Writes what only this kind of step says, after its event and consumer.
    fn write_details(&self, line: &mut Line) {
        match self {
            Self::Accepted {
                webhook_type,
                classified,
                ..
            } => {
                line.text("webhook_type", webhook_type)
                    .raw("classified", if *classified { "true" } else { "false" });
            }
            Self::Classified { consumers, .. } => {
                line.number("consumers", *consumers);
            }
            Self::Attempt {
                origin,
                status,
                error,
                latency_ms,
                ..
            } => {
                line.optional_text("origin", origin.as_deref())
                    .optional_number("status", *status)
                    .optional_text("error", *error)
                    .optional_number("latency_ms", *latency_ms);
            }
            Self::Delivered {
                origin,
                failures,
                status,
                latency_ms,
                ..
            } => {
                line.text("origin", origin)
                    .number("failures", *failures)
                    .optional_number("status", *status)
                    .optional_number("latency_ms", *latency_ms);
            }
            Self::RetryScheduled {
                failures,
                next_attempt_at_ms,
                ..
            } => {
                line.number("failures", *failures)
                    .number("next_attempt_at_ms", *next_attempt_at_ms);
            }
            Self::Deferred { until_ms, .. } => {
                line.number("until_ms", *until_ms);
            }
            Self::DeadLetter {
                reason, failures, ..
            } => {
                line.text("reason", reason.as_str())
                    .number("failures", *failures);
            }
            Self::Duplicate { .. }
            | Self::Replayed { .. }
            | Self::DeadLetterExpired { .. }
            | Self::Erased { .. }
            | Self::Superseded { .. }
            | Self::RefusedAfterErasure { .. } => {}
        }
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
