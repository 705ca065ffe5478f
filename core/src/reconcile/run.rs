//! One run: a stretch of a sweep within its budgets and its lease, as steps for the adapter to
//! perform and answers for it to hand back, each with the time it came.

use alloc::collections::{BTreeMap, BTreeSet, VecDeque};
use alloc::string::String;
use alloc::vec::Vec;

use super::api::{self, Answer, ApiError, SessionRow};
use super::memory::{self, session_erasure_key, Change, Failure, Seen, SetAside};
use super::{
    after, event, Counts, RunEnd, RunReport, Settings, State, API_REQUESTS_PER_RUN,
    BACKOFF_BASE_SECS, BACKOFF_MAX_SECS, DECISIONS_PER_RUN, INBOX_FAILURES_PER_RUN,
    LEASE_MARGIN_SECS, MAX_REPORTED_ERRORS, STEP_TIMEOUT_SECS,
};
use crate::alert::Alert;
use crate::identity::Subject;
use crate::inbox::Knowledge;
use crate::time::{UnixMicros, UnixMs, UnixSecs};

/// The IO a run asks for next.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Step {
    /// `GET` this path (and query) under the base URL ([`Run::handle_page`]).
    List {
        /// Path and query.
        path: String,
    },
    /// Read what is remembered of these sessions, and which of these erasure keys are marked
    /// ([`Run::handle_recalled`]).
    Recall {
        /// Didit's session ids.
        session_ids: Vec<String>,
        /// Their subjects' erasure keys ([`memory::erasure_key`]).
        erasure_keys: Vec<String>,
    },
    /// Ask an inbox what it holds of this transition ([`Run::handle_inbox`]).
    AskInbox {
        /// The inbox's name.
        inbox: String,
        /// The `webhook_type`.
        webhook_type: &'static str,
        /// The status the API reports.
        status: String,
    },
    /// `GET` this decision, reading at most [`api::MAX_DECISION_BYTES`]
    /// ([`Run::handle_decision`]).
    FetchDecision {
        /// Its path under the base URL.
        path: String,
    },
    /// Name this webhook body with [`crate::intake::Identified::from_api`], classify it and
    /// claim it in its inbox, publishing it like a webhook's ([`Run::handle_injected`]).
    Inject {
        /// Didit's webhook shape, written from the decision.
        body: String,
    },
    /// Queue this alert ([`Run::handle_alerted`]).
    Alert {
        /// What operators should hear.
        alert: Alert,
    },
    /// The run is over: [`Run::finish`].
    Done,
}

/// What an inbox made of an injected event.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Injected {
    /// Stored: it will be delivered.
    Accepted,
    /// It held the transition already.
    Duplicate,
    /// The subject was erased: nothing was taken.
    Erased,
}

/// Why an injection did not reach a verdict.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum InjectFailure {
    /// The delivery settings are broken: no event can be classified until they are fixed.
    SettingsBroken,
    /// The edge could not name or classify the event written from the decision.
    Refused,
    /// The inbox could not be reached, or could not store it.
    InboxUnreachable,
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

/// What to do with a listed session before asking anyone.
enum Judgement {
    Skip,
    Ask,
    /// A set-aside gap whose next try is due: asked after the page's other sessions, so that
    /// its failing again (and resting the API) never comes before them.
    Retry,
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
    recalled: BTreeMap<String, Seen>,
    erased: BTreeSet<String>,
    changes: VecDeque<Change>,
    ended: Option<RunEnd>,
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
            recalled: BTreeMap::new(),
            erased: BTreeSet::new(),
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

    fn judge(&mut self, row: &SessionRow) -> Judgement {
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

    fn after_switch_on(&self, created_at: UnixMicros) -> bool {
        self.state
            .switched_on()
            .is_none_or(|switched_on| created_at >= switched_on)
    }

    /// The oldest creation time an inbox still surely remembers what it received of.
    fn oldest_remembered(&self) -> UnixSecs {
        self.state.oldest_remembered(&self.settings, self.secs())
    }

    fn settled(&self, since: UnixSecs) -> bool {
        after(since, self.settings.settle_secs) <= self.secs()
    }

    /// Whether `steps` more steps, each up to [`STEP_TIMEOUT_SECS`], end before the lease does
    /// (less [`LEASE_MARGIN_SECS`] to store the last of them).
    fn lease_allows(&self, steps: i64) -> bool {
        self.state.lease_until.is_none_or(|until| {
            self.secs()
                .0
                .saturating_add(steps.saturating_mul(STEP_TIMEOUT_SECS))
                .saturating_add(LEASE_MARGIN_SECS)
                <= until.0
        })
    }

    /// Whether `cost` subrequests (one of them to Didit's API when `api`) and `steps` steps
    /// fit what is left of the run.
    /// After a 5xx or a timeout Didit's API hears nothing more from this run: the next run
    /// comes after the back-off (steps that need no API request go on meanwhile).
    fn affords(&self, cost: u32, api: bool, steps: i64) -> bool {
        self.requests_left >= cost
            && (!api || (self.api_requests_left > 0 && !self.api_paused))
            && self.lease_allows(steps)
    }

    /// Ends the run because `cost` subrequests (an API request when `api`) do not fit.
    fn out_of_budget(&mut self, api: bool) {
        self.end(if api && self.api_paused {
            RunEnd::Api
        } else {
            RunEnd::BudgetUsed
        });
    }

    /// Takes `cost` subrequests from the budget, or ends the run when they do not fit.
    fn spend(&mut self, cost: u32, api: bool, steps: i64) -> bool {
        if !self.affords(cost, api, steps) {
            self.out_of_budget(api);
            return false;
        }
        self.requests_left -= cost;
        if api {
            self.api_requests_left -= 1;
        }
        self.counts.requests += u64::from(cost);
        true
    }

    /// Subrequests one injection costs: the claim, and the stream's publishes.
    fn inject_cost(&self) -> u32 {
        1u32.saturating_add(self.settings.publishes_per_event)
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

    /// The API failed at `now`: the run ends and the next waits, counted from that answer,
    /// longer after each failed run in a row and never less than Didit's `Retry-After`.
    fn api_failed(&mut self, error: ApiError) {
        if !self.api_failed {
            self.api_failed = true;
            self.state.failures = self.state.failures.saturating_add(1);
        }
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
        self.state.wait_until = Some(after(self.secs(), backoff.max(asked)));
        self.note_error(error.describe());
        self.end(RunEnd::Api);
    }

    fn remember(
        &mut self,
        hand: &InHand,
        status: String,
        gap_since: Option<UnixSecs>,
        set_aside: Option<SetAside>,
    ) {
        let seen = Seen {
            status,
            gap_since,
            checked_at: self.secs(),
            set_aside,
        };
        self.recalled
            .insert(hand.row.session_id.clone(), seen.clone());
        self.changes.push_back(Change::Remember {
            session_id: hand.row.session_id.clone(),
            created_at: hand.row.created_at.secs(),
            seen,
        });
    }

    /// Remembers that the edge holds the session's result.
    fn remember_held(&mut self, hand: &InHand, status: String) {
        self.inbox_failures_in_a_row = 0;
        self.remember(hand, status, None, None);
    }

    /// Remembers the session in hand as the gap it is, its set-aside untouched: nothing this
    /// run did counts as a try.
    fn keep_gap(&mut self, hand: &InHand) {
        let set_aside = hand.previous_set_aside();
        self.remember(hand, hand.row.status.clone(), hand.gap_since, set_aside);
    }

    /// The session's subject is erased: forget it, and mark it to be left alone.
    fn mark_erased(&mut self, hand: &InHand) {
        self.inbox_failures_in_a_row = 0;
        self.erased.insert(hand.key.clone());
        self.recalled.remove(&hand.row.session_id);
        let subject = subject_of(&hand.row);
        self.changes
            .extend(memory::erasure(&subject, self.secs()).into_iter().flatten());
    }

    /// A try of the session in hand failed: it is set aside with its own next try (or given
    /// up on, with an alert), and the run goes on unless the failure says it should not.
    fn failed(&mut self, mut hand: InHand, failure: Failure) {
        let retry = self.settings.gap_retry;
        let set_aside = SetAside::after(
            hand.previous_set_aside().as_ref(),
            failure,
            self.secs(),
            retry,
        );
        self.counts.set_aside += 1;
        self.note_error(failure.describe(&set_aside, retry));
        if set_aside.gave_up() && self.settings.alerts {
            if !self.spend(1, false, 1) {
                // The alert must go out with the give-up: this try is made again next run.
                self.keep_gap(&hand);
                return;
            }
            let alert = Alert::ReconciliationGaveUp {
                gap: memory::gap_reference(&hand.row.session_id),
                subject_kind: hand.row.kind.subject_kind().as_str().into(),
                failure: failure.code(),
                status: failure.status(),
                tries: set_aside.tries,
                at_ms: self.now.0,
            };
            hand.giving_up = Some(set_aside);
            self.in_hand = Some(hand);
            self.pending = Some(Step::Alert { alert });
            return;
        }
        if set_aside.gave_up() {
            self.counts.gave_up += 1;
        }
        self.remember(
            &hand,
            hand.row.status.clone(),
            hand.gap_since,
            Some(set_aside),
        );
        self.after_failure(failure);
    }

    /// Counts a given-up gap and decides whether the run goes on.
    fn after_failure(&mut self, failure: Failure) {
        if failure == Failure::InboxUnreachable {
            self.inbox_failures_in_a_row = self.inbox_failures_in_a_row.saturating_add(1);
        }
        if failure.backs_off() {
            // One session's 5xx or timeout: the API rests for the back-off, counted from this
            // answer (no streak: the list answered), and the run goes on without it.
            self.api_paused = true;
            let until = after(self.secs(), BACKOFF_BASE_SECS);
            self.state.wait_until = Some(self.state.wait_until.map_or(until, |at| at.max(until)));
        }
        if self.inbox_failures_in_a_row >= INBOX_FAILURES_PER_RUN {
            self.end(RunEnd::Inbox);
        }
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

    /// What the list request came to at `now`. Ignored unless a list request is pending.
    pub fn handle_page(&mut self, answer: Answer<'_>, now: UnixMs) {
        self.observe(now);
        if !self.take_pending(|step| matches!(step, Step::List { .. })) {
            return;
        }
        let Some(sweep) = &self.state.sweep else {
            return;
        };
        let (kind, offset, from) = (sweep.kind, sweep.offset, sweep.from);
        let page = answer
            .body(self.secs())
            .and_then(|body| api::parse_page(body, kind, offset));
        match page {
            Ok(page) => {
                if let Some(inconsistency) = page.inconsistency {
                    self.note_error(alloc::format!("Didit's API sent {inconsistency}"));
                }
                self.counts.pages += 1;
                self.counts.unreadable_rows += page.unreadable_rows;
                self.counts.sessions_checked += page.rows.len() as u64;
                self.page = PageEnd {
                    len: page.len,
                    has_next: page.has_next,
                };
                // The API filters by date; a row outside the window is not this sweep's.
                let from = from.micros();
                let rows: VecDeque<SessionRow> = page
                    .rows
                    .into_iter()
                    .filter(|row| {
                        row.created_at >= from
                            && self.after_switch_on(row.created_at)
                            && api::is_result_status(&row.status)
                    })
                    .collect();
                self.rows = rows;
                self.phase = if self.rows.is_empty() {
                    Phase::Rows
                } else {
                    Phase::Recall
                };
            }
            Err(error) => self.api_failed(error),
        }
    }

    /// What is remembered of the page's sessions (those not listed are unknown), and which of
    /// their erasure keys are marked.
    pub fn handle_recalled(
        &mut self,
        seen: impl IntoIterator<Item = (String, Seen)>,
        erased: impl IntoIterator<Item = String>,
    ) {
        if !self.take_pending(|step| matches!(step, Step::Recall { .. })) {
            return;
        }
        self.recalled = seen.into_iter().collect();
        self.erased.extend(erased);
        self.phase = Phase::Rows;
    }

    /// What the inbox said at `now` (`Err`: it could not be asked).
    pub fn handle_inbox(&mut self, answer: Result<Knowledge, ()>, now: UnixMs) {
        self.observe(now);
        if !self.take_pending(|step| matches!(step, Step::AskInbox { .. })) {
            return;
        }
        let Some(mut hand) = self.take_hand() else {
            return;
        };
        match answer {
            Ok(Knowledge::Held) => self.remember_held(&hand, hand.row.status.clone()),
            Ok(Knowledge::Erased) => self.mark_erased(&hand),
            Ok(Knowledge::Missing) => {
                self.inbox_failures_in_a_row = 0;
                let since = hand.gap_since.unwrap_or(self.secs());
                hand.gap_since = Some(since);
                if !self.settled(since) {
                    self.remember(&hand, hand.row.status.clone(), Some(since), None);
                    return;
                }
                self.counts.gaps_found += 1;
                // The decision and its injection go together, or wait for the next run (the gap
                // stays remembered as settled, so that run asks for it first).
                let inject_cost = self.inject_cost();
                if self.decisions_left == 0 || !self.affords(1 + inject_cost, true, 2) {
                    self.keep_gap(&hand);
                    self.out_of_budget(true);
                    return;
                }
                self.spend(1, true, 2);
                self.decisions_left -= 1;
                hand.requested_at = self.secs();
                self.pending = Some(Step::FetchDecision {
                    path: api::decision_path(&hand.row.session_id),
                });
                self.in_hand = Some(hand);
            }
            Err(()) => self.failed(hand, Failure::InboxUnreachable),
        }
    }

    /// What the decision request came to at `now`.
    pub fn handle_decision(&mut self, answer: Answer<'_>, now: UnixMs) {
        self.observe(now);
        if !self.take_pending(|step| matches!(step, Step::FetchDecision { .. })) {
            return;
        }
        let Some(mut hand) = self.take_hand() else {
            return;
        };
        let failure = match answer {
            Answer::Ok(body) => match event::from_decision(body, &hand.row, hand.requested_at) {
                Ok(reconciled) if api::is_result_status(&reconciled.status) => {
                    // `handle_inbox` made sure this fits.
                    let cost = self.inject_cost();
                    if !self.spend(cost, false, 1) {
                        self.keep_gap(&hand);
                        return;
                    }
                    hand.injecting = Some(reconciled.status);
                    self.in_hand = Some(hand);
                    self.pending = Some(Step::Inject {
                        body: reconciled.body,
                    });
                    return;
                }
                // Back in progress since it was listed: nothing to deliver yet.
                Ok(_) => return,
                Err(_) => Failure::DecisionUnreadable,
            },
            Answer::TooLarge => Failure::DecisionTooLarge,
            Answer::Status {
                status: 429,
                retry_after,
            } => {
                // Didit's rate limit is the key's, not the session's: no try is counted.
                self.keep_gap(&hand);
                self.api_failed(ApiError::Unavailable {
                    status: Some(429),
                    retry_after_secs: retry_after
                        .and_then(|text| api::retry_after_secs(text, self.secs())),
                });
                return;
            }
            Answer::Status { status: 404, .. } => Failure::DecisionNotFound,
            Answer::Status { status, .. } if status == 408 || status >= 500 => {
                Failure::DecisionUnavailable {
                    status: Some(status),
                }
            }
            Answer::Status { status, .. } => Failure::DecisionRefused { status },
            Answer::Unreachable => Failure::DecisionUnavailable { status: None },
        };
        self.failed(hand, failure);
    }

    /// What came of the injection at `now`.
    pub fn handle_injected(&mut self, answer: Result<Injected, InjectFailure>, now: UnixMs) {
        self.observe(now);
        if !self.take_pending(|step| matches!(step, Step::Inject { .. })) {
            return;
        }
        let Some(mut hand) = self.take_hand() else {
            return;
        };
        let status = hand
            .injecting
            .take()
            .unwrap_or_else(|| hand.row.status.clone());
        match answer {
            Ok(Injected::Accepted) => {
                self.counts.events_injected += 1;
                self.remember_held(&hand, status);
            }
            Ok(Injected::Duplicate) => self.remember_held(&hand, status),
            Ok(Injected::Erased) => self.mark_erased(&hand),
            Err(InjectFailure::SettingsBroken) => {
                self.keep_gap(&hand);
                self.note_error(
                    "the delivery settings are broken; missing results wait until they are fixed"
                        .into(),
                );
                self.end(RunEnd::Held);
            }
            Err(InjectFailure::Refused) => self.failed(hand, Failure::EventRefused),
            Err(InjectFailure::InboxUnreachable) => self.failed(hand, Failure::InboxUnreachable),
        }
    }

    /// Whether the give-up alert was queued at `now` (`Err`: it was not, so the give-up waits
    /// for the next try, which alerts again).
    pub fn handle_alerted(&mut self, queued: Result<(), ()>, now: UnixMs) {
        self.observe(now);
        if !self.take_pending(|step| matches!(step, Step::Alert { .. })) {
            return;
        }
        let Some(mut hand) = self.take_hand() else {
            return;
        };
        let Some(set_aside) = hand.giving_up.take() else {
            return;
        };
        let set_aside = match queued {
            Ok(()) => {
                self.counts.gave_up += 1;
                set_aside
            }
            Err(()) => {
                self.note_error("an alert could not be queued; the gap is tried again".into());
                SetAside {
                    tries: set_aside.tries.saturating_sub(1),
                    retry_at: Some(self.secs()),
                    ..set_aside
                }
            }
        };
        self.remember(
            &hand,
            hand.row.status.clone(),
            hand.gap_since,
            Some(set_aside),
        );
        self.after_failure(set_aside.failure);
    }

    /// An operator erased the subject with this erasure key while the run was under way (the
    /// adapter has stored the erasure's own changes): nothing more about it is asked, fetched,
    /// injected or remembered.
    pub fn handle_erased(&mut self, key: &str) {
        self.erased.insert(key.into());
        for queue in [&mut self.rows, &mut self.retries] {
            queue.retain(|row| session_erasure_key(row.kind, &row.session_id) != key);
        }
        if let Some(hand) = self.in_hand.as_mut().filter(|hand| hand.key == key) {
            hand.erased = true;
            self.recalled.remove(&hand.row.session_id);
        }
    }

    /// The adapter could not read or write its own storage: the run ends (what was stored
    /// stays, and a remembered answer that was not is asked again), and the next run retries.
    pub fn handle_storage_failure(&mut self, error: String) {
        self.note_error(error);
        self.end(RunEnd::Storage);
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
