//! One subject's inbox: every decision about its events, as a sans-IO state machine in the
//! shape of quinn-proto's `Connection`.
//!
//! The adapter (a Durable Object) restores the machine from storage, feeds it what happens
//! (`handle_*`, each with the time passed in), asks it what to do (`poll_work`,
//! `poll_index`, `poll_timeout`), does the IO, and writes the [`Change`]s it queues, in order,
//! before it answers anyone or awaits anything:
//!
//! ```text
//! claim ─▶ handle_claim ─▶ changes ─▶ 200 accepted | duplicate
//! alarm ─▶ handle_timeout (retention) ─▶ changes
//!          poll_work ─▶ Classify ─▶ (core classification) ─▶ handle_classified ─▶ changes
//!                    └▶ Deliver ─▶ Plan, POSTs ─▶ handle_attempt ─▶ changes
//!          poll_index ─▶ push to the dead-letter index ─▶ handle_index_synced ─▶ changes
//!          poll_timeout ─▶ next alarm
//! replay ─▶ handle_replay ─▶ changes
//! ```
//!
//! What it guarantees, and what `core/tests/simulation.rs` checks after every step with
//! crashes between any two changes:
//! - a claim is answered `accepted` once per event (by id, by the id older releases gave it,
//!   or by Didit's `event_id` for the same type and status) and `duplicate` ever after, until
//!   the event is forgotten;
//! - each consumer gets the subject's events in the order Didit created them: a copy is sent
//!   only when every earlier copy of that consumer is delivered (or, under
//!   [`AfterDeadLetter::Continue`], dead), and an event still waiting to be classified holds
//!   everything after it; under `hold` a status event older than one its consumer already has
//!   is never sent (superseded), whichever path brought it and whenever it arrived;
//! - a webhook matched to an event (a duplicate) lends it its Didit `event_id`, so a resend
//!   is found by alias whatever happened since; an erased subject takes no more events from
//!   Didit's API until its mark expires;
//! - a copy becomes a dead letter only when the retry schedule is used up or an origin
//!   aborts, and stays replayable until its retention ends (and never before the dead-letter
//!   index has listed it);
//! - nothing of an event expires while a copy is pending, and its retention is computed from
//!   the settings in force, so a changed retention applies to every event already kept;
//! - a stored row the adapter cannot read ([`Unreadable`]) is left as it is: never rewritten
//!   or forgotten, its copy never sent, its consumer held, and its event still a duplicate to
//!   any resend ([`Inbox::with_unreadable`]).

mod dedup;
pub mod gate;
mod history;
mod index;
mod lookup;
mod messages;
mod order;
mod record;
mod restore;
mod retention;
pub mod run;
mod transition;

use alloc::collections::{BTreeMap, VecDeque};
use alloc::string::String;
use alloc::vec::Vec;

pub use history::{History, HISTORY_ATTEMPTS};
pub use index::{INDEX_BATCH, INDEX_RETRY_MS};
pub use lookup::LookupFacts;
pub use messages::{
    AfterDeadLetter, Claim, ClaimContent, Classification, CopyKey, DueCopy, Erasure, InboxPolicy,
    IndexChange, IndexEntry, Knowledge, Outcome, ReplayFilter, Source, Standing, Work,
};
pub use record::{
    flag_from_number, level_from_str, BadValue, Change, CopyRecord, EventRecord, IdVersion,
    IndexSync, Rejected, RowKey, Seq, StateName, StoredContent, StoredState, UnknownValue,
    Unreadable, QUOTED_BYTES,
};
pub use transition::{subject_kind, LogRecord, Transition};

use crate::attempt::{LogEntry, Verdict};
use crate::delivery::{expiry, CopyState, Expiry, Retention};
use crate::receipt::Receipt;
use crate::risk::Level;
use crate::time::UnixMs;
use crate::verify::Verified;

/// Most of Didit's `event_id`s one event is known by (its own and those of resends matched to
/// it); more are matched by type and status alone.
pub const MAX_ALIASES_PER_EVENT: usize = 8;

/// An event in memory: its record and its copies.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Event {
    record: EventRecord,
    copies: BTreeMap<String, CopyRecord>,
    /// What of it storage holds but this release cannot read ([`Inbox::with_unreadable`]).
    held: Held,
}

/// The rows of an event that are left alone because they cannot be read.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
struct Held {
    /// Its own row: the event is never classified, sent or forgotten.
    event: bool,
    /// Consumers whose copy is held out of `copies`: never sent, rewritten or forgotten. A
    /// sorted list ([`crate::sorted::Set`]): an event has a handful of consumers.
    copies: crate::sorted::Set<String>,
}

impl Held {
    fn any(&self) -> bool {
        self.event || !self.copies.is_empty()
    }
}

impl Event {
    fn new(record: EventRecord, copies: BTreeMap<String, CopyRecord>) -> Self {
        Self {
            record,
            copies,
            held: Held::default(),
        }
    }

    fn expiry(&self, retention: &Retention) -> Option<Expiry> {
        self.record.risk_level?;
        // A held row is never forgotten: nothing of its event expires.
        if self.held.any() {
            return None;
        }
        expiry(
            self.record.received_at,
            self.record.created_at,
            self.copies.values().map(|copy| copy.state),
            retention,
        )
    }

    fn index_pending(&self) -> bool {
        self.copies.values().any(|copy| copy.index.is_some())
    }
}

/// One subject's inbox.
#[derive(Clone, Debug, Default)]
pub struct Inbox {
    subject: Option<String>,
    events: BTreeMap<Seq, Event>,
    ids: BTreeMap<String, Seq>,
    /// The events each alias names (one, or a few: the same Didit `event_id` on events of
    /// another type or status), as a sorted list ([`crate::sorted::Set`]).
    aliases: BTreeMap<String, crate::sorted::Set<Seq>>,
    next_seq: i64,
    changes: VecDeque<Change>,
    transitions: VecDeque<Transition>,
    index_retry_at: Option<UnixMs>,
    /// When the subject was erased (until the mark expires).
    erased_at: Option<UnixMs>,
    /// Stored rows this release cannot read, left alone.
    unreadable: Vec<Unreadable>,
}

impl Inbox {
    /// An empty inbox.
    pub fn new() -> Self {
        Self {
            next_seq: 1,
            ..Self::default()
        }
    }

    /// The next change to write, oldest first.
    pub fn poll_change(&mut self) -> Option<Change> {
        self.changes.pop_front()
    }

    /// Every queued change, in order.
    pub fn drain_changes(&mut self) -> impl Iterator<Item = Change> + '_ {
        self.changes.drain(..)
    }

    /// What happened since the last call, oldest first, for the log.
    pub fn drain_transitions(&mut self) -> impl Iterator<Item = Transition> + '_ {
        self.transitions.drain(..)
    }

    /// The subject's name, once a claim has named it.
    pub fn subject(&self) -> Option<&str> {
        self.subject.as_deref()
    }

    /// Claims an event: `accepted` (it is new and queued to be stored) or `duplicate` (with the
    /// original's id); an event from Didit's API about an erased subject is not taken
    /// (`erased`). Needs no delivery settings.
    pub fn handle_claim(&mut self, claim: Claim, now: UnixMs) -> Receipt {
        if let Some(duplicate) = self.claim_duplicate(&claim) {
            return duplicate;
        }
        if claim.source == Source::Api && self.erased_at.is_some() {
            self.transitions
                .push_back(Transition::RefusedAfterErasure { event_id: claim.id });
            return Receipt::Erased;
        }
        if self.subject.is_none() {
            self.subject = Some(claim.subject.clone());
            self.changes.push_back(Change::Subject(claim.subject));
        }
        let seq = Seq(self.next_seq);
        self.next_seq = self.next_seq.saturating_add(1);
        let (risk_level, content, copies) = stored_content(claim.content, claim.verified, now);
        let record = EventRecord {
            seq,
            id: claim.id.clone(),
            id_version: match claim.source {
                Source::Webhook => IdVersion::ContentDigest,
                Source::Api => IdVersion::Reconciled,
            },
            alias: claim.alias,
            webhook_type: claim.webhook_type,
            status: claim.status,
            created_at: claim.created_at,
            received_at: now,
            risk_level,
            has_payload: matches!(
                content,
                StoredContent::Classified {
                    payload: Some(_),
                    ..
                }
            ),
        };
        self.accept(record, content, copies);
        Receipt::Accepted { id: claim.id }
    }

    /// A claim of an event already held: the claim lends it its alias, and is answered with
    /// the original's id.
    fn claim_duplicate(&mut self, claim: &Claim) -> Option<Receipt> {
        let original = self.original_of(claim)?;
        let id = original.record.id.clone();
        let seq = original.record.seq;
        self.attach_alias(seq, claim);
        self.transitions.push_back(Transition::Duplicate {
            event_id: id.clone(),
        });
        Some(Receipt::Duplicate { id })
    }

    /// Takes a new event in: known by its id and aliases from now, and queued to be stored
    /// with its copies in one change.
    fn accept(
        &mut self,
        record: EventRecord,
        content: StoredContent,
        copies: Vec<(String, CopyRecord)>,
    ) {
        self.index(&record);
        self.events.insert(
            record.seq,
            Event::new(
                record.clone(),
                crate::sorted::map_of(copies.iter().cloned()),
            ),
        );
        self.transitions.push_back(Transition::Accepted {
            event_id: record.id.clone(),
            webhook_type: record.webhook_type.clone(),
            classified: record.risk_level.is_some(),
        });
        self.changes.push_back(Change::InsertEvent {
            event: record,
            content,
            copies,
        });
    }

    /// The stored events still waiting to be classified, oldest first.
    pub fn unclassified(&self) -> impl Iterator<Item = Seq> + '_ {
        self.events
            .values()
            .filter(|event| event.record.risk_level.is_none() && !event.held.event)
            .map(|event| event.record.seq)
    }

    /// Records the classification of a stored event (ignored unless it still waits for one).
    pub fn handle_classified(&mut self, seq: Seq, classification: Classification, now: UnixMs) {
        let Some(event) = self.events.get_mut(&seq) else {
            return;
        };
        if event.record.risk_level.is_some() || event.held.event {
            return;
        }
        let held = &event.held.copies;
        let copies: Vec<(String, CopyRecord)> = classification
            .consumers
            .into_iter()
            .filter(|consumer| !held.contains(consumer))
            .map(|consumer| (consumer, CopyRecord::new(now)))
            .collect();
        let payload = (!copies.is_empty()).then_some(classification.payload);
        event.record.risk_level = Some(classification.risk_level);
        event.record.has_payload = payload.is_some();
        event.copies = crate::sorted::map_of(copies.iter().cloned());
        self.transitions.push_back(Transition::Classified {
            event_id: event.record.id.clone(),
            consumers: copies.len(),
        });
        self.changes.push_back(Change::Classify {
            seq,
            risk_level: classification.risk_level,
            payload,
            copies,
        });
    }

    /// Records what an attempt came to (ignored unless the copy is still pending).
    /// `jitter_seed` spreads the next wait.
    pub fn handle_attempt(
        &mut self,
        delivery: &DueCopy,
        outcome: Outcome,
        policy: &InboxPolicy<'_>,
        now: UnixMs,
        jitter_seed: u64,
    ) {
        let Some(copy) = self
            .events
            .get_mut(&delivery.seq)
            .and_then(|event| event.copies.get_mut(&delivery.consumer))
        else {
            return;
        };
        let CopyState::Pending {
            failures: failures_before,
            ..
        } = copy.state
        else {
            return;
        };
        copy.state =
            copy.state
                .after_attempt(&outcome.verdict, now, policy.retry_schedule, jitter_seed);
        // The request that delivered is told by the `delivered` line itself: every log line
        // is a billed log event, and a copy delivered at once would otherwise take two.
        let took = match (&copy.state, &outcome.verdict) {
            (CopyState::Delivered { .. }, Verdict::Delivered { origin }) => outcome
                .log
                .iter()
                .rposition(|entry| entry.error.is_none() && entry.origin.as_ref() == Some(origin)),
            _ => None,
        };
        for (index, entry) in outcome.log.iter().enumerate() {
            if Some(index) == took {
                continue;
            }
            self.transitions.push_back(Transition::Attempt {
                event_id: delivery.id.clone(),
                consumer: delivery.consumer.clone(),
                origin: entry.origin.clone(),
                status: entry.status,
                error: entry.error,
                latency_ms: entry.latency_ms,
            });
        }
        copy.history.record_attempt(&outcome.log);
        let took = took.and_then(|index| outcome.log.get(index));
        let settled = settled_by(
            delivery,
            copy.state,
            &outcome.verdict,
            failures_before,
            took,
        );
        self.transitions.extend(settled);
        let delivered = match (&copy.state, &outcome.verdict) {
            (CopyState::Delivered { .. }, Verdict::Delivered { origin }) => {
                copy.delivered_to = Some(origin.clone());
                true
            }
            (CopyState::Dead { .. }, _) => {
                copy.index = Some(IndexSync::Put);
                false
            }
            _ => false,
        };
        if copy.rejected_by != outcome.rejected_by {
            copy.rejected_by = outcome.rejected_by;
            self.changes.push_back(Change::SetRejections {
                seq: delivery.seq,
                consumer: delivery.consumer.clone(),
                rejected_by: copy.rejected_by.clone(),
            });
        }
        self.changes.push_back(Change::PutCopy {
            seq: delivery.seq,
            consumer: delivery.consumer.clone(),
            copy: copy.clone(),
        });
        if delivered {
            self.supersede(policy, now);
        }
    }

    /// When the inbox next has something to do: an event to classify, a copy due, a dead
    /// letter or payload to expire, a record to forget, or the index to tell.
    pub fn poll_timeout(&self, policy: &InboxPolicy<'_>, now: UnixMs) -> Option<UnixMs> {
        let mut next: Option<UnixMs> = None;
        let mut at = |moment: UnixMs| next = Some(next.map_or(moment, |n| n.min(moment)));
        if self.unclassified().next().is_some() {
            at(now);
        }
        if let Some(until) = self.erased_until(&policy.retention) {
            at(until);
        }
        for (seq, consumer) in self.heads(policy.after_dead_letter) {
            if let Some(CopyState::Pending {
                next_attempt_at, ..
            }) = self
                .events
                .get(&seq)
                .and_then(|event| event.copies.get(consumer))
                .map(|copy| copy.state)
            {
                at(next_attempt_at);
            }
        }
        let hold = policy.after_dead_letter == AfterDeadLetter::Hold;
        for event in self.events.values() {
            for (consumer, copy) in &event.copies {
                if hold && copy.state.is_pending() && self.superseded(event, consumer) {
                    at(now);
                }
                if let (CopyState::Dead { at: dead_at, .. }, None) = (copy.state, copy.index) {
                    at(policy.retention.dead_letter_until(dead_at));
                }
                if copy.index.is_some() {
                    at(self.index_retry_at.unwrap_or(now));
                }
            }
            if let Some(expiry) = event.expiry(&policy.retention) {
                if event.record.has_payload {
                    at(expiry.payload_at);
                }
                // Forgetting waits for the index (its retry time is counted above).
                if !event.index_pending() {
                    at(expiry.record_at);
                }
            }
        }
        next
    }

    /// One copy's history, for a dead letter's listing.
    pub fn history(&self, seq: Seq, consumer: &str) -> Option<&History> {
        let event = self.events.get(&seq)?;
        event.copies.get(consumer).map(|copy| &copy.history)
    }

    /// Every event's record and copies, for a listing or a test; in order of arrival.
    pub fn events(&self) -> impl Iterator<Item = (&EventRecord, &BTreeMap<String, CopyRecord>)> {
        self.events
            .values()
            .map(|event| (&event.record, &event.copies))
    }
}

/// What a claim's content is stored as: its risk level once classified, what is kept of it,
/// and a copy pending for each consumer that takes it.
fn stored_content(
    content: ClaimContent,
    verified: Option<Verified>,
    now: UnixMs,
) -> (Option<Level>, StoredContent, Vec<(String, CopyRecord)>) {
    match content {
        ClaimContent::Classified(classification) => {
            let copies: Vec<(String, CopyRecord)> = classification
                .consumers
                .into_iter()
                .map(|consumer| (consumer, CopyRecord::new(now)))
                .collect();
            // An event no consumer takes is remembered for deduplication only.
            let payload = (!copies.is_empty()).then_some(classification.payload);
            (
                Some(classification.risk_level),
                StoredContent::Classified { payload, verified },
                copies,
            )
        }
        ClaimContent::Unclassified {
            body,
            verified,
            test,
        } => (
            None,
            StoredContent::Unclassified {
                body,
                verified,
                test,
            },
            Vec::new(),
        ),
    }
}

/// What an attempt's copy came to, as the one log line that says so (besides each failed
/// origin's): delivered (with `took`, the request that delivered), a dead letter, deferred by
/// the breakers, or a retry scheduled.
fn settled_by(
    delivery: &DueCopy,
    state: CopyState,
    verdict: &Verdict,
    failures_before: u32,
    took: Option<&LogEntry>,
) -> Option<Transition> {
    let event_id = delivery.id.clone();
    let consumer = delivery.consumer.clone();
    match (state, verdict) {
        (CopyState::Delivered { .. }, Verdict::Delivered { origin }) => {
            Some(Transition::Delivered {
                event_id,
                consumer,
                origin: origin.clone(),
                failures: failures_before,
                status: took.and_then(|entry| entry.status),
                latency_ms: took.and_then(|entry| entry.latency_ms),
            })
        }
        (CopyState::Dead { reason, .. }, _) => Some(Transition::DeadLetter {
            event_id,
            consumer,
            reason,
            failures: failures_before.saturating_add(1),
        }),
        (CopyState::Pending { .. }, Verdict::Deferred { until_ms }) => Some(Transition::Deferred {
            event_id,
            consumer,
            until_ms: *until_ms,
        }),
        (
            CopyState::Pending {
                failures,
                next_attempt_at,
            },
            _,
        ) => Some(Transition::RetryScheduled {
            event_id,
            consumer,
            failures,
            next_attempt_at_ms: next_attempt_at.0,
        }),
        // A pending copy's attempt leads to nothing else.
        _ => None,
    }
}

/// Whether events of `webhook_type` report a status (`status.updated`, `user.status.updated`,
/// …), so that a later one makes an earlier one stale.
fn reports_status(webhook_type: &str) -> bool {
    webhook_type == "status.updated" || webhook_type.ends_with(".status.updated")
}

#[cfg(test)]
mod tests;
