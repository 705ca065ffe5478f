//! Which listed sessions a run asks about, judged before any subrequest is spent: only
//! results, only sessions created after reconciliation was switched on and still within the
//! inboxes' memory, never an erased subject, and a session already known or set aside only
//! once its recheck, settle time or next try is due.

use crate::reconcile::after;
use crate::reconcile::api::{self, SessionRow};
use crate::reconcile::memory::session_erasure_key;
use crate::time::{UnixMicros, UnixSecs};

use super::Run;

/// What to do with a listed session before asking anyone.
pub(super) enum Judgement {
    Skip,
    Ask,
    /// A set-aside gap whose next try is due: asked after the page's other sessions, so that
    /// its failing again (and resting the API) never comes before them.
    Retry,
}

impl Run {
    pub(super) fn judge(&mut self, row: &SessionRow) -> Judgement {
        if !api::is_result_status(&row.status) || !self.after_switch_on(row.created_at) {
            return Judgement::Skip;
        }
        if self
            .erased
            .contains(&session_erasure_key(row.kind, &row.session_id))
        {
            return Judgement::Skip;
        }
        if row.created_at.secs() < self.oldest_remembered() {
            self.counts.beyond_memory += 1;
            return Judgement::Skip;
        }
        let now = self.secs();
        // Once per sweep at most: a run that ends mid-page is continued by the next, which
        // re-lists the page, and must get further (a recheck due meanwhile waits a sweep).
        let sweep_started = self.state.sweep.as_ref().map(|sweep| sweep.started_at);
        match self.recalled.get(&row.session_id) {
            Some(seen) if seen.status == row.status => match (seen.set_aside, seen.gap_since) {
                (Some(set_aside), _) => match set_aside.retry_at {
                    Some(at) if at <= now => Judgement::Retry,
                    _ => Judgement::Skip,
                },
                (None, None)
                    if after(seen.checked_at, self.settings.recheck_secs) > now
                        || sweep_started.is_some_and(|started| seen.checked_at >= started) =>
                {
                    Judgement::Skip
                }
                (None, Some(since)) if !self.settled(since) => Judgement::Skip,
                _ => Judgement::Ask,
            },
            _ => Judgement::Ask,
        }
    }

    pub(super) fn after_switch_on(&self, created_at: UnixMicros) -> bool {
        self.state
            .switched_on()
            .is_none_or(|switched_on| created_at >= switched_on)
    }

    /// The oldest creation time an inbox still surely remembers what it received of.
    pub(super) fn oldest_remembered(&self) -> UnixSecs {
        self.state.oldest_remembered(&self.settings, self.secs())
    }

    pub(super) fn settled(&self, since: UnixSecs) -> bool {
        after(since, self.settings.settle_secs) <= self.secs()
    }
}
