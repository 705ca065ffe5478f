//! One delivery attempt of one consumer's event: which origins to try, in what order, how each
//! answer counts, and what the attempt comes to.
//!
//! Sans-IO, in the way of quinn-proto: the adapter asks [`Plan::next_origin`], sends, feeds the
//! result back with [`Plan::record`], and repeats until there is nothing left to send; then
//! [`Plan::finish`] gives the [`Verdict`] (for [`crate::delivery::CopyState`]) and the log of
//! what happened, one [`LogEntry`] per origin tried.
//!
//! Only a 2xx delivers, and only an explicit `webhook-delivery: abort-message` ends delivery
//! early. Every other answer (3xx, any 4xx, 5xx), a timeout or a failed connection is a failed
//! try: the next origin of the consumer is tried in the same attempt, and the retry schedule
//! covers the rest, as Standard Webhooks senders do. So a misconfiguration that is fixed within
//! the schedule (a rotated key answered 401, a proxy's 403, a route deployed late answering
//! 404) loses nothing.

use alloc::string::String;
use alloc::vec::Vec;
use core::fmt;

use crate::health::BreakerState;
use crate::origin::Origin;

/// Most origins one delivery attempt tries before it counts as failed: enough to fail over
/// across clouds, few enough that one attempt (each origin with its own timeout) stays short.
pub const MAX_ORIGINS_PER_ATTEMPT: usize = 4;

/// The response header through which an origin stops the retries of one event, and the value
/// that does it (Svix's delivery-control convention, so receivers written for Svix work).
pub const DELIVERY_CONTROL_HEADER: &str = "webhook-delivery";
/// See [`DELIVERY_CONTROL_HEADER`].
pub const ABORT_MESSAGE: &str = "abort-message";
/// Longest `Location` kept in the attempt log.
pub const MAX_LOGGED_LOCATION: usize = 512;
/// The widest window past a breaker's reopening over which the copies it deferred come back
/// ([`Plan::spread_reopening`]); within it, at most half the cool-down.
pub const MAX_REOPENING_SPREAD_MS: u64 = 30_000;

/// How one request to an origin ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AttemptResult {
    /// The origin answered with this HTTP status (not a redirect).
    Status(u16),
    /// The origin answered with a redirect. It is never followed: a POST followed by a GET
    /// never reaches the origin, so the attempt failed.
    Redirect {
        /// The 3xx status.
        status: u16,
        /// Where it pointed, as sent (cut to [`MAX_LOGGED_LOCATION`] bytes).
        location: Option<String>,
    },
    /// The origin answered with this non-2xx status and `webhook-delivery: abort-message`:
    /// it wants no more retries of this event (the event becomes a dead letter).
    Aborted(u16),
    /// The origin did not answer within its timeout.
    Timeout,
    /// The connection failed (refused, reset, DNS).
    Network,
}

impl AttemptResult {
    /// The result of an answer with `status`, given its `webhook-delivery` and `Location`
    /// headers. An abort on a 2xx means nothing: the event was delivered.
    pub fn from_response(
        status: u16,
        delivery_control: Option<&str>,
        location: Option<&str>,
    ) -> Self {
        let abort = delivery_control.is_some_and(|value| {
            value
                .split(',')
                .any(|token| token.trim().eq_ignore_ascii_case(ABORT_MESSAGE))
        });
        match status {
            200..=299 => Self::Status(status),
            _ if abort => Self::Aborted(status),
            300..=399 => Self::Redirect {
                status,
                location: location.map(|text| cut(text, MAX_LOGGED_LOCATION).into()),
            },
            _ => Self::Status(status),
        }
    }

    /// Only a 2xx means the origin has the event.
    pub fn is_delivered(&self) -> bool {
        matches!(self, Self::Status(200..=299))
    }

    /// Whether the origin answered this request deliberately without taking it (a 3xx, or a
    /// 4xx other than 408, 425 and 429): about this request, not the origin's health. The
    /// next attempt tries such an origin after the others, not never.
    pub fn is_rejection(&self) -> bool {
        matches!(self, Self::Redirect { .. })
            || (matches!(self, Self::Status(400..=499)) && self.health_signal().is_none())
    }

    /// What this says about the origin's health: `Some(true)` it is up, `Some(false)` it is in
    /// trouble (timeouts, refused connections, 408, 425, 429, 5xx), `None` nothing (another 4xx
    /// or a 3xx is about this request, not the origin; an abort is a deliberate answer).
    pub fn health_signal(&self) -> Option<bool> {
        match self {
            Self::Status(200..=299) => Some(true),
            Self::Status(408 | 425 | 429 | 500..=599) | Self::Timeout | Self::Network => {
                Some(false)
            }
            Self::Status(_) | Self::Redirect { .. } | Self::Aborted(_) => None,
        }
    }

    /// What this says as the answer to a health probe (`GET health_url`): a 2xx is healthy,
    /// anything else (a redirect, a 4xx, a 5xx, no answer) is not. Unlike a delivery, a probe
    /// gives a 4xx or a 3xx no other meaning: the health URL is there to answer 2xx.
    pub fn probe_signal(&self) -> bool {
        self.is_delivered()
    }

    /// The HTTP status, when the origin answered.
    pub fn status(&self) -> Option<u16> {
        match *self {
            Self::Status(status) | Self::Aborted(status) | Self::Redirect { status, .. } => {
                Some(status)
            }
            Self::Timeout | Self::Network => None,
        }
    }

    /// A stable code for what went wrong, for the attempt log; `None` for a delivery.
    pub fn error_code(&self) -> Option<&'static str> {
        Some(match self {
            Self::Status(200..=299) => return None,
            Self::Status(429) => "throttled",
            Self::Status(408 | 425 | 500..=599) => "server_error",
            Self::Status(400..=499) => "rejected",
            Self::Redirect { .. } => "redirect",
            Self::Status(_) => "unexpected_status",
            Self::Aborted(_) => "aborted",
            Self::Timeout => "timeout",
            Self::Network => "network",
        })
    }
}

/// `text` cut to at most `max` bytes, on a character boundary.
fn cut(text: &str, max: usize) -> &str {
    if text.len() <= max {
        return text;
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text.get(..end).unwrap_or_default()
}

/// Why an event stopped being retried and became a dead letter.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum DeadReason {
    /// Every wait of the retry schedule is used up.
    RetriesExhausted,
    /// An origin answered with `webhook-delivery: abort-message`.
    AbortedByOrigin,
    /// Every origin of the consumer refused the event with a 4xx. Only releases before every
    /// answer became retryable gave up for this reason; it is kept to read their dead letters.
    RefusedByEveryOrigin,
    /// An operator erased the subject's data (a data-subject request) before the copy was
    /// delivered: it can no longer be, and is not replayable.
    Erased,
    /// A later status of the subject had already reached the consumer: sending this one now
    /// would leave the consumer at an older status than Didit's (see
    /// [`crate::inbox::AfterDeadLetter::Hold`]). Never sent, never replayable.
    Superseded,
}

impl DeadReason {
    /// The stable code stored and shown by the admin API.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::RetriesExhausted => "retries_exhausted",
            Self::AbortedByOrigin => "aborted_by_origin",
            Self::RefusedByEveryOrigin => "refused_by_every_origin",
            Self::Erased => "erased",
            Self::Superseded => "superseded",
        }
    }
}

/// A stored reason that this release does not know.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct UnknownDeadReason;

impl fmt::Display for UnknownDeadReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("not a known dead-letter reason")
    }
}

impl core::error::Error for UnknownDeadReason {}

impl core::str::FromStr for DeadReason {
    type Err = UnknownDeadReason;

    fn from_str(text: &str) -> Result<Self, UnknownDeadReason> {
        [
            Self::RetriesExhausted,
            Self::AbortedByOrigin,
            Self::RefusedByEveryOrigin,
            Self::Erased,
            Self::Superseded,
        ]
        .into_iter()
        .find(|reason| reason.as_str() == text)
        .ok_or(UnknownDeadReason)
    }
}

/// What one attempt came to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// An origin took the event.
    Delivered {
        /// The origin's name.
        origin: String,
    },
    /// Every origin tried failed (or none takes the event right now): retry on the schedule.
    Failed,
    /// Nothing was sent: every origin that could take the event is cooling down until then.
    /// Waiting for a breaker is not a failed attempt.
    Deferred {
        /// When the first of them may be tried again (Unix ms).
        until_ms: i64,
    },
    /// Stop retrying: the event becomes a dead letter.
    GiveUp(DeadReason),
}

/// What happened at one origin, or why nothing was sent: the dead-letter attempt log.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogEntry {
    /// When (Unix ms).
    pub at_ms: i64,
    /// The origin tried, if any was.
    pub origin: Option<String>,
    /// Its HTTP status, if it answered.
    pub status: Option<u16>,
    /// A stable code for what went wrong (`timeout`, `server_error`, `no_origin`, …); `None`
    /// for a delivery.
    pub error: Option<&'static str>,
    /// Where a redirect pointed.
    pub location: Option<String>,
    /// From sending the request to its end (for the log; not stored).
    pub latency_ms: Option<u64>,
}

/// One attempt in progress.
#[derive(Debug)]
pub struct Plan<'o> {
    /// Origins still to try, best last (so the next is a `pop`).
    queue: Vec<&'o Origin>,
    log: Vec<LogEntry>,
    verdict: Option<Verdict>,
    /// When the request to the origin last handed out was sent.
    sent_at_ms: Option<i64>,
    /// The earliest turn a limited origin's gate gave an origin this attempt skipped.
    busy_until_ms: Option<i64>,
    /// How wide a window past it a deferral to a breaker's reopening may be spread over.
    reopening_spread_ms: u64,
}

impl<'o> Plan<'o> {
    /// Plans an attempt at `now_ms`. `candidates` are the consumer's origins for this event in
    /// the order to try them ([`crate::route::origins_for`]), `rejected_by` the names of those
    /// that answered the previous attempt with a 3xx or 4xx (tried after the others), and
    /// `state_of` each origin's breaker state as last seen. Origins cooling down are left out
    /// first, and only then is the list cut to [`MAX_ORIGINS_PER_ATTEMPT`], so a healthy fifth
    /// origin is reached when the first four are down.
    pub fn new<S: AsRef<str>>(
        candidates: Vec<&'o Origin>,
        rejected_by: &[S],
        state_of: impl Fn(&str) -> Option<BreakerState>,
        now_ms: i64,
    ) -> Self {
        let mut plan = Self::empty();
        if candidates.is_empty() {
            plan.nothing_sent(now_ms, "no_origin", Verdict::Failed);
            return plan;
        }
        let reopening = candidates
            .iter()
            .filter_map(|o| match state_of(&o.name) {
                Some(BreakerState::Open {
                    until_ms,
                    cool_down_ms,
                }) if until_ms > now_ms => Some((until_ms, cool_down_ms)),
                _ => None,
            })
            .min();
        let available = crate::health::available(candidates, state_of, now_ms);
        let rejected = |origin: &&Origin| rejected_by.iter().any(|r| r.as_ref() == origin.name);
        let (mut ordered, last): (Vec<&Origin>, Vec<&Origin>) =
            available.into_iter().partition(|o| !rejected(o));
        ordered.extend(last);
        ordered.truncate(MAX_ORIGINS_PER_ATTEMPT);
        ordered.reverse();
        plan.queue = ordered;
        if plan.queue.is_empty() {
            // Not an attempt, so not logged: an origin down for days would otherwise fill the
            // log with a line per cool-down.
            plan.verdict = Some(Verdict::Deferred {
                until_ms: reopening.map_or(now_ms, |(until_ms, _)| until_ms),
            });
            plan.reopening_spread_ms = reopening.map_or(0, |(_, cool_down_ms)| {
                (cool_down_ms / 2).min(MAX_REOPENING_SPREAD_MS)
            });
        }
        plan
    }

    /// Spreads a deferral to a breaker's reopening over a window past it, drawn by `seed`
    /// (at most half the cool-down, at most [`MAX_REOPENING_SPREAD_MS`]). Every copy an open
    /// breaker deferred would otherwise come back in the reopening's millisecond: thousands of
    /// alarms at once, all asking a limited origin's gate together, and a herd whose load
    /// times the first requests out and reopens the breaker for twice as long. Spread, the
    /// first few find out whether the origin is back and the rest follow.
    pub fn spread_reopening(mut self, seed: u64) -> Self {
        if let Some(Verdict::Deferred { until_ms }) = &mut self.verdict {
            let spread = seed % self.reopening_spread_ms.saturating_add(1);
            *until_ms = until_ms.saturating_add(i64::try_from(spread).unwrap_or(0));
        }
        self
    }

    /// An attempt that cannot send anything because the stored event has lost its payload
    /// (which retention never does to an undelivered event): it fails, visibly, on the schedule.
    pub fn without_payload(now_ms: i64) -> Self {
        let mut plan = Self::empty();
        plan.nothing_sent(now_ms, "no_payload", Verdict::Failed);
        plan
    }

    fn empty() -> Self {
        Self {
            queue: Vec::new(),
            log: Vec::new(),
            verdict: None,
            sent_at_ms: None,
            busy_until_ms: None,
            reopening_spread_ms: 0,
        }
    }

    fn nothing_sent(&mut self, now_ms: i64, error: &'static str, verdict: Verdict) {
        self.log.push(LogEntry {
            at_ms: now_ms,
            origin: None,
            status: None,
            error: Some(error),
            location: None,
            latency_ms: None,
        });
        self.verdict = Some(verdict);
    }

    /// How many origins this attempt may still send to.
    pub fn remaining(&self) -> usize {
        if self.verdict.is_some() {
            0
        } else {
            self.queue.len()
        }
    }

    /// The origin [`Plan::next_origin`] would hand out next.
    pub fn peek(&self) -> Option<&'o Origin> {
        if self.verdict.is_some() {
            return None;
        }
        self.queue.last().copied()
    }

    /// The origin last handed out was not sent to: its gate gives it a turn only at
    /// `until_ms` (or the gate could not be asked). Like an origin whose breaker is open it is
    /// skipped, not failed; an attempt that sent nothing at all is deferred to the earliest
    /// such turn, so waiting for a slot never spends a retry.
    pub fn busy(&mut self, until_ms: i64) {
        self.sent_at_ms = None;
        self.busy_until_ms = Some(self.busy_until_ms.map_or(until_ms, |t| t.min(until_ms)));
    }

    /// The request to the origin last handed out is sent only now (after its gate's grant):
    /// its latency counts from here.
    pub fn sending(&mut self, now_ms: i64) {
        self.sent_at_ms = Some(now_ms);
    }

    /// The next origin to send to at `now_ms`, or `None` when the attempt is over.
    pub fn next_origin(&mut self, now_ms: i64) -> Option<&'o Origin> {
        if self.verdict.is_some() {
            return None;
        }
        self.sent_at_ms = Some(now_ms);
        self.queue.pop()
    }

    /// Stops the attempt before the remaining origins are tried, for a reason of the edge's
    /// own (its subrequest budget ran out), not the origins': if nothing failed yet, the
    /// attempt counts as deferred to `now_ms`, so no retry is used up.
    pub fn stop(&mut self, now_ms: i64) {
        if self.verdict.is_none() {
            self.queue.clear();
            if self.log.is_empty() {
                self.verdict = Some(Verdict::Deferred { until_ms: now_ms });
            }
        }
    }

    /// Records how the request to `origin` ended at `at_ms`. Report its health
    /// ([`AttemptResult::health_signal`]) and keep its rejection
    /// ([`AttemptResult::is_rejection`]) alongside; the plan only decides what the attempt
    /// comes to.
    pub fn record(&mut self, origin: &Origin, result: AttemptResult, at_ms: i64) {
        let status = result.status();
        let error = result.error_code();
        if result.is_delivered() {
            self.verdict = Some(Verdict::Delivered {
                origin: origin.name.clone(),
            });
        } else if let AttemptResult::Aborted(_) = result {
            self.verdict = Some(Verdict::GiveUp(DeadReason::AbortedByOrigin));
        }
        let location = match result {
            AttemptResult::Redirect { location, .. } => location,
            _ => None,
        };
        self.log.push(LogEntry {
            at_ms,
            origin: Some(origin.name.clone()),
            status,
            error,
            location,
            latency_ms: self
                .sent_at_ms
                .take()
                .and_then(|sent| u64::try_from(at_ms.saturating_sub(sent)).ok()),
        });
    }

    /// What the attempt came to, and its log.
    pub fn finish(self) -> (Verdict, Vec<LogEntry>) {
        let unsent = match self.busy_until_ms {
            Some(until_ms) if self.log.is_empty() => Verdict::Deferred { until_ms },
            _ => Verdict::Failed,
        };
        (self.verdict.unwrap_or(unsent), self.log)
    }
}

#[cfg(test)]
mod tests;
