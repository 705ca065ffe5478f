//! An inbox's events as the admin API's lookup shows them ([`crate::admin::Lookup`]): read
//! from the machine, with the two facts storage keeps beside it (which signature verified each
//! event, and the attempt log older releases kept in a table of its own) handed in. Changes
//! nothing, and shows nothing the machine no longer keeps: no payload, no subject name, and
//! only what retention has left.

use alloc::string::{String, ToString};
use alloc::vec::Vec;

use super::{CopyRecord, Event, IdVersion, Inbox, Seq, HISTORY_ATTEMPTS};
use crate::admin::{
    ClassifiedView, CopyTimeline, EventTimeline, LoggedAttempt, Lookup, LookupAsk, LookupMiss,
    Received, SignatureView,
};
use crate::delivery::CopyState;
use crate::verify::Verified;

/// What storage keeps beside the machine, read only for a lookup. Lists rather than maps: a
/// lookup is rare, and each map type is code every isolate loads (docs/performance.md).
#[derive(Clone, Debug, Default)]
pub struct LookupFacts {
    /// Which signature verified each event (events stored before this was kept have none).
    pub verified: Vec<(Seq, Verified)>,
    /// Requests older releases logged in their `attempts` table, with their event and consumer,
    /// oldest first: they come before those the copy's history holds.
    pub legacy_attempts: Vec<(Seq, String, LoggedAttempt)>,
}

impl Inbox {
    /// The timelines of the events `ask` names: every event, or the one whose id or Didit
    /// `event_id` it gives; a miss when the inbox keeps nothing (no event, no erasure mark) or
    /// not that event.
    pub fn lookup(&self, ask: &LookupAsk, facts: &LookupFacts) -> Result<Lookup, LookupMiss> {
        if self.events.is_empty() && self.erased_at.is_none() {
            return Err(LookupMiss::Subject);
        }
        let named = ask.event_id.as_deref();
        let events: Vec<EventTimeline> = self
            .events
            .values()
            .filter(|event| named.is_none_or(|id| self.is_named(event, id)))
            .map(|event| timeline(event, facts))
            .collect();
        if named.is_some() && events.is_empty() {
            return Err(LookupMiss::Event);
        }
        Ok(Lookup {
            subject_kind: ask.subject_kind.clone(),
            erased_at_ms: self.erased_at.map(|at| at.0),
            events,
        })
    }

    /// Whether `id` names the event: its id, its Didit `event_id`, or one attached since.
    fn is_named(&self, event: &Event, id: &str) -> bool {
        event.record.id == id
            || event.record.alias.as_deref() == Some(id)
            || self
                .aliases
                .get(id)
                .is_some_and(|seqs| seqs.contains(&event.record.seq))
    }
}

fn timeline(event: &Event, facts: &LookupFacts) -> EventTimeline {
    let record = &event.record;
    let source = match record.id_version {
        IdVersion::Reconciled => "api",
        IdVersion::Legacy | IdVersion::ContentDigest => "webhook",
    };
    let signature = facts
        .verified
        .iter()
        .find(|(seq, _)| *seq == record.seq)
        .map(|(_, verified)| SignatureView {
            header: verified.header.header_name().into(),
            secret_index: verified.secret_index,
        });
    EventTimeline {
        id: record.id.clone(),
        didit_event_id: record.alias.clone(),
        webhook_type: record.webhook_type.clone(),
        status: record.status.clone(),
        created_at: record.created_at.0,
        received: Received {
            at_ms: record.received_at.0,
            source: source.into(),
            signature,
            age_ms: record
                .received_at
                .0
                .saturating_sub(record.created_at.0.saturating_mul(1_000)),
        },
        classified: record.risk_level.map(|level| ClassifiedView {
            risk_level: level.as_str().into(),
            consumers: event.copies.keys().cloned().collect(),
        }),
        payload_kept: record.has_payload,
        copies: event
            .copies
            .iter()
            .map(|(consumer, copy)| {
                let legacy: Vec<&LoggedAttempt> = facts
                    .legacy_attempts
                    .iter()
                    .filter(|(seq, of, _)| *seq == record.seq && of == consumer)
                    .map(|(_, _, attempt)| attempt)
                    .collect();
                copy_timeline(consumer, copy, &legacy)
            })
            .collect(),
    }
}

fn copy_timeline(consumer: &str, copy: &CopyRecord, legacy: &[&LoggedAttempt]) -> CopyTimeline {
    let (state, failures, next_attempt_at_ms, at_ms, reason) = match copy.state {
        CopyState::Pending {
            failures,
            next_attempt_at,
        } => (
            "pending",
            Some(failures),
            Some(next_attempt_at.0),
            None,
            None,
        ),
        CopyState::Delivered { at } => ("delivered", None, None, Some(at.0), None),
        CopyState::Dead { at, reason } => ("dead", None, None, Some(at.0), Some(reason)),
        CopyState::Expired { at, reason } => ("expired", None, None, Some(at.0), Some(reason)),
    };
    let history = &copy.history;
    let mut log: Vec<LoggedAttempt> = legacy
        .iter()
        .copied()
        .chain(&history.latest)
        .cloned()
        .collect();
    let excess = log.len().saturating_sub(HISTORY_ATTEMPTS);
    log.drain(..excess);
    let legacy_count = u32::try_from(legacy.len()).unwrap_or(u32::MAX);
    let requests = history.requests.saturating_add(legacy_count);
    let listed = u32::try_from(log.len()).unwrap_or(u32::MAX);
    CopyTimeline {
        consumer: consumer.to_string(),
        state: state.into(),
        failures,
        next_attempt_at_ms,
        at_ms,
        delivered_to: copy.delivered_to.clone(),
        reason: reason.map(|reason| reason.as_str().into()),
        attempts: history.attempts,
        requests,
        requests_not_kept: requests.saturating_sub(listed),
        replays: history.replays,
        replayed_at_ms: history.replayed_at.map(|at| at.0),
        log,
    }
}
