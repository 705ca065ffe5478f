//! The order rules: each consumer gets a subject's events in the order Didit created them,
//! an event still waiting to be classified holds everything after it, a dead letter holds its
//! consumer under `hold`, and under `hold` a status older than one the consumer already has is
//! superseded, never sent. The attempt in progress asks again before each origin
//! ([`Inbox::standing`]), since an earlier event may arrive meanwhile.

use alloc::string::String;
use alloc::vec::Vec;

use super::{
    reports_status, AfterDeadLetter, Change, DueCopy, Event, Inbox, InboxPolicy, Seq, Standing,
    Transition, Work,
};
use crate::attempt::DeadReason;
use crate::delivery::CopyState;
use crate::risk::Level;
use crate::time::UnixMs;

impl Inbox {
    /// Whether a later status of `event`'s subject already reached `consumer`: sending `event`
    /// after it would leave the consumer at an older status than Didit's. (Events that report
    /// no status, like `data.updated`, are never stale.)
    pub(super) fn superseded(&self, event: &Event, consumer: &str) -> bool {
        reports_status(&event.record.webhook_type)
            && self.events.values().any(|later| {
                later.record.webhook_type == event.record.webhook_type
                    && later.record.created_at > event.record.created_at
                    && matches!(
                        later.copies.get(consumer).map(|copy| copy.state),
                        Some(CopyState::Delivered { .. })
                    )
            })
    }

    /// Under [`AfterDeadLetter::Hold`], ends every pending copy that a later status, already
    /// delivered to its consumer, makes stale: a late webhook, Didit's retry or a reconciled
    /// result of an older transition arrived after the newer one went out.
    pub(super) fn supersede(&mut self, policy: &InboxPolicy<'_>, now: UnixMs) {
        if policy.after_dead_letter != AfterDeadLetter::Hold {
            return;
        }
        let stale: Vec<(Seq, String)> = self
            .events
            .values()
            .flat_map(|event| {
                event
                    .copies
                    .iter()
                    .filter(|(consumer, copy)| {
                        copy.state.is_pending() && self.superseded(event, consumer)
                    })
                    .map(|(consumer, _)| (event.record.seq, consumer.clone()))
            })
            .collect();
        for (seq, consumer) in stale {
            let Some(event) = self.events.get_mut(&seq) else {
                continue;
            };
            let Some(copy) = event.copies.get_mut(&consumer) else {
                continue;
            };
            copy.state = CopyState::Expired {
                at: now,
                reason: DeadReason::Superseded,
            };
            self.transitions.push_back(Transition::Superseded {
                event_id: event.record.id.clone(),
                consumer: consumer.clone(),
            });
            self.changes.push_back(Change::PutCopy {
                seq,
                consumer,
                copy: copy.clone(),
            });
        }
    }

    /// Each consumer's next copy to send, in the order Didit created the events: the first
    /// copy still pending, unless an earlier one blocks it (an event waiting to be classified
    /// blocks every consumer; a dead letter blocks its consumer under `hold`). Under `hold` a
    /// superseded copy is passed over: it is never sent.
    pub(super) fn heads(&self, after_dead_letter: AfterDeadLetter) -> Vec<(Seq, &str)> {
        let mut ordered: Vec<&Event> = self.events.values().collect();
        crate::sorted::sort_by_key(&mut ordered, |event| {
            (event.record.created_at, event.record.seq)
        });
        // A consumer with a held copy gets nothing more (see `with_unreadable`). A list, not a
        // set: there are a handful of consumers, and a set type is more code in the upload.
        let mut blocked: Vec<&str> = Vec::new();
        for consumer in ordered.iter().flat_map(|event| event.held.copies.iter()) {
            if !blocked.contains(&consumer.as_str()) {
                blocked.push(consumer);
            }
        }
        let mut heads = Vec::new();
        for event in ordered {
            if event.record.risk_level.is_none() || event.held.event {
                break;
            }
            for (consumer, copy) in &event.copies {
                if blocked.contains(&consumer.as_str()) {
                    continue;
                }
                let blocks = match copy.state {
                    CopyState::Pending { .. }
                        if after_dead_letter == AfterDeadLetter::Hold
                            && self.superseded(event, consumer) =>
                    {
                        false
                    }
                    CopyState::Pending { .. } => {
                        heads.push((event.record.seq, consumer.as_str()));
                        true
                    }
                    CopyState::Dead { .. } => after_dead_letter == AfterDeadLetter::Hold,
                    CopyState::Delivered { .. } | CopyState::Expired { .. } => false,
                };
                if blocks {
                    blocked.push(consumer);
                }
            }
        }
        heads
    }

    /// What to do now: classify what waits for it first, then the earliest due delivery.
    pub fn poll_work(&self, policy: &InboxPolicy<'_>, now: UnixMs) -> Option<Work> {
        if let Some(seq) = self.unclassified().next() {
            return Some(Work::Classify(seq));
        }
        let (due_at, seq, consumer) = self
            .heads(policy.after_dead_letter)
            .into_iter()
            .filter_map(|(seq, consumer)| {
                let copy = self.events.get(&seq)?.copies.get(consumer)?;
                match copy.state {
                    CopyState::Pending {
                        next_attempt_at, ..
                    } if next_attempt_at <= now => Some((next_attempt_at, seq, consumer)),
                    _ => None,
                }
            })
            .min()?;
        let event = self.events.get(&seq)?;
        let copy = event.copies.get(consumer)?;
        Some(Work::Deliver(DueCopy {
            seq,
            id: event.record.id.clone(),
            consumer: consumer.into(),
            webhook_type: event.record.webhook_type.clone(),
            risk_level: event.record.risk_level.unwrap_or(Level::Unknown),
            has_payload: event.record.has_payload,
            rejected_by: copy.rejected_by.iter().map(|r| r.origin.clone()).collect(),
            due_at,
        }))
    }

    /// Where an attempt's copy stands now. An attempt asks before each origin, since while
    /// the previous origin was tried an erasure may have settled the copy, or an event Didit
    /// created earlier may have arrived and now comes first.
    pub fn standing(&self, delivery: &DueCopy, policy: &InboxPolicy<'_>) -> Standing {
        let pending = self
            .events
            .get(&delivery.seq)
            .and_then(|event| event.copies.get(&delivery.consumer))
            .is_some_and(|copy| matches!(copy.state, CopyState::Pending { .. }));
        if !pending {
            Standing::Settled
        } else if self
            .heads(policy.after_dead_letter)
            .contains(&(delivery.seq, delivery.consumer.as_str()))
        {
            Standing::Next
        } else {
            Standing::Overtaken
        }
    }
}
