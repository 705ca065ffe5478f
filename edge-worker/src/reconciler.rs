//! Reconciliation with Didit's API ([`didit_edge_core::reconcile`]): one global Durable Object
//! that keeps the sweep's state and what it found of each session, and does each step's IO.
//!
//! The cron trigger asks it to run (only when `DIDIT_API_KEY` is set: otherwise nothing is
//! called); a run that used up its budget continues from the object's alarm. Every decision
//! (what to list, what is a gap, when to wait, what the event is) is the core's.

use didit_edge_core::config::ReconcileConfig;
use didit_edge_core::inbox::Source;
use didit_edge_core::intake::Identified;
use didit_edge_core::reconcile::api::Answer;
use didit_edge_core::reconcile::{self, Change, RunEnd, RunReport, Seen, Step};
use didit_edge_core::rejection::{Receipt, Rejection};
use didit_edge_core::time::{to_rfc3339, UnixSecs};
use futures_util::future::LocalBoxFuture;
use serde::Serialize;
use worker::{
    console_error, console_log, durable_object, DurableObject, Env, Fetch, Headers, Method,
    Request, RequestInit, RequestRedirect, Response, Result, State,
};

use crate::claim::{Claim, Content};
use crate::clock::{alarm_at, now_secs};
use crate::inbox::KnowsRequest;
use crate::objects::{self, InboxCall, ReconcilerCall, GLOBAL};
use crate::origin::{fetch_within, Fetched};
use crate::rows::{self, Columns};
use crate::{http, settings, stream};

/// `GET /admin/reconciliation`'s body while `DIDIT_API_KEY` is unset.
const OFF: &str = r#"{"enabled":false}"#;

/// How long Didit's API has to answer one request.
const API_TIMEOUT_MS: u32 = 15_000;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS sweep_state (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    state TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS seen (
    session_id TEXT PRIMARY KEY,
    status TEXT NOT NULL,
    gap_since INTEGER,
    checked_at INTEGER NOT NULL,
    created_at INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS seen_by_creation ON seen (created_at);
";

/// The reconciler ([`GLOBAL`]).
#[durable_object]
pub struct Reconciler {
    state: State,
    env: Env,
}

/// What an API call returned, owned until the core reads it.
enum ApiResponse {
    Status {
        status: u16,
        body: String,
        retry_after: Option<String>,
    },
    Unreachable,
}

impl ApiResponse {
    fn answer(&self) -> Answer<'_> {
        match self {
            Self::Status { status, body, .. } if (200..300).contains(status) => Answer::Ok(body),
            Self::Status {
                status,
                retry_after,
                ..
            } => Answer::Status {
                status: *status,
                retry_after: retry_after.as_deref(),
            },
            Self::Unreachable => Answer::Unreachable,
        }
    }
}

impl Reconciler {
    fn sql(&self) -> worker::SqlStorage {
        self.state.storage().sql()
    }

    fn load(&self) -> Result<reconcile::State> {
        let stored = rows::first(
            &self
                .sql()
                .exec("SELECT state FROM sweep_state WHERE id = 1", None)?,
            Columns::text,
        )?;
        match stored {
            Some(text) => Ok(serde_json::from_str(&text)?),
            None => Ok(reconcile::State::default()),
        }
    }

    fn save(&self, state: &reconcile::State) -> Result<()> {
        self.sql().exec(
            "INSERT INTO sweep_state (id, state) VALUES (1, ?) \
             ON CONFLICT (id) DO UPDATE SET state = excluded.state",
            vec![serde_json::to_string(state)?.into()],
        )?;
        Ok(())
    }

    fn apply(&self, change: Change) -> Result<()> {
        match change {
            Change::Remember {
                session_id,
                created_at,
                seen,
            } => self.sql().exec(
                "INSERT INTO seen (session_id, status, gap_since, checked_at, created_at) \
                 VALUES (?, ?, ?, ?, ?) \
                 ON CONFLICT (session_id) DO UPDATE SET status = excluded.status, \
                 gap_since = excluded.gap_since, checked_at = excluded.checked_at, \
                 created_at = excluded.created_at",
                vec![
                    session_id.into(),
                    seen.status.into(),
                    seen.gap_since.map(|at| at.0).into(),
                    seen.checked_at.0.into(),
                    created_at.0.into(),
                ],
            )?,
            Change::ForgetCreatedBefore(at) => self
                .sql()
                .exec("DELETE FROM seen WHERE created_at < ?", vec![at.0.into()])?,
        };
        Ok(())
    }

    fn recall(&self, session_ids: &[String]) -> Result<Vec<(String, Seen)>> {
        let mut found = Vec::new();
        // One page holds at most 100 sessions; SQLite takes up to 100 bound values here.
        for chunk in session_ids.chunks(50) {
            let marks = vec!["?"; chunk.len()].join(", ");
            let query = format!(
                "SELECT session_id, status, gap_since, checked_at FROM seen \
                 WHERE session_id IN ({marks})"
            );
            let bound: Vec<worker::SqlStorageValue> =
                chunk.iter().map(|id| id.as_str().into()).collect();
            found.extend(rows::all(&self.sql().exec(&query, bound)?, |row| {
                Ok((
                    row.text()?,
                    Seen {
                        status: row.text()?,
                        gap_since: row.opt_int()?.map(UnixSecs),
                        checked_at: UnixSecs(row.int()?),
                    },
                ))
            })?);
        }
        Ok(found)
    }

    /// Writes the run's changes and its state (progress and lease), with no `.await` between.
    fn store_progress(&self, run: &mut reconcile::Run) -> Result<()> {
        let changes: Vec<Change> = run.drain_changes().collect();
        for change in changes {
            self.apply(change)?;
        }
        self.save(run.state())
    }

    /// Makes sure an alarm comes by `at`.
    async fn wake_at(&self, at: UnixSecs) -> Result<()> {
        let storage = self.state.storage();
        let at_ms = at.0.saturating_mul(1000);
        if storage
            .get_alarm()
            .await?
            .is_none_or(|current| current > at_ms)
        {
            storage.set_alarm(alarm_at(at_ms)).await?;
        }
        Ok(())
    }

    /// [`Self::run_once`], boxed: the cron's call and the alarm share one copy of the worker's
    /// largest state machine instead of each inlining its own.
    fn run(&self) -> LocalBoxFuture<'_, Result<String>> {
        Box::pin(self.run_once())
    }

    /// One run, if one is due: its report (or why none ran).
    async fn run_once(&self) -> Result<String> {
        let config = settings::config(&self.env);
        let Some(reconcile) = config.reconcile.on() else {
            return Ok(r#"{"ran":false,"reason":"off"}"#.into());
        };
        let started = UnixSecs(now_secs());
        let mut run = match reconcile::begin(self.load()?, reconcile.settings, started) {
            Ok(run) => run,
            Err(not_now) => {
                self.wake_at(not_now.until()).await?;
                return Ok(format!(
                    r#"{{"ran":false,"until":"{}"}}"#,
                    to_rfc3339(not_now.until().0)
                ));
            }
        };
        // The lease is stored before the first await: no other run can start beside this one.
        self.save(run.state())?;
        loop {
            let step = run.poll();
            if let Err(error) = self.store_progress(&mut run) {
                // Storage that cannot be written will not be written on the next step either.
                run.handle_storage_failure(error.to_string());
                break;
            }
            match step {
                Step::Done => break,
                Step::List { path } => {
                    let fetched = api_get(reconcile, &path).await;
                    run.handle_page(fetched.answer());
                }
                Step::Recall { session_ids } => match self.recall(&session_ids) {
                    Ok(found) => run.handle_recalled(found),
                    Err(error) => run.handle_storage_failure(error.to_string()),
                },
                Step::AskInbox {
                    inbox,
                    webhook_type,
                    status,
                } => {
                    let ask = KnowsRequest {
                        webhook_type: webhook_type.into(),
                        status,
                    };
                    let known: Result<bool> = objects::ask(
                        &self.env,
                        InboxCall::BINDING,
                        &inbox,
                        InboxCall::Knows.path(),
                        &ask,
                    )
                    .await;
                    run.handle_inbox(
                        known.map_err(|_| String::from("an inbox could not be asked")),
                    );
                }
                Step::FetchDecision { path } => {
                    let fetched = api_get(reconcile, &path).await;
                    run.handle_decision(fetched.answer());
                }
                Step::Inject { body } => {
                    let injected = inject(&self.env, &body).await;
                    run.handle_injected(injected);
                }
            }
        }
        if let Err(error) = self.store_progress(&mut run) {
            console_error!("reconciliation could not store its last changes: {error}");
        }
        let (state, next) = run.finish(UnixSecs(now_secs()));
        self.save(&state)?;
        self.wake_at(next).await?;
        let line = RunLine {
            event: "reconcile_run",
            run: state.last_run.as_ref().map(ReportView::of),
            next_run_at: Moment(next),
        };
        let line = serde_json::to_string(&line)?;
        console_log!("{line}");
        Ok(line)
    }

    /// Where reconciliation stands, for `GET /admin/reconciliation`.
    fn status(&self, reconcile: &ReconcileConfig) -> Result<String> {
        let state = self.load()?;
        let count = |query: &str| -> Result<i64> {
            Ok(rows::first(&self.sql().exec(query, None)?, Columns::int)?.unwrap_or(0))
        };
        let settings = &reconcile.settings;
        let view = StatusView {
            enabled: true,
            settings: SettingsView {
                lookback_secs: settings.lookback_secs,
                interval_secs: settings.interval_secs,
                settle_secs: settings.settle_secs,
                recheck_secs: settings.recheck_secs,
                requests_per_run: settings.requests_per_run,
            },
            activated_at: state.activated_at.map(Moment),
            checkpoint: state.checkpoint.map(Moment),
            sweep: state.sweep.as_ref().map(|sweep| SweepView {
                started_at: Moment(sweep.started_at),
                date_from: Moment(sweep.from),
                session_kind: sweep.kind.as_str(),
                offset: sweep.offset,
            }),
            last_run: state.last_run.as_ref().map(ReportView::of),
            next_run_at: state
                .activated_at
                .map(|_| Moment(state.next_run_at(settings))),
            api_failures_in_a_row: state.failures,
            sessions_remembered: count("SELECT COUNT(*) FROM seen")?,
            gaps_waiting: count("SELECT COUNT(*) FROM seen WHERE gap_since IS NOT NULL")?,
        };
        Ok(serde_json::to_string(&view)?)
    }
}

/// A moment as the admin API and the log show it: RFC 3339.
struct Moment(UnixSecs);

impl Serialize for Moment {
    fn serialize<S: serde::Serializer>(
        &self,
        serializer: S,
    ) -> std::result::Result<S::Ok, S::Error> {
        serializer.serialize_str(&to_rfc3339(self.0 .0))
    }
}

/// `GET /admin/reconciliation`'s body.
#[derive(Serialize)]
struct StatusView<'a> {
    enabled: bool,
    settings: SettingsView,
    activated_at: Option<Moment>,
    checkpoint: Option<Moment>,
    sweep: Option<SweepView>,
    last_run: Option<ReportView<'a>>,
    next_run_at: Option<Moment>,
    api_failures_in_a_row: u32,
    sessions_remembered: i64,
    gaps_waiting: i64,
}

#[derive(Serialize)]
struct SettingsView {
    lookback_secs: u64,
    interval_secs: u64,
    settle_secs: u64,
    recheck_secs: u64,
    requests_per_run: u32,
}

#[derive(Serialize)]
struct SweepView {
    started_at: Moment,
    date_from: Moment,
    session_kind: &'static str,
    offset: u64,
}

/// A run as the admin API and the `reconcile_run` log line show it.
#[derive(Serialize)]
struct ReportView<'a> {
    started_at: Moment,
    finished_at: Moment,
    pages: u64,
    sessions_checked: u64,
    gaps_found: u64,
    events_injected: u64,
    unreadable_rows: u64,
    requests: u64,
    ended: RunEnd,
    errors: &'a [String],
}

impl<'a> ReportView<'a> {
    fn of(report: &'a RunReport) -> Self {
        let counts = &report.counts;
        Self {
            started_at: Moment(report.started_at),
            finished_at: Moment(report.finished_at),
            pages: counts.pages,
            sessions_checked: counts.sessions_checked,
            gaps_found: counts.gaps_found,
            events_injected: counts.events_injected,
            unreadable_rows: counts.unreadable_rows,
            requests: counts.requests,
            ended: report.ended,
            errors: &report.errors,
        }
    }
}

/// The `reconciled` log line: one per injected event, without identity data.
#[derive(Serialize)]
struct InjectedLine<'a> {
    event: &'static str,
    event_id: &'a str,
    subject_kind: &'static str,
    status_code: Option<&'a str>,
    receipt: &'static str,
}

/// The `reconcile_run` log line.
#[derive(Serialize)]
struct RunLine<'a> {
    event: &'static str,
    run: Option<ReportView<'a>>,
    next_run_at: Moment,
}

/// `GET`s `path` under Didit's API base URL with the API key. Redirects are not followed (the
/// key would go wherever they point).
async fn api_get(reconcile: &ReconcileConfig, path: &str) -> ApiResponse {
    let request = || -> Result<Request> {
        let headers = Headers::new();
        headers.set("x-api-key", &reconcile.api_key)?;
        headers.set("accept", "application/json")?;
        headers.set(
            "user-agent",
            concat!("didit-edge/", env!("CARGO_PKG_VERSION")),
        )?;
        let mut init = RequestInit::new();
        init.with_method(Method::Get)
            .with_headers(headers)
            .with_redirect(RequestRedirect::Manual);
        Request::new_with_init(&format!("{}{path}", reconcile.base_url), &init)
    };
    let Ok(request) = request() else {
        return ApiResponse::Unreachable;
    };
    match fetch_within(API_TIMEOUT_MS, Fetch::Request(request)).await {
        Fetched::Answered(mut response) => {
            let retry_after = response.headers().get("retry-after").ok().flatten();
            match response.text().await {
                Ok(body) => ApiResponse::Status {
                    status: response.status_code(),
                    body,
                    retry_after,
                },
                Err(_) => ApiResponse::Unreachable,
            }
        }
        Fetched::Failed | Fetched::TimedOut => ApiResponse::Unreachable,
    }
}

/// Names, classifies and claims an event reconciliation wrote: whether its inbox took it
/// (`false`: it held the transition already). Logged without identity data.
async fn inject(env: &Env, body: &str) -> std::result::Result<bool, String> {
    let config = settings::config(env);
    let delivery = settings::delivery(&config).ok_or_else(|| {
        String::from("the delivery settings are broken; the gap is injected once they are fixed")
    })?;
    let now = now_secs();
    let describe = |rejection: Rejection| format!("the reconciled event was refused: {rejection}");
    let identified = Identified::from_api(body.as_bytes(), now).map_err(describe)?;
    let classified = identified.classify(&delivery.policy()).map_err(describe)?;
    let inbox = identified.inbox();
    let content = Content::Classified {
        risk_level: classified.risk_level,
        consumers: classified.consumers.clone(),
        cloud_event: &classified.cloud_event,
    };
    let claim = Claim::new(&identified, &inbox, content, Source::Api);
    let receipt = claim.send(env).await.map_err(|error| {
        console_error!(
            "the {} inbox could not store reconciled {}: {error}",
            identified.subject.kind.as_str(),
            identified.event_id
        );
        String::from("an inbox could not store a reconciled event")
    })?;
    let accepted = matches!(receipt, Receipt::Accepted { .. });
    let line = InjectedLine {
        event: "reconciled",
        event_id: identified.event_id.as_str(),
        subject_kind: identified.subject.kind.as_str(),
        status_code: classified.status_update.status_code.as_deref(),
        receipt: if accepted { "accepted" } else { "duplicate" },
    };
    if let Ok(line) = serde_json::to_string(&line) {
        console_log!("{line}");
    }
    if accepted && config.stream.on().is_some() {
        stream::publish(env, &classified.status_update).await;
    }
    Ok(accepted)
}

impl DurableObject for Reconciler {
    fn new(state: State, env: Env) -> Self {
        if let Err(error) = state.storage().sql().exec(SCHEMA, None) {
            console_error!("reconciler schema could not be created: {error}");
        }
        Self { state, env }
    }

    async fn fetch(&self, request: Request) -> Result<Response> {
        match ReconcilerCall::of_path(&request.path()) {
            Some(ReconcilerCall::Run) => http::json(200, self.run().await?),
            Some(ReconcilerCall::Status) => {
                let config = settings::config(&self.env);
                match config.reconcile.on() {
                    Some(reconcile) => http::json(200, self.status(reconcile)?),
                    None => http::json(200, OFF.into()),
                }
            }
            None => http::rejection(&Rejection::NotFound),
        }
    }

    async fn alarm(&self) -> Result<Response> {
        if let Err(error) = self.run().await {
            console_error!("reconciliation run failed: {error}");
        }
        Response::ok("done")
    }
}

/// The cron trigger's part: ask the reconciler to run, when reconciliation is on. With
/// `DIDIT_API_KEY` unset nothing is called.
pub(crate) async fn tick(env: &Env) {
    if settings::config(env).reconcile.on().is_none() {
        return;
    }
    let answer = objects::post(
        env,
        ReconcilerCall::BINDING,
        GLOBAL,
        ReconcilerCall::Run.path(),
        String::new(),
    )
    .await;
    if let Err(error) = answer {
        console_error!("the reconciler could not be reached: {error}");
    }
}

/// `GET /admin/reconciliation`'s body: off (no object is called), or the reconciler's status.
pub(crate) async fn status(env: &Env) -> Result<String> {
    if settings::config(env).reconcile.on().is_none() {
        return Ok(OFF.into());
    }
    objects::post(
        env,
        ReconcilerCall::BINDING,
        GLOBAL,
        ReconcilerCall::Status.path(),
        String::new(),
    )
    .await?
    .text()
    .await
}
