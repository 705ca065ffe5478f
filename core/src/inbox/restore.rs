//! Restoring an inbox from what storage holds: its events and copies, the aliases stored
//! apart from them, the erasure mark, and the rows this release cannot read, which are left
//! exactly as they are.

use alloc::collections::BTreeMap;
use alloc::string::String;

use super::{CopyRecord, Event, EventRecord, Inbox, Seq, Unreadable};
use crate::time::UnixMs;

impl Inbox {
    /// The inbox as stored: its subject, its events and their copies. Copies of an event that
    /// is not among `events` are ignored.
    pub fn restore(
        subject: Option<String>,
        events: impl IntoIterator<Item = EventRecord>,
        copies: impl IntoIterator<Item = (Seq, String, CopyRecord)>,
    ) -> Self {
        let mut inbox = Self::new();
        inbox.subject = subject;
        for record in events {
            inbox.next_seq = inbox.next_seq.max(record.seq.0.saturating_add(1));
            inbox.index(&record);
            inbox
                .events
                .insert(record.seq, Event::new(record, BTreeMap::new()));
        }
        for (seq, consumer, copy) in copies {
            if let Some(event) = inbox.events.get_mut(&seq) {
                event.copies.insert(consumer, copy);
            }
        }
        inbox
    }

    /// The aliases stored apart from their events ([`Change::AttachAlias`](super::Change::AttachAlias)); those of events
    /// not restored are ignored.
    pub fn with_attached_aliases(
        mut self,
        aliases: impl IntoIterator<Item = (Seq, String)>,
    ) -> Self {
        for (seq, alias) in aliases {
            if self.events.contains_key(&seq) {
                self.aliases.entry(alias).or_default().insert(seq);
            }
        }
        self
    }

    /// The stored rows that could not be read, each left as it is. An unreadable copy (its
    /// entry of `events.copies` or one of its `refusals`) is held out of the machine's work: it is
    /// never sent, replayed, expired, rewritten or forgotten, and its consumer gets nothing
    /// more of this subject until an operator repairs the row (what it held may have been
    /// pending, and a later status must not overtake it). An unreadable event row holds the
    /// event and every copy of it the same way, and the events after it wait as they would for
    /// an unclassified one. Either way the event keeps its id and aliases, so a resend of it
    /// is still a duplicate. Pass the event's record when its row was readable enough to build
    /// one (its id at least); rows of events not restored are only listed.
    pub fn with_unreadable(mut self, rows: impl IntoIterator<Item = Unreadable>) -> Self {
        for unreadable in rows {
            if let Some(event) = self.events.get_mut(&unreadable.row.seq()) {
                match unreadable.row.consumer() {
                    None => {
                        event.held.event = true;
                        let consumers = core::mem::take(&mut event.copies).into_keys();
                        event.held.copies.extend(consumers);
                    }
                    Some(consumer) => {
                        event.copies.remove(consumer);
                        event.held.copies.insert(consumer.into());
                    }
                }
            }
            self.unreadable.push(unreadable);
        }
        self
    }

    /// The stored rows this inbox could not read and leaves alone, for the log and an alert.
    pub fn unreadable(&self) -> &[Unreadable] {
        &self.unreadable
    }

    /// The erasure mark as stored ([`Change::MarkErased`](super::Change::MarkErased)).
    pub fn with_erasure(mut self, erased_at: Option<UnixMs>) -> Self {
        self.erased_at = erased_at;
        self
    }
}
