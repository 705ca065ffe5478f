//! The dead-letter index side: each copy that became or stopped being a dead letter carries
//! an outbox entry ([`IndexSync`]) until the index has heard it, and an operator's replay
//! starts dead letters over and takes them off the index.

use alloc::vec::Vec;

use super::{Change, CopyKey, Inbox, IndexChange, IndexEntry, IndexSync, ReplayFilter, Transition};
use crate::delivery::CopyState;
use crate::time::UnixMs;

/// Most index changes one push carries.
pub const INDEX_BATCH: usize = 100;
/// How long an unreachable dead-letter index waits before the next push.
pub const INDEX_RETRY_MS: u64 = 30_000;

impl Inbox {
    /// What the dead-letter index has yet to hear, at most [`INDEX_BATCH`] at a time.
    pub fn poll_index(&self) -> Vec<IndexChange> {
        let mut changes = Vec::new();
        for event in self.events.values() {
            for (consumer, copy) in &event.copies {
                let change = match (copy.index, copy.state) {
                    (Some(IndexSync::Put), CopyState::Dead { at, reason }) => IndexEntry::Put {
                        webhook_type: event.record.webhook_type.clone(),
                        reason,
                        received_at: event.record.received_at,
                        dead_at: at,
                    },
                    (Some(_), _) => IndexEntry::Remove,
                    (None, _) => continue,
                };
                changes.push(IndexChange {
                    seq: event.record.seq,
                    key: CopyKey {
                        id: event.record.id.clone(),
                        consumer: consumer.clone(),
                    },
                    change,
                });
                if changes.len() == INDEX_BATCH {
                    return changes;
                }
            }
        }
        changes
    }

    /// The index took `synced`: their outbox entries clear, unless the copy changed since.
    pub fn handle_index_synced(&mut self, synced: &[IndexChange]) {
        self.index_retry_at = None;
        for change in synced {
            let Some(copy) = self
                .events
                .get_mut(&change.seq)
                .and_then(|event| event.copies.get_mut(&change.key.consumer))
            else {
                continue;
            };
            let same = match (&change.change, copy.index, copy.state) {
                (
                    IndexEntry::Put { dead_at, .. },
                    Some(IndexSync::Put),
                    CopyState::Dead { at, .. },
                ) => *dead_at == at,
                (IndexEntry::Remove, Some(IndexSync::Remove), _) => true,
                _ => false,
            };
            if same {
                copy.index = None;
                self.changes.push_back(Change::PutCopy {
                    seq: change.seq,
                    consumer: change.key.consumer.clone(),
                    copy: copy.clone(),
                });
            }
        }
    }

    /// The index could not be reached at `now`: try again later.
    pub fn handle_index_failed(&mut self, now: UnixMs) {
        self.index_retry_at = Some(now.plus_ms(INDEX_RETRY_MS));
    }

    /// An operator's replay: matching dead letters start over with a fresh schedule, due now,
    /// their past rejections forgotten (the operator replays because the origin was fixed).
    pub fn handle_replay(&mut self, filter: ReplayFilter<'_>, now: UnixMs) -> Vec<CopyKey> {
        let mut replayed = Vec::new();
        for event in self.events.values_mut() {
            let named = filter.id.is_none_or(|id| {
                event.record.id == id || event.record.alias.as_deref() == Some(id)
            });
            if !named {
                continue;
            }
            for (consumer, copy) in &mut event.copies {
                if filter.consumer.is_some_and(|c| c != consumer)
                    || !matches!(copy.state, CopyState::Dead { .. })
                {
                    continue;
                }
                copy.state = copy.state.replayed(now);
                copy.index = Some(IndexSync::Remove);
                copy.history.record_replay(now);
                if !copy.rejected_by.is_empty() {
                    copy.rejected_by.clear();
                    self.changes.push_back(Change::SetRejections {
                        seq: event.record.seq,
                        consumer: consumer.clone(),
                        rejected_by: Vec::new(),
                    });
                }
                self.changes.push_back(Change::PutCopy {
                    seq: event.record.seq,
                    consumer: consumer.clone(),
                    copy: copy.clone(),
                });
                self.transitions.push_back(Transition::Replayed {
                    event_id: event.record.id.clone(),
                    consumer: consumer.clone(),
                });
                replayed.push(CopyKey {
                    id: event.record.id.clone(),
                    consumer: consumer.clone(),
                });
            }
        }
        replayed
    }
}
