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
//!     ─ erased, or older than the inboxes' memory ────────────▶ skip (never asked about)
//!     ─ remembered as known with this status, recently ───────▶ skip (no subrequest)
//!     ─ remembered as a gap younger than the settle time ─────▶ skip (its webhook may be late)
//!     ─ set aside, its next try not yet due ──────────────────▶ skip
//!     ─ else ask the subject's inbox: held ───────────────────▶ remember as known
//!                                     erased ─────────────────▶ mark erased, forget it
//!                                     missing, first seen ────▶ remember as a gap, since now
//!                                     missing, settled ───────▶ fetch the decision ─▶ inject
//! ```
//!
//! A try that fails for one session (its decision read answers 5xx, 4xx, too much or nothing
//! readable; its inbox cannot be reached) sets that session aside with its own next try
//! ([`memory::SetAside`]) and the sweep goes on, so one bad session never holds up the others;
//! after [`memory::MAX_TRIES`] tries it is given up on and an alert goes out. Only a failing list
//! page, a 429, or a 5xx or timeout from the API (which may be struggling) ends the run, and the
//! next waits a back-off counted from the answer that carried the failure.
//!
//! A sweep that ends sets the **checkpoint** to its start: every result reached before it, of
//! a session created within the lookback, has been compared. A gap is injected at the
//! earliest one settle time after a sweep first saw it, so a missed webhook is found within
//! about `interval + settle + interval` (plus the sweep's own length).
//!
//! Like [`crate::inbox::Inbox`], it is sans-IO: the adapter (one global Durable Object) keeps
//! [`State`] and what [`Change`]s say, starts a [`Run`] with [`begin`], and loops on
//! [`Run::poll`], doing each [`Step`]'s IO (each bounded by [`STEP_TIMEOUT_SECS`]) and handing
//! back what came of it with the time it came. A run is bounded by a request budget that counts
//! every subrequest a step causes (stream publishes and alerts included), at most
//! [`API_REQUESTS_PER_RUN`] requests to Didit's API and [`DECISIONS_PER_RUN`] decision reads,
//! and its lease: it stops while a step still fits before [`LEASE_SECS`] run out, so two runs
//! never overlap. What it leaves is continued by the next run.

pub mod api;
pub mod event;
pub mod memory;
mod run;

use alloc::string::String;
use alloc::vec::Vec;

use serde::{Deserialize, Serialize};

use crate::time::{UnixMicros, UnixMs, UnixSecs};
use api::SessionKind;
pub use memory::{erasure, erasure_key, Change, Failure, GapRetry, Seen, SetAside};
pub use run::{InjectFailure, Injected, Run, Step};

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
/// The fewest requests a run may be given: what one missing result costs at most (its page,
/// its inbox question, its decision, its claim, two stream publishes and an alert), so every
/// run can fill a gap.
pub const MIN_REQUESTS_PER_RUN: u64 = 7;
/// Requests to Didit's API one run makes at most. With runs at least [`CONTINUE_AFTER_SECS`]
/// apart that is at most 240 a minute: well within Didit's 600 GET requests a minute per key
/// (docs.didit.me/integration/rate-limiting).
pub const API_REQUESTS_PER_RUN: u32 = 60;
/// Decisions one run fetches at most: with runs at least [`CONTINUE_AFTER_SECS`] apart this
/// stays under Didit's 100 decision reads a minute.
pub const DECISIONS_PER_RUN: u32 = 15;
/// The least time between the end of a run and the start of the next.
pub const CONTINUE_AFTER_SECS: i64 = 15;
/// How long a run holds the lease: one that has not finished by then is taken for dead.
pub const LEASE_SECS: u64 = 300;
/// The longest one step's IO may take (the adapter's timeout for every request it makes for
/// a run): a run hands out no step that could still be under way when its lease ends.
pub const STEP_TIMEOUT_SECS: i64 = 15;
/// [`STEP_TIMEOUT_SECS`] in milliseconds, as the adapter's timers take it.
pub const STEP_TIMEOUT_MS: u64 = STEP_TIMEOUT_SECS.unsigned_abs() * 1_000;
/// How long before its lease ends a run has stored its last step and let go.
pub const LEASE_MARGIN_SECS: i64 = 10;
/// How much of the inboxes' memory (`DEDUP_TTL_SECS`) a session must still have ahead of it
/// to be asked about: an inbox that may have forgotten its events would answer "missing", and
/// the result would be delivered again. Covers clock differences between Didit and the edge.
pub const MEMORY_MARGIN_SECS: u64 = 3_600;
/// Errors a run report keeps (the first ones).
pub const MAX_REPORTED_ERRORS: usize = 5;
/// Inbox failures in a row (of different sessions) that end a run: the Durable Objects
/// themselves are likely failing, and the next run tries again.
pub const INBOX_FAILURES_PER_RUN: u32 = 3;
/// Keys one storage lookup binds at most (a page holds up to [`api::PAGE_SIZE`] sessions, and
/// the Durable Object's SQLite takes up to 100 bound values in one statement): a longer list
/// is looked up in chunks of this many.
pub const LOOKUP_CHUNK: usize = 50;
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
    /// Requests one run makes at most (every subrequest counted).
    pub requests_per_run: u32,
    /// How long an inbox remembers an event after receiving it (`DEDUP_TTL_SECS`): no
    /// session older than that (less [`MEMORY_MARGIN_SECS`]) is asked about.
    pub memory_secs: u64,
    /// Subrequests an injected event causes beyond its claim (the status stream's publishes).
    pub publishes_per_event: u32,
    /// Whether alerts are wanted (a gap given up on raises one; its queueing is a subrequest).
    pub alerts: bool,
    /// How long a run holds the lease ([`LEASE_SECS`]; the tests' build shortens it).
    pub lease_secs: u64,
    /// How a set-aside gap is tried again ([`GapRetry::default`]; the tests' build shortens
    /// it).
    pub gap_retry: GapRetry,
}

/// Everything reconciliation keeps between runs (stored by the adapter as one record).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct State {
    /// When reconciliation was switched on (its first run), to the microsecond, the precision
    /// of Didit's `created_at`: sessions created before are never reconciled, so switching it
    /// on does not replay history to the origins.
    #[serde(default)]
    pub switched_on: Option<UnixMicros>,
    /// The switch-on second, as releases before microsecond precision stored it; read once and
    /// carried over as the end of that second (so nothing created before is ever fetched).
    #[serde(default, skip_serializing)]
    activated_at: Option<UnixSecs>,
    /// Inboxes may have forgotten what they received before this: the latest of every run's
    /// `now - DEDUP_TTL_SECS`. A TTL that grows does not bring back what a shorter one let
    /// go, so sessions older than this are never asked about.
    #[serde(default)]
    pub forgotten_before: Option<UnixSecs>,
    /// The start of the last finished sweep.
    pub checkpoint: Option<UnixSecs>,
    /// The sweep under way.
    pub sweep: Option<Sweep>,
    /// Runs in a row that Didit's API failed.
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
    /// Requests made (every subrequest).
    pub requests: u64,
    /// Gaps whose try failed and that wait for their own next try.
    #[serde(default)]
    pub set_aside: u64,
    /// Gaps given up on (each alerted).
    #[serde(default)]
    pub gave_up: u64,
    /// Sessions left alone because the inboxes may have forgotten them.
    #[serde(default)]
    pub beyond_memory: u64,
}

/// Why a run ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RunEnd {
    /// The sweep finished; the checkpoint moved.
    SweepDone,
    /// A budget (requests, API requests, decisions, or the lease's time) ran out; the next run
    /// continues.
    BudgetUsed,
    /// Didit's API failed (the report's errors say how); the next run waits
    /// ([`State::wait_until`]).
    Api,
    /// Inboxes failed several times in a row; the next run retries.
    Inbox,
    /// The delivery settings are broken, so no event can be classified: gaps wait, with no
    /// try counted, until they are fixed.
    Held,
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
    /// When reconciliation was switched on, if it was.
    pub fn switched_on(&self) -> Option<UnixMicros> {
        self.switched_on.or_else(|| {
            self.activated_at
                .map(|secs| UnixMicros(secs.micros().0.saturating_add(999_999)))
        })
    }

    /// When the next run is due: never sooner than [`CONTINUE_AFTER_SECS`] after the last,
    /// a sweep under way at that pace, a new sweep an interval after the last one started.
    pub fn next_run_at(&self, settings: &Settings) -> UnixSecs {
        if let Some(until) = self.wait_until {
            return until;
        }
        let paced = self
            .last_run
            .as_ref()
            .map(|run| UnixSecs(run.finished_at.0.saturating_add(CONTINUE_AFTER_SECS)))
            .unwrap_or_default();
        let due = match (&self.sweep, self.checkpoint) {
            (Some(_), _) => paced,
            (None, Some(checkpoint)) => after(checkpoint, settings.interval_secs),
            (None, None) => self.switched_on().map(UnixMicros::secs).unwrap_or_default(),
        };
        due.max(paced)
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
    /// The next run is not due until then.
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

impl State {
    /// The oldest creation time a session may have at `now` and still have everything it
    /// caused remembered by its inbox (less [`MEMORY_MARGIN_SECS`]).
    pub fn oldest_remembered(&self, settings: &Settings, now: UnixSecs) -> UnixSecs {
        let forgotten_before =
            before(now, settings.memory_secs).max(self.forgotten_before.unwrap_or_default());
        after(forgotten_before, MEMORY_MARGIN_SECS)
    }
}

/// The oldest creation time a session may have and still be asked about at `now`: within the
/// lookback, and young enough that every inbox still remembers what it received of it.
fn oldest_asked(state: &State, settings: &Settings, now: UnixSecs) -> UnixSecs {
    before(now, settings.lookback_secs).max(state.oldest_remembered(settings, now))
}

/// Starts a run at `now`, or says why not and when to try again.
pub fn begin(mut state: State, settings: Settings, now: UnixMs) -> Result<Run, NotNow> {
    let secs = now.secs();
    if let Some(until) = state.lease_until.filter(|until| *until > secs) {
        return Err(NotNow::Busy(until));
    }
    if let Some(until) = state.wait_until.filter(|until| *until > secs) {
        return Err(NotNow::Waiting(until));
    }
    state.wait_until = None;
    let forgotten_before = before(secs, settings.memory_secs);
    state.forgotten_before = Some(
        state
            .forgotten_before
            .map_or(forgotten_before, |at| at.max(forgotten_before)),
    );
    let switched_on = state.switched_on().unwrap_or(now.micros());
    state.switched_on = Some(switched_on);
    state.activated_at = None;
    let due = state.next_run_at(&settings);
    if due > secs {
        return Err(NotNow::Idle(due));
    }
    if state.sweep.is_none() {
        state.sweep = Some(Sweep {
            started_at: secs,
            from: oldest_asked(&state, &settings, secs).max(switched_on.secs()),
            kind: SessionKind::User,
            offset: 0,
        });
    }
    state.lease_until = Some(after(secs, settings.lease_secs));
    Ok(Run::new(state, settings, now))
}

#[cfg(test)]
mod tests;
