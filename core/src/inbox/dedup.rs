//! How an inbox knows an event it already holds: by its id, by the id older releases gave it,
//! or by Didit's `event_id` for the same type and status; and how a webhook and the API's view
//! of one transition are matched, so that reconciliation never delivers a result twice.

use alloc::string::String;
use alloc::vec::Vec;

use super::{
    Change, Claim, Event, EventRecord, IdVersion, Inbox, Knowledge, Seq, Source,
    MAX_ALIASES_PER_EVENT,
};
use crate::time::UnixSecs;

impl Inbox {
    pub(super) fn index(&mut self, record: &EventRecord) {
        self.ids.insert(record.id.clone(), record.seq);
        if let Some(alias) = &record.alias {
            self.aliases
                .entry(alias.clone())
                .or_default()
                .insert(record.seq);
        }
    }

    /// Forgets the event's id and every alias it is known by.
    pub(super) fn unindex(&mut self, record: &EventRecord) {
        self.ids.remove(&record.id);
        self.aliases.retain(|_, seqs| {
            seqs.remove(&record.seq);
            !seqs.is_empty()
        });
    }

    /// The aliases `seq` is known by.
    pub(super) fn aliases_of(&self, seq: Seq) -> usize {
        self.aliases
            .values()
            .filter(|seqs| seqs.contains(&seq))
            .count()
    }

    /// Remembers `claim`'s alias for `original`, which it repeats, so that a later resend of
    /// it is found by alias whatever happened to the subject in between; and, when its own id
    /// differs (it was matched as the same transition, not by content), that id too, so that a
    /// retry under a fresh `event_id` is found even after an event arriving late has closed
    /// the window in which the transitions matched.
    pub(super) fn attach_alias(&mut self, original: Seq, claim: &Claim) {
        let own_id = self
            .events
            .get(&original)
            .is_some_and(|event| event.record.id != claim.id)
            .then_some(&claim.id);
        for alias in claim.alias.iter().chain(own_id) {
            if self
                .aliases
                .get(alias)
                .is_some_and(|seqs| seqs.contains(&original))
                || self.aliases_of(original) >= MAX_ALIASES_PER_EVENT
            {
                continue;
            }
            self.aliases
                .entry(alias.clone())
                .or_default()
                .insert(original);
            self.changes.push_back(Change::AttachAlias {
                seq: original,
                alias: alias.clone(),
            });
        }
    }

    /// The event this claim repeats, if any: the same id, or an id that was matched to it
    /// before (a webhook taken as the same transition as a result read from the API: its
    /// retries, whatever their `event_id`, carry the same content and so the same id); the id
    /// an older release gave it; or Didit's `event_id` on an event of the same type and status
    /// (any status for an event an older release stored, which kept none).
    pub(super) fn original_of(&self, claim: &Claim) -> Option<&Event> {
        if let Some(event) = self.ids.get(&claim.id).and_then(|s| self.events.get(s)) {
            return Some(event);
        }
        if let Some(event) = self
            .aliases
            .get(&claim.id)
            .and_then(|seqs| seqs.iter().find_map(|seq| self.events.get(seq)))
        {
            return Some(event);
        }
        if let Some(event) = self
            .ids
            .get(&claim.legacy_id)
            .and_then(|s| self.events.get(s))
            .filter(|e| e.record.id_version == IdVersion::Legacy)
        {
            return Some(event);
        }
        if let Some(event) = claim.alias.as_ref().and_then(|alias| {
            self.aliases
                .get(alias)?
                .iter()
                .filter_map(|seq| self.events.get(seq))
                .find(|event| {
                    event.record.webhook_type == claim.webhook_type
                        && (event.record.status == claim.status
                            || event.record.id_version == IdVersion::Legacy)
                })
        }) {
            return Some(event);
        }
        self.same_transition(
            &claim.webhook_type,
            claim.status.as_deref()?,
            claim.created_at,
            claim.source,
        )
    }

    /// The stored event that is the same status transition as one learned from `source`, when
    /// one side of the pair came from Didit's API. A webhook and the API's view of a session
    /// share no content, so no id; they are one transition when type and status agree and no
    /// event of that type with another status lies between them in Didit's order (a session
    /// that went Approved, Resubmitted, Approved has two transitions to Approved).
    pub(super) fn same_transition(
        &self,
        webhook_type: &str,
        status: &str,
        created_at: UnixSecs,
        source: Source,
    ) -> Option<&Event> {
        let code = crate::normalize::status_code(status);
        let status_of = |event: &Event| {
            event
                .record
                .status
                .as_deref()
                .map(crate::normalize::status_code)
        };
        let of_type = || {
            self.events
                .values()
                .filter(move |event| event.record.webhook_type == webhook_type)
        };
        of_type()
            .filter(|event| {
                source == Source::Api || event.record.id_version == IdVersion::Reconciled
            })
            .filter(|event| status_of(event).as_deref() == Some(code.as_str()))
            .find(|event| {
                let (low, high) = if event.record.created_at <= created_at {
                    (event.record.created_at, created_at)
                } else {
                    (created_at, event.record.created_at)
                };
                !of_type().any(|other| {
                    other.record.created_at > low
                        && other.record.created_at < high
                        && status_of(other).as_deref() != Some(code.as_str())
                })
            })
    }

    /// The statuses of the events of `webhook_type` the inbox holds, in Didit's order (when
    /// each was created, then arrival).
    pub fn events_in_order(&self, webhook_type: &str) -> Vec<(UnixSecs, Option<String>)> {
        let mut events: Vec<(UnixSecs, Seq, Option<String>)> = self
            .events
            .values()
            .filter(|event| event.record.webhook_type == webhook_type)
            .map(|event| {
                (
                    event.record.created_at,
                    event.record.seq,
                    event.record.status.clone(),
                )
            })
            .collect();
        crate::sorted::sort_by(&mut events, Ord::cmp);
        events
            .into_iter()
            .map(|(created_at, _, status)| (created_at, status))
            .collect()
    }

    /// Whether the subject's events already hold the transition to `status` that Didit's API
    /// reports as of `now`: the question reconciliation asks before fetching a decision. An
    /// erased subject answers [`Knowledge::Erased`] whatever it holds.
    pub fn knows_transition(&self, webhook_type: &str, status: &str, now: UnixSecs) -> Knowledge {
        if self.erased_at.is_some() {
            return Knowledge::Erased;
        }
        match self.same_transition(webhook_type, status, now, Source::Api) {
            Some(_) => Knowledge::Held,
            None => Knowledge::Missing,
        }
    }
}
