//! What an inbox keeps and for how long: retention (dead letters expire, payloads drop,
//! records are forgotten) and an operator's erasure of the subject, whose mark refuses
//! Didit's API until it expires.

use alloc::vec::Vec;

use super::{Change, Erasure, Inbox, InboxPolicy, IndexSync, Transition};
use crate::attempt::DeadReason;
use crate::delivery::{CopyState, Retention};
use crate::risk::Level;
use crate::time::UnixMs;

impl Inbox {
    /// When the erasure mark expires, if the subject was erased: one dedup TTL after the
    /// erasure, by when reconciliation no longer looks at a session that existed then
    /// ([`crate::reconcile`] never asks about a session older than the TTL).
    pub fn erased_until(&self, retention: &Retention) -> Option<UnixMs> {
        self.erased_at
            .map(|at| at.plus_secs(retention.dedup_ttl_secs))
    }

    /// Applies retention at `now`: dead letters past theirs expire (and leave the index),
    /// payloads past theirs are dropped, records past theirs are forgotten (once the index has
    /// heard everything about them).
    pub fn handle_timeout(&mut self, policy: &InboxPolicy<'_>, now: UnixMs) {
        self.supersede(policy, now);
        let retention = policy.retention;
        let mut let_go = false;
        if self
            .erased_until(&retention)
            .is_some_and(|until| until <= now)
        {
            self.erased_at = None;
            self.changes.push_back(Change::ForgetErasure);
            let_go = true;
        }
        let mut forgotten = Vec::new();
        for event in self.events.values_mut() {
            for (consumer, copy) in &mut event.copies {
                if let CopyState::Dead { at, reason } = copy.state {
                    // Not before the index has listed it: a dead letter nobody could see would
                    // be gone silently.
                    if retention.dead_letter_until(at) <= now && copy.index.is_none() {
                        copy.state = CopyState::Expired { at, reason };
                        copy.index = Some(IndexSync::Remove);
                        self.transitions.push_back(Transition::DeadLetterExpired {
                            event_id: event.record.id.clone(),
                            consumer: consumer.clone(),
                        });
                        self.changes.push_back(Change::PutCopy {
                            seq: event.record.seq,
                            consumer: consumer.clone(),
                            copy: copy.clone(),
                        });
                    }
                }
            }
            let Some(expiry) = event.expiry(&retention) else {
                continue;
            };
            if event.record.has_payload && expiry.payload_at <= now {
                event.record.has_payload = false;
                self.changes
                    .push_back(Change::DropPayload(event.record.seq));
            }
            if expiry.record_at <= now && !event.index_pending() {
                forgotten.push(event.record.seq);
            }
        }
        for seq in forgotten {
            if let Some(event) = self.events.remove(&seq) {
                self.unindex(&event.record);
                self.changes.push_back(Change::ForgetEvent(seq));
                let_go = true;
            }
        }
        if let_go && self.holds_nothing() {
            // The subject's name goes with the last of its events.
            if self.subject.take().is_some() {
                self.changes.push_back(Change::ForgetSubject);
            }
            self.changes.push_back(Change::Vacate);
        }
    }

    /// Whether nothing of the subject is kept: no event, no erasure mark, no unreadable row.
    pub fn holds_nothing(&self) -> bool {
        self.events.is_empty() && self.erased_at.is_none() && self.unreadable.is_empty()
    }

    /// An operator's erasure of the subject (a data-subject request), at `now`: every payload
    /// and stored body goes; copies still pending end expired as [`DeadReason::Erased`] (never
    /// sent), dead ones expire keeping when and why they died (never replayable, unlisted: the
    /// lookup shows the erasure beside them); the subject's name goes. What deduplication
    /// needs stays (ids, Didit's `event_id`, type, status, times), so a retry or resend of an
    /// erased event is still a duplicate and is not delivered again.
    pub fn handle_erase(&mut self, now: UnixMs) -> Erasure {
        let mut erasure = Erasure::default();
        for event in self.events.values_mut() {
            let seq = event.record.seq;
            erasure.events += 1;
            // Its own row is left alone (held copies are not among `copies`).
            if event.held.event {
                continue;
            }
            // Copies first: after a crash between these changes, no copy still pending lacks
            // its payload (an erasure that failed is run again by the operator).
            for (consumer, copy) in &mut event.copies {
                // Where redirects pointed is the origins' text, and may name the subject.
                let forgot = copy.history.forget_locations();
                let ended = match copy.state {
                    CopyState::Pending { .. } => {
                        erasure.pending_deliveries += 1;
                        Some((now, DeadReason::Erased))
                    }
                    CopyState::Dead { at, reason } => {
                        erasure.dead_letters += 1;
                        copy.index = Some(IndexSync::Remove);
                        Some((at, reason))
                    }
                    CopyState::Delivered { .. } | CopyState::Expired { .. } => None,
                };
                if let Some((at, reason)) = ended {
                    copy.state = CopyState::Expired { at, reason };
                } else if !forgot {
                    continue;
                }
                self.changes.push_back(Change::PutCopy {
                    seq,
                    consumer: consumer.clone(),
                    copy: copy.clone(),
                });
            }
            if event.record.risk_level.is_none() {
                // Its body is all it has, and erasure takes it: it will never be classified.
                event.record.risk_level = Some(Level::Unknown);
                event.record.has_payload = false;
                erasure.payloads += 1;
                self.changes.push_back(Change::Classify {
                    seq,
                    risk_level: Level::Unknown,
                    payload: None,
                    copies: Vec::new(),
                });
            } else if event.record.has_payload {
                event.record.has_payload = false;
                erasure.payloads += 1;
                self.changes.push_back(Change::DropPayload(seq));
            }
            self.transitions.push_back(Transition::Erased {
                event_id: event.record.id.clone(),
            });
        }
        if self.subject.take().is_some() {
            self.changes.push_back(Change::ForgetSubject);
        }
        self.erased_at = Some(now);
        self.changes.push_back(Change::MarkErased(now));
        erasure
    }
}
