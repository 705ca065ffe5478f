//! Reconciliation: finding the results whose webhook never arrived, by asking Didit's API.
//!
//! Didit retries a failed webhook twice within about five minutes; a longer outage of the
//! edge (or a webhook Didit never sent) leaves a result missing. Didit's session list filters
//! on the date a session was *created*, not when it changed, so "what changed since the
//! checkpoint" cannot be asked. Instead each **sweep** walks every session created within the
//! lookback (newest first, `date_to` fixed at the sweep's start so offsets stay put) and
//! compares each session's status with what the edge holds:
//!
//! ```text
//! row ─ not a result (Not Started, In Progress) ──────────────▶ skip
//!     ─ remembered as known with this status, recently ───────▶ skip (no subrequest)
//!     ─ remembered as a gap younger than the settle time ─────▶ skip (its webhook may be late)
//!     ─ else ask the subject's inbox: known ──────────────────▶ remember as known
//!                                     missing, first seen ────▶ remember as a gap, since now
//!                                     missing, settled ───────▶ fetch the decision ─▶ inject
//! ```
//!
//! A sweep that ends sets the **checkpoint** to its start: every result reached before it, of
//! a session created within the lookback, has been compared. A gap is injected at the
//! earliest one settle time after a sweep first saw it, so a missed webhook is found within
//! about `interval + settle + interval` (plus the sweep's own length).
//!
//! Like [`crate::inbox::Inbox`], it is sans-IO: the adapter (one global Durable Object) keeps
//! [`State`] and what [`Change`]s say, starts a [`Run`] with [`begin`], and loops on
//! [`Run::poll`], doing each [`Step`]'s IO and handing back what came of it. A run is bounded
//! by a request budget (every list page, inbox question, decision and injection counts) and
//! a decision budget (Didit allows about 100 decision reads a minute); what it leaves is
//! continued by the next run. The lease in [`State`] keeps runs from overlapping, and outlives
//! a run that died without finishing only by [`LEASE_SECS`].

pub mod api;
pub mod event;

use alloc::collections::{BTreeMap, VecDeque};
use alloc::string::String;
use alloc::vec::Vec;

use serde::{Deserialize, Serialize};

use crate::identity::Subject;
use crate::time::UnixSecs;
use api::{Answer, ApiError, SessionKind, SessionRow};

/// Default lookback: how old a session may be and still be reconciled. Manual reviews can
/// take days; every sweep lists every session created in this window.
pub const DEFAULT_LOOKBACK_SECS: u64 = 3 * 86_400;
/// Default time between the starts of two sweeps.
pub const DEFAULT_INTERVAL_SECS: u64 = 300;
/// Default time a gap waits before it is injected: Didit's own retries of a failed webhook
/// come within about five minutes, and a late webhook is better than a reconciled event.
pub const DEFAULT_SETTLE_SECS: u64 = 600;
/// Default time the edge's answer about a session is trusted before its inbox is asked again.
/// A session that went back to a status it had (Approved, Resubmitted, Approved) between two
/// sweeps looks unchanged in the list; asking again finds its missing webhook.
pub const DEFAULT_RECHECK_SECS: u64 = 3_600;
/// Default requests per run: under the Workers Free plan's 50 subrequests per invocation.
pub const DEFAULT_REQUESTS_PER_RUN: u64 = 40;
/// Decisions one run fetches at most: with runs [`CONTINUE_AFTER_SECS`] apart this stays
/// under Didit's 100 decision reads a minute.
pub const DECISIONS_PER_RUN: u32 = 15;
/// Pause between runs of a sweep that used up its budget.
pub const CONTINUE_AFTER_SECS: i64 = 15;
/// How long a run holds the lease: one that has not finished by then is taken for dead.
pub const LEASE_SECS: i64 = 300;
/// Errors a run report keeps (the first ones).
pub const MAX_REPORTED_ERRORS: usize = 5;
const BACKOFF_BASE_SECS: u64 = 30;
const BACKOFF_MAX_SECS: u64 = 1_800;

/// What reconciliation is configured with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Settings {
    /// How old a session may be and still be reconciled.
    pub lookback_secs: u64,
    /// Time between the starts of two sweeps.
    pub interval_secs: u64,
    /// Time a gap waits before it is injected.
    pub settle_secs: u64,
    /// Time the inbox's answer about a session is trusted before it is asked again.
    pub recheck_secs: u64,
    /// Requests one run makes at most.
    pub requests_per_run: u32,
}

/// Everything reconciliation keeps between runs (stored by the adapter as one record).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct State {
    /// When reconciliation first ran: sessions created before are never reconciled, so
    /// switching it on does not replay history to the origins.
    pub activated_at: Option<UnixSecs>,
    /// The start of the last finished sweep.
    pub checkpoint: Option<UnixSecs>,
    /// The sweep under way.
    pub sweep: Option<Sweep>,
    /// API failures in a row.
    pub failures: u32,
    /// No run before this (after an API failure).
    pub wait_until: Option<UnixSecs>,
    /// A run holds the lease until then.
    pub lease_until: Option<UnixSecs>,
    /// What the last run did.
    pub last_run: Option<RunReport>,
}

/// Where a sweep stands.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Sweep {
    /// When it started: its `date_to`, and the checkpoint once it ends.
    pub started_at: UnixSecs,
    /// Its `date_from`.
    pub from: UnixSecs,
    /// The kind being listed (KYC, then KYB).
    pub kind: SessionKind,
    /// The next page's offset.
    pub offset: u64,
}

/// What one run did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counts {
    /// List pages read.
    pub pages: u64,
    /// Sessions compared.
    pub sessions_checked: u64,
    /// Sessions whose result the edge did not hold after the settle time.
    pub gaps_found: u64,
    /// Events injected (accepted by their inbox).
    pub events_injected: u64,
    /// Listed sessions without a usable id, status or creation time.
    pub unreadable_rows: u64,
    /// Requests made.
    pub requests: u64,
}

/// Why a run ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RunEnd {
    /// The sweep finished; the checkpoint moved.
    SweepDone,
    /// The budget ran out; the next run continues.
    BudgetUsed,
    /// Didit's API failed (the report's errors say how); the next run waits
    /// ([`State::wait_until`]).
    Api,
    /// An inbox could not be asked or could not take an event; the next run retries.
    Inbox,
    /// The reconciler's own storage failed; what was stored stays, the next run retries.
    Storage,
}

/// The last run, for `/admin/reconciliation`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunReport {
    /// When it started.
    pub started_at: UnixSecs,
    /// When it ended.
    pub finished_at: UnixSecs,
    /// What it did.
    pub counts: Counts,
    /// Why it ended.
    pub ended: RunEnd,
    /// What went wrong on the way (the first few), without identity data.
    pub errors: Vec<String>,
}

impl State {
    /// When the next run is due.
    pub fn next_run_at(&self, settings: &Settings) -> UnixSecs {
        if let Some(until) = self.wait_until {
            return until;
        }
        let finished = self.last_run.as_ref().map(|run| run.finished_at);
        match (&self.sweep, finished, self.checkpoint) {
            (Some(_), Some(finished), _) => {
                UnixSecs(finished.0.saturating_add(CONTINUE_AFTER_SECS))
            }
            (None, _, Some(checkpoint)) => after(checkpoint, settings.interval_secs),
            _ => self.activated_at.unwrap_or_default(),
        }
    }
}

fn after(moment: UnixSecs, secs: u64) -> UnixSecs {
    UnixSecs(
        moment
            .0
            .saturating_add(i64::try_from(secs).unwrap_or(i64::MAX)),
    )
}

fn before(moment: UnixSecs, secs: u64) -> UnixSecs {
    UnixSecs(
        moment
            .0
            .saturating_sub(i64::try_from(secs).unwrap_or(i64::MAX)),
    )
}

/// Why no run starts now.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NotNow {
    /// Another run holds the lease until then.
    Busy(UnixSecs),
    /// Didit's API failed; the next try is then.
    Waiting(UnixSecs),
    /// The next sweep is not due until then.
    Idle(UnixSecs),
}

impl NotNow {
    /// When to try again.
    pub fn until(self) -> UnixSecs {
        match self {
            Self::Busy(at) | Self::Waiting(at) | Self::Idle(at) => at,
        }
    }
}

/// What reconciliation remembers of one session: the status it last compared and whether the
/// edge held it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Seen {
    /// The status compared.
    pub status: String,
    /// `None`: the edge holds it. `Some`: missing since then (a gap waiting to settle).
    pub gap_since: Option<UnixSecs>,
    /// When the inbox was last asked.
    pub checked_at: UnixSecs,
}

/// A change for the adapter to store.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Change {
    /// Remember what was found of a session (replacing what was remembered).
    Remember {
        /// Didit's session id.
        session_id: String,
        /// When it was created (what [`Change::ForgetCreatedBefore`] goes by).
        created_at: UnixSecs,
        /// What was found.
        seen: Seen,
    },
    /// Sessions created before this are out of the lookback: forget them.
    ForgetCreatedBefore(UnixSecs),
}

/// The IO a run asks for next.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Step {
    /// `GET` this path (and query) under the base URL ([`Run::handle_page`]).
    List {
        /// Path and query.
        path: String,
    },
    /// Read what is remembered of these sessions ([`Run::handle_recalled`]).
    Recall {
        /// Didit's session ids.
        session_ids: Vec<String>,
    },
    /// Ask an inbox whether it holds this transition ([`Run::handle_inbox`]).
    AskInbox {
        /// The inbox's name.
        inbox: String,
        /// The `webhook_type`.
        webhook_type: &'static str,
        /// The status the API reports.
        status: String,
    },
    /// `GET` this decision ([`Run::handle_decision`]).
    FetchDecision {
        /// Its path under the base URL.
        path: String,
    },
    /// Name this webhook body with [`crate::intake::Identified::from_api`], classify it and
    /// claim it in its inbox ([`Run::handle_injected`]).
    Inject {
        /// Didit's webhook shape, written from the decision.
        body: String,
    },
    /// The run is over: [`Run::finish`].
    Done,
}

/// Starts a run at `now`, or says why not and when to try again.
pub fn begin(mut state: State, settings: Settings, now: UnixSecs) -> Result<Run, NotNow> {
    if let Some(until) = state.lease_until.filter(|until| *until > now) {
        return Err(NotNow::Busy(until));
    }
    if let Some(until) = state.wait_until.filter(|until| *until > now) {
        return Err(NotNow::Waiting(until));
    }
    state.wait_until = None;
    let activated_at = *state.activated_at.get_or_insert(now);
    // A sweep under way continues at its pace (the cron may come sooner than the alarm).
    if let Some(due) = state
        .sweep
        .as_ref()
        .map(|_| state.next_run_at(&settings))
        .filter(|due| *due > now)
    {
        return Err(NotNow::Idle(due));
    }
    if state.sweep.is_none() {
        if let Some(due) = state
            .checkpoint
            .map(|checkpoint| after(checkpoint, settings.interval_secs))
            .filter(|due| *due > now)
        {
            return Err(NotNow::Idle(due));
        }
        state.sweep = Some(Sweep {
            started_at: now,
            from: before(now, settings.lookback_secs).max(activated_at),
            kind: SessionKind::User,
            offset: 0,
        });
    }
    state.lease_until = Some(UnixSecs(now.0.saturating_add(LEASE_SECS)));
    Ok(Run {
        state,
        settings,
        now,
        requests_left: settings.requests_per_run,
        decisions_left: DECISIONS_PER_RUN,
        counts: Counts::default(),
        errors: Vec::new(),
        phase: Phase::NeedPage,
        pending: None,
        rows: VecDeque::new(),
        page: PageEnd {
            len: 0,
            has_next: false,
        },
        recalled: BTreeMap::new(),
        injecting: None,
        changes: VecDeque::new(),
        ended: None,
    })
}

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

/// One run: a stretch of a sweep within one budget.
#[derive(Debug)]
pub struct Run {
    state: State,
    settings: Settings,
    now: UnixSecs,
    requests_left: u32,
    decisions_left: u32,
    counts: Counts,
    errors: Vec<String>,
    phase: Phase,
    /// The step handed out and not yet answered.
    pending: Option<Step>,
    /// The current page's sessions still to compare; the first is the one in hand.
    rows: VecDeque<SessionRow>,
    page: PageEnd,
    recalled: BTreeMap<String, Seen>,
    /// The status of the event being injected for the session in hand.
    injecting: Option<String>,
    changes: VecDeque<Change>,
    ended: Option<RunEnd>,
}

/// What to do with a listed session before asking anyone.
enum Judgement {
    Skip,
    Ask,
}

impl Run {
    /// The state to store now: the adapter writes it after every step, so a run that dies
    /// leaves its progress (the offset of the last page it finished) and its lease.
    pub fn state(&self) -> &State {
        &self.state
    }

    /// Every queued change, in order.
    pub fn drain_changes(&mut self) -> impl Iterator<Item = Change> + '_ {
        self.changes.drain(..)
    }

    /// The next step. Asking again before answering gives the same step.
    pub fn poll(&mut self) -> Step {
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
                    if !self.spend() {
                        continue;
                    }
                    break Step::List { path };
                }
                Phase::Recall => {
                    break Step::Recall {
                        session_ids: self.rows.iter().map(|row| row.session_id.clone()).collect(),
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

    /// The next step for the page in hand, or `None` when the phase moved on.
    fn next_for_rows(&mut self) -> Option<Step> {
        let Some(row) = self.rows.front() else {
            self.page_done();
            return None;
        };
        match self.judge(row) {
            Judgement::Skip => {
                self.rows.pop_front();
                None
            }
            Judgement::Ask => {
                let step = Step::AskInbox {
                    inbox: subject_of(row).inbox_name(),
                    webhook_type: event::WEBHOOK_TYPE,
                    status: row.status.clone(),
                };
                self.spend().then_some(step)
            }
        }
    }

    fn judge(&self, row: &SessionRow) -> Judgement {
        if !api::is_result_status(&row.status) {
            return Judgement::Skip;
        }
        match self.recalled.get(&row.session_id) {
            Some(seen) if seen.status == row.status => match seen.gap_since {
                None if after(seen.checked_at, self.settings.recheck_secs) > self.now => {
                    Judgement::Skip
                }
                None => Judgement::Ask,
                Some(since) if !self.settled(since) => Judgement::Skip,
                Some(_) => Judgement::Ask,
            },
            _ => Judgement::Ask,
        }
    }

    fn settled(&self, since: UnixSecs) -> bool {
        after(since, self.settings.settle_secs) <= self.now
    }

    /// Takes one request from the budget, or ends the run when there is none.
    fn spend(&mut self) -> bool {
        if self.requests_left == 0 {
            self.end(RunEnd::BudgetUsed);
            return false;
        }
        self.requests_left -= 1;
        self.counts.requests += 1;
        true
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

    /// The API failed: the run ends and the next waits, longer after each failure in a row
    /// and never less than Didit's `Retry-After`.
    fn api_failed(&mut self, error: ApiError) {
        self.state.failures = self.state.failures.saturating_add(1);
        let exponent = self.state.failures.saturating_sub(1).min(16);
        let backoff = BACKOFF_BASE_SECS
            .saturating_mul(1 << exponent)
            .min(BACKOFF_MAX_SECS);
        let asked = match &error {
            ApiError::Unavailable {
                retry_after_secs: Some(secs),
                ..
            } => *secs,
            _ => 0,
        };
        self.state.wait_until = Some(after(self.now, backoff.max(asked)));
        self.note_error(error.describe());
        self.end(RunEnd::Api);
    }

    fn remember(&mut self, row: &SessionRow, status: String, gap_since: Option<UnixSecs>) {
        let seen = Seen {
            status,
            gap_since,
            checked_at: self.now,
        };
        self.recalled.insert(row.session_id.clone(), seen.clone());
        self.changes.push_back(Change::Remember {
            session_id: row.session_id.clone(),
            created_at: row.created_at,
            seen,
        });
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
        if sweep.kind == SessionKind::User {
            sweep.kind = SessionKind::Business;
            sweep.offset = 0;
            return;
        }
        self.state.checkpoint = Some(sweep.started_at);
        self.changes
            .push_back(Change::ForgetCreatedBefore(sweep.from));
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

    /// What the list request came to. Ignored unless a list request is pending.
    pub fn handle_page(&mut self, answer: Answer<'_>) {
        if !self.take_pending(|step| matches!(step, Step::List { .. })) {
            return;
        }
        let Some(sweep) = &self.state.sweep else {
            return;
        };
        let (kind, offset, from) = (sweep.kind, sweep.offset, sweep.from);
        let page = answer
            .body(self.now)
            .and_then(|body| api::parse_page(body, kind, offset));
        match page {
            Ok(page) => {
                if let Some(inconsistency) = page.inconsistency {
                    self.note_error(alloc::format!("Didit's API sent {inconsistency}"));
                }
                self.state.failures = 0;
                self.counts.pages += 1;
                self.counts.unreadable_rows += page.unreadable_rows;
                self.counts.sessions_checked += page.rows.len() as u64;
                self.page = PageEnd {
                    len: page.len,
                    has_next: page.has_next,
                };
                // The API filters by date; a row outside the window is not this sweep's.
                self.rows = page
                    .rows
                    .into_iter()
                    .filter(|row| row.created_at >= from && api::is_result_status(&row.status))
                    .collect();
                self.phase = if self.rows.is_empty() {
                    Phase::Rows
                } else {
                    Phase::Recall
                };
            }
            Err(error) => self.api_failed(error),
        }
    }

    /// What is remembered of the page's sessions (those not listed are unknown).
    pub fn handle_recalled(&mut self, seen: impl IntoIterator<Item = (String, Seen)>) {
        if !self.take_pending(|step| matches!(step, Step::Recall { .. })) {
            return;
        }
        self.recalled = seen.into_iter().collect();
        self.phase = Phase::Rows;
    }

    /// The inbox's answer: whether it holds the transition (`Err`: it could not be asked).
    pub fn handle_inbox(&mut self, answer: Result<bool, String>) {
        if !self.take_pending(|step| matches!(step, Step::AskInbox { .. })) {
            return;
        }
        let Some(row) = self.rows.front().cloned() else {
            return;
        };
        match answer {
            Ok(true) => {
                self.remember(&row, row.status.clone(), None);
                self.rows.pop_front();
            }
            Ok(false) => {
                let since = self
                    .recalled
                    .get(&row.session_id)
                    .filter(|seen| seen.status == row.status)
                    .and_then(|seen| seen.gap_since);
                let since = since.unwrap_or(self.now);
                if !self.settled(since) {
                    self.remember(&row, row.status.clone(), Some(since));
                    self.rows.pop_front();
                    return;
                }
                self.counts.gaps_found += 1;
                // The decision and its injection go together, or wait for the next run (the gap
                // stays remembered as settled, so that run asks for it first).
                self.remember(&row, row.status.clone(), Some(since));
                if self.decisions_left == 0 || self.requests_left < 2 {
                    self.end(RunEnd::BudgetUsed);
                    return;
                }
                self.spend();
                self.decisions_left -= 1;
                self.pending = Some(Step::FetchDecision {
                    path: api::decision_path(&row.session_id),
                });
            }
            Err(error) => {
                self.note_error(error);
                self.end(RunEnd::Inbox);
            }
        }
    }

    /// What the decision request came to.
    pub fn handle_decision(&mut self, answer: Answer<'_>) {
        if !self.take_pending(|step| matches!(step, Step::FetchDecision { .. })) {
            return;
        }
        let Some(row) = self.rows.front().cloned() else {
            return;
        };
        match answer.body(self.now) {
            Ok(body) => match event::from_decision(body, &row, self.now) {
                Ok(reconciled) if api::is_result_status(&reconciled.status) => {
                    // `handle_inbox` kept a request for this.
                    self.spend();
                    self.injecting = Some(reconciled.status);
                    self.pending = Some(Step::Inject {
                        body: reconciled.body,
                    });
                }
                // Back in progress since it was listed: nothing to deliver yet.
                Ok(_) => {
                    self.rows.pop_front();
                }
                // Not remembered: the next sweep tries again.
                Err(error) => {
                    self.note_error(error.describe());
                    self.rows.pop_front();
                }
            },
            // Deleted since it was listed: nothing will come of it.
            Err(ApiError::Refused { status: 404 }) => {
                self.remember(&row, row.status.clone(), None);
                self.rows.pop_front();
            }
            Err(error) => self.api_failed(error),
        }
    }

    /// Whether the inbox took the injected event (`Ok(false)`: it already held it).
    pub fn handle_injected(&mut self, answer: Result<bool, String>) {
        if !self.take_pending(|step| matches!(step, Step::Inject { .. })) {
            return;
        }
        let (Some(row), Some(status)) = (self.rows.front().cloned(), self.injecting.take()) else {
            return;
        };
        match answer {
            Ok(accepted) => {
                if accepted {
                    self.counts.events_injected += 1;
                }
                self.remember(&row, status, None);
                self.rows.pop_front();
            }
            Err(error) => {
                self.note_error(error);
                self.end(RunEnd::Inbox);
            }
        }
    }

    /// The adapter could not read or write its own storage: the run ends (what was stored
    /// stays, and a remembered answer that was not is asked again), and the next run retries.
    pub fn handle_storage_failure(&mut self, error: String) {
        self.note_error(error);
        self.end(RunEnd::Storage);
    }

    /// Ends the run: the state to store (lease released, report written) and when the next
    /// run should come.
    pub fn finish(mut self, now: UnixSecs) -> (State, UnixSecs) {
        let ended = self.ended.take().unwrap_or(RunEnd::BudgetUsed);
        self.state.lease_until = None;
        self.state.last_run = Some(RunReport {
            started_at: self.now,
            finished_at: now,
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

#[cfg(test)]
mod tests;
