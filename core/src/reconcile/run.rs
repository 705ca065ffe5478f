//! One run: a stretch of a sweep within its budgets and its lease, as steps for the adapter to
//! perform and answers for it to hand back, each with the time it came.
//!
//! This module holds the run's state and its cycle: [`Run::poll`] hands out the next [`Step`]
//! (a page to list, what is remembered of its sessions, a session's inbox to ask), moving
//! through a page's sessions and on to the next page, and [`Run::finish`] ends it. The rest is
//! beside it, one concern each:
//! - `step`: the steps a run asks for and what their answers may be, the protocol with the
//!   adapter;
//! - `handle`: what each answer does to the run;
//! - `judge`: which listed sessions are worth a question at all;
//! - `pacing`: what the run may still spend (subrequests, API requests, its lease), and how
//!   long Didit's API rests after it fails;
//! - `session`: what is remembered of the session in hand after each answer, and what a failed
//!   try of it sets aside.

mod handle;
mod judge;
mod pacing;
mod session;
mod step;

use alloc::collections::VecDeque;
use alloc::string::String;
use alloc::vec::Vec;

use super::api::{self, SessionRow};
use super::memory::{session_erasure_key, Change, Seen, SetAside};
use super::{
    event, Counts, RunEnd, RunReport, Settings, State, API_REQUESTS_PER_RUN, DECISIONS_PER_RUN,
    MAX_REPORTED_ERRORS,
};
use crate::identity::Subject;
use crate::time::{UnixMs, UnixSecs};

use judge::Judgement;
pub use step::{InjectFailure, Injected, Step};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    NeedPage,
    Recall,
    Rows,
    Ended,
}

#[derive(Clone, Copy, Debug)]
struct PageEnd {
    len: u64,
    has_next: bool,
}

/// The session a run is working on, between its steps.
#[derive(Debug)]
struct InHand {
    row: SessionRow,
    key: String,
    /// What was remembered of it with the status it has now.
    previous: Option<Seen>,
    /// When its gap was first seen (from what was remembered, until the inbox says more).
    gap_since: Option<UnixSecs>,
    /// When its decision was asked for: the event's time. Didit answered with the status it
    /// had at some moment after, so every transition Didit makes after the answer is dated
    /// later and ordered after this event.
    requested_at: UnixSecs,
    /// The status of the event being injected.
    injecting: Option<String>,
    /// A failed try that gives up, waiting for its alert to be queued.
    giving_up: Option<SetAside>,
    /// The subject was erased while a step about it was under way: its answer is dropped.
    erased: bool,
}

impl InHand {
    fn previous_set_aside(&self) -> Option<SetAside> {
        self.previous.as_ref().and_then(|seen| seen.set_aside)
    }
}

/// One run: a stretch of a sweep within one budget.
#[derive(Debug)]
pub struct Run {
    state: State,
    settings: Settings,
    started_at: UnixSecs,
    now: UnixMs,
    requests_left: u32,
    api_requests_left: u32,
    decisions_left: u32,
    inbox_failures_in_a_row: u32,
    api_failed: bool,
    /// A session's decision read answered 5xx or nothing: no more API requests this run.
    api_paused: bool,
    counts: Counts,
    errors: Vec<String>,
    phase: Phase,
    /// The step handed out and not yet answered.
    pending: Option<Step>,
    /// The current page's sessions still to compare.
    rows: VecDeque<SessionRow>,
    /// The page's set-aside gaps due a try, asked once `rows` is done.
    retries: VecDeque<SessionRow>,
    in_hand: Option<InHand>,
    page: PageEnd,
    recalled: Recalled,
    /// The erasure keys of the page's subjects that are to be left alone (at most a page's
    /// worth, and those marked during the run), as a sorted list ([`crate::sorted::Set`]).
    erased: crate::sorted::Set<String>,
    changes: VecDeque<Change>,
    ended: Option<RunEnd>,
}

/// What storage remembers of the page's sessions, by session id. A list, not a map: a page
/// holds at most [`api::PAGE_SIZE`] sessions, and a map type of its own would be more code in
/// the upload than the searches cost.
#[derive(Debug, Default)]
struct Recalled(Vec<(String, Seen)>);

impl Recalled {
    fn get(&self, session_id: &str) -> Option<&Seen> {
        self.0
            .iter()
            .find(|(id, _)| id == session_id)
            .map(|(_, seen)| seen)
    }

    /// Remembers `seen` for `session_id`, in place of what was remembered.
    fn insert(&mut self, session_id: String, seen: Seen) {
        self.remove(&session_id);
        self.0.push((session_id, seen));
    }

    fn remove(&mut self, session_id: &str) {
        self.0.retain(|(id, _)| id != session_id);
    }
}

impl Run {
    pub(super) fn new(state: State, settings: Settings, now: UnixMs) -> Self {
        Self {
            state,
            settings,
            started_at: now.secs(),
            now,
            requests_left: settings.requests_per_run,
            api_requests_left: API_REQUESTS_PER_RUN.min(settings.requests_per_run),
            decisions_left: DECISIONS_PER_RUN,
            inbox_failures_in_a_row: 0,
            api_failed: false,
            api_paused: false,
            counts: Counts::default(),
            errors: Vec::new(),
            phase: Phase::NeedPage,
            pending: None,
            rows: VecDeque::new(),
            retries: VecDeque::new(),
            in_hand: None,
            page: PageEnd {
                len: 0,
                has_next: false,
            },
            recalled: Recalled::default(),
            erased: crate::sorted::Set::default(),
            changes: VecDeque::new(),
            ended: None,
        }
    }

    /// The state to store now: the adapter writes it after every step, so a run that dies
    /// leaves its progress (the offset of the last page it finished) and its lease.
    pub fn state(&self) -> &State {
        &self.state
    }

    /// Every queued change, in order.
    pub fn drain_changes(&mut self) -> impl Iterator<Item = Change> + '_ {
        self.changes.drain(..)
    }

    fn observe(&mut self, now: UnixMs) {
        self.now = self.now.max(now);
    }

    fn secs(&self) -> UnixSecs {
        self.now.secs()
    }

    /// The next step at `now`. Asking again before answering gives the same step.
    pub fn poll(&mut self, now: UnixMs) -> Step {
        self.observe(now);
        if let Some(step) = &self.pending {
            return step.clone();
        }
        let step = loop {
            match self.phase {
                Phase::Ended => return Step::Done,
                Phase::NeedPage => {
                    let Some(sweep) = &self.state.sweep else {
                        self.end(RunEnd::SweepDone);
                        continue;
                    };
                    let path =
                        api::list_path(sweep.kind, sweep.from, sweep.started_at, sweep.offset);
                    if self.spend(1, true, 1) {
                        break Step::List { path };
                    }
                }
                Phase::Recall => {
                    break Step::Recall {
                        session_ids: self.rows.iter().map(|row| row.session_id.clone()).collect(),
                        erasure_keys: self
                            .rows
                            .iter()
                            .map(|row| session_erasure_key(row.kind, &row.session_id))
                            .collect(),
                    }
                }
                Phase::Rows => {
                    if let Some(step) = self.next_for_rows() {
                        break step;
                    }
                }
            }
        };
        self.pending = Some(step.clone());
        step
    }

    /// Takes the next row of the page in hand and asks about it, or `None` when the phase
    /// moved on (or the row needs nothing).
    fn next_for_rows(&mut self) -> Option<Step> {
        let row = match self.rows.pop_front() {
            Some(row) => match self.judge(&row) {
                Judgement::Skip => return None,
                Judgement::Retry => {
                    self.retries.push_back(row);
                    return None;
                }
                Judgement::Ask => row,
            },
            None => match self.retries.pop_front() {
                Some(row) => row,
                None => {
                    self.page_done();
                    return None;
                }
            },
        };
        if !self.spend(1, false, 1) {
            return None;
        }
        let key = session_erasure_key(row.kind, &row.session_id);
        let previous = self
            .recalled
            .get(&row.session_id)
            .filter(|seen| seen.status == row.status)
            .cloned();
        let step = Step::AskInbox {
            inbox: subject_of(&row).inbox_name(),
            webhook_type: event::WEBHOOK_TYPE,
            status: row.status.clone(),
        };
        self.in_hand = Some(InHand {
            row,
            key,
            gap_since: previous.as_ref().and_then(|seen| seen.gap_since),
            previous,
            requested_at: UnixSecs(0),
            injecting: None,
            giving_up: None,
            erased: false,
        });
        Some(step)
    }

    /// The page in hand is compared: move the sweep on.
    fn page_done(&mut self) {
        let Some(sweep) = self.state.sweep.as_mut() else {
            self.end(RunEnd::SweepDone);
            return;
        };
        sweep.offset = sweep.offset.saturating_add(self.page.len);
        self.phase = Phase::NeedPage;
        if self.page.has_next {
            return;
        }
        if sweep.kind == api::SessionKind::User {
            sweep.kind = api::SessionKind::Business;
            sweep.offset = 0;
            return;
        }
        self.state.checkpoint = Some(sweep.started_at);
        let from = sweep.from;
        self.changes.push_back(Change::ForgetCreatedBefore(from));
        // A mark older than every session still asked about protects nothing any more.
        self.changes
            .push_back(Change::ForgetErasedBefore(self.oldest_remembered()));
        self.state.sweep = None;
        self.end(RunEnd::SweepDone);
    }

    fn take_pending(&mut self, expected: fn(&Step) -> bool) -> bool {
        match &self.pending {
            Some(step) if expected(step) => {
                self.pending = None;
                true
            }
            _ => false,
        }
    }

    /// The session in hand, unless an erasure took it meanwhile (its answer is then dropped).
    fn take_hand(&mut self) -> Option<InHand> {
        self.in_hand.take().filter(|hand| !hand.erased)
    }

    fn end(&mut self, why: RunEnd) {
        self.phase = Phase::Ended;
        self.pending = None;
        self.ended.get_or_insert(why);
    }

    fn note_error(&mut self, error: String) {
        if self.errors.len() < MAX_REPORTED_ERRORS {
            self.errors.push(error);
        }
    }

    /// Ends the run at `now`: the state to store (lease released, report written) and when the
    /// next run should come.
    pub fn finish(mut self, now: UnixMs) -> (State, UnixSecs) {
        let ended = self.ended.take().unwrap_or(RunEnd::BudgetUsed);
        if matches!(ended, RunEnd::SweepDone | RunEnd::BudgetUsed) && !self.api_failed {
            self.state.failures = 0;
        }
        self.state.lease_until = None;
        self.state.last_run = Some(RunReport {
            started_at: self.started_at,
            finished_at: now.secs().max(self.started_at),
            counts: self.counts,
            ended,
            errors: self.errors,
        });
        let next = self.state.next_run_at(&self.settings);
        (self.state, next)
    }
}

/// The subject a listed session's events belong to.
fn subject_of(row: &SessionRow) -> Subject<'_> {
    Subject {
        kind: row.kind.subject_kind(),
        id: row.session_id.as_str().into(),
    }
}
