//! What an isolate decides from the shared breakers without asking them each time: which
//! origins to try, which outcomes are worth reporting, and when its held snapshot is fresh
//! enough to reuse.

use alloc::rc::Rc;
use alloc::vec::Vec;

use super::{Breaker, BreakerPolicy, BreakerState, Report, Snapshot};
use crate::budget::SubrequestBudget;
use crate::origin::Origin;
use crate::time::UnixMs;

/// Orders one attempt's candidates (already in priority order) by health: origins whose
/// breaker is open and cooling down are left out, so a dead cloud is not hammered while its
/// peers take the traffic.
pub fn available(
    candidates: Vec<&Origin>,
    state_of: impl Fn(&str) -> Option<BreakerState>,
    now_ms: i64,
) -> Vec<&Origin> {
    candidates
        .into_iter()
        .filter(|origin| state_of(&origin.name).is_none_or(|state| state.available(now_ms)))
        .collect()
}

/// Whether an outcome need not be reported to the shared breakers: it would change nothing
/// in the state last seen (`None`: a closed breaker nobody has reported on).
pub fn report_changes_nothing(last_seen: Option<BreakerState>, up: bool, at_ms: i64) -> bool {
    let state = last_seen.unwrap_or(BreakerState::Closed {
        consecutive_failures: 0,
    });
    Breaker::with_state(BreakerPolicy::default(), state).unchanged_by(up, at_ms)
}

/// How long an isolate reuses a snapshot: delivery asks no round trip per event, and a change
/// elsewhere is seen within this.
pub const SNAPSHOT_CACHE_MS: u64 = 2_000;

/// What [`SnapshotCache::lookup`] says to do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Lookup {
    /// Use this snapshot.
    Use(Rc<Snapshot>),
    /// Fetch a fresh one (one subrequest, taken) and hand it to
    /// [`SnapshotCache::handle_fetched`].
    Fetch,
}

/// One isolate's last snapshot and when it was fetched. Health only orders origins: whenever
/// it cannot be had (unreadable, or no subrequest left), every origin counts as available and
/// delivery goes on (fail open), rather than holding events back on a guess.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SnapshotCache {
    held: Option<(UnixMs, Rc<Snapshot>)>,
}

impl SnapshotCache {
    /// Nothing held yet.
    pub const fn new() -> Self {
        Self { held: None }
    }

    /// At `now`: the held snapshot while it is younger than [`SNAPSHOT_CACHE_MS`]; else a
    /// fetch, if `budget` has a subrequest for it; else the held one however old (or none: every
    /// origin available).
    pub fn lookup(&self, now: UnixMs, budget: &mut SubrequestBudget) -> Lookup {
        if let Some((at, snapshot)) = &self.held {
            if now.0.saturating_sub(at.0) < SNAPSHOT_CACHE_MS as i64 {
                return Lookup::Use(snapshot.clone());
            }
        }
        if budget.take(1) {
            return Lookup::Fetch;
        }
        Lookup::Use(
            self.held
                .as_ref()
                .map(|(_, s)| s.clone())
                .unwrap_or_default(),
        )
    }

    /// A fetch's outcome at `now` (`None`: health could not be read). A snapshot is held from
    /// then; without one, every origin counts as available for this attempt, and what was held
    /// stays held.
    pub fn handle_fetched(&mut self, fetched: Option<Snapshot>, now: UnixMs) -> Rc<Snapshot> {
        match fetched {
            Some(snapshot) => {
                let snapshot = Rc::new(snapshot);
                self.held = Some((now, snapshot.clone()));
                snapshot
            }
            None => Rc::default(),
        }
    }

    /// A report this isolate made: the held snapshot takes the step the shared breaker takes
    /// (by the same [`BreakerPolicy::default`]), so the next attempt here sees it without
    /// asking again. An origin the snapshot does not list starts closed.
    pub fn handle_reported(&mut self, report: &Report) {
        if let Some((_, snapshot)) = self.held.as_mut() {
            let state = snapshot
                .get(&report.origin)
                .copied()
                .unwrap_or(BreakerState::Closed {
                    consecutive_failures: 0,
                });
            let mut breaker = Breaker::with_state(BreakerPolicy::default(), state);
            breaker.report(report.up, report.retry_after_ms, report.at_ms.0);
            Rc::make_mut(snapshot).insert(report.origin.clone(), breaker.state());
        }
    }
}
