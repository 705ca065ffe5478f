//! Reconciliation with Didit's API ([`didit_edge_core::reconcile`]): one global Durable Object
//! that keeps the sweep's state, what it found of each session and which erased subjects to
//! leave alone, and does each step's IO.
//!
//! The cron trigger asks it to run (only when `DIDIT_API_KEY` is set: otherwise nothing is
//! called); a run that used up its budget continues from the object's alarm. Every decision
//! (what to list, what is a gap, when to set one aside, when to wait, what the event is) is
//! the core's. Every step's IO is bounded by the core's `STEP_TIMEOUT_SECS`, which is what lets
//! a run stop before its lease ends. An erasure that arrives while a run waits on a step is
//! handed to that run as soon as the step's answer is back.

use std::cell::RefCell;

use didit_edge_core::admin::{
    rfc3339, GapView, ReconciliationStatus, Reconciling, RunView, SettingsView, SweepView,
};
use didit_edge_core::alert::Alert;
use didit_edge_core::config::ReconcileConfig;
use didit_edge_core::identity::{Subject, SubjectKind};
use didit_edge_core::inbox::{Knowledge, Source};
use didit_edge_core::intake::Identified;
use didit_edge_core::limits::BodyBudget;
use didit_edge_core::receipt::Receipt;
use didit_edge_core::reconcile::api::{Answer, MAX_DECISION_BYTES};
use didit_edge_core::reconcile::memory::gap_reference;
use didit_edge_core::reconcile::{
    self, erasure, erasure_key, Change, Failure, InjectFailure, Injected, Seen, SetAside, Step,
    STEP_TIMEOUT_SECS,
};
use didit_edge_core::rejection::Rejection;
use didit_edge_core::time::{to_rfc3339, to_rfc3339_micros, UnixMs, UnixSecs};
use futures_util::future::LocalBoxFuture;
use futures_util::StreamExt;
use serde::{Deserialize, Serialize};
use worker::{
    console_error, console_log, durable_object, DurableObject, Env, Fetch, Headers, Method,
    Request, RequestInit, RequestRedirect, Response, Result, State,
};

use crate::claim::{Claim, Content};
use crate::clock::{alarm_at, now_ms, within};
use crate::inbox::KnowsRequest;
use crate::objects::{self, InboxCall, ReconcilerCall, GLOBAL};
use crate::origin::{fetch_within, Fetched};
use crate::rows::{self, Columns};
use crate::{alerts, faults, http, settings, stream};

/// The longest list page read (a hundred rows with their identity data is far less).
const MAX_PAGE_BYTES: usize = 4 * 1_048_576;
/// Set-aside gaps `GET /admin/reconciliation` lists (the given-up first, then by next try).
const LISTED_GAPS: i64 = 50;

const STEP_TIMEOUT_MS: u64 = STEP_TIMEOUT_SECS.unsigned_abs() * 1_000;

/// The schema as it stands, for an object that never stored anything.
const SCHEMA_CURRENT: &str = "
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE sweep_state (id INTEGER PRIMARY KEY CHECK (id = 1), state TEXT NOT NULL);
CREATE TABLE seen (
    session_id TEXT PRIMARY KEY, status TEXT NOT NULL, gap_since INTEGER,
    checked_at INTEGER NOT NULL, created_at INTEGER NOT NULL,
    tries INTEGER NOT NULL DEFAULT 0, failure TEXT, failure_status INTEGER, retry_at INTEGER
);
CREATE INDEX seen_by_creation ON seen (created_at);
CREATE INDEX seen_set_aside ON seen (tries) WHERE tries > 0;
CREATE TABLE erased (key TEXT PRIMARY KEY, at INTEGER NOT NULL);
";

/// The first release's schema (no-ops where it exists) and the changes since, in order;
/// `meta.schema_version` counts those applied.
///
/// 1. Set-aside gaps (their tries, failure and next try), erasure marks, and `meta`.
const SCHEMA_V1: &str = "
CREATE TABLE IF NOT EXISTS sweep_state (id INTEGER PRIMARY KEY CHECK (id = 1), state TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS seen (
    session_id TEXT PRIMARY KEY, status TEXT NOT NULL, gap_since INTEGER,
    checked_at INTEGER NOT NULL, created_at INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS seen_by_creation ON seen (created_at);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
";
const MIGRATIONS: &[&str] = &["
ALTER TABLE seen ADD COLUMN tries INTEGER NOT NULL DEFAULT 0;
ALTER TABLE seen ADD COLUMN failure TEXT;
ALTER TABLE seen ADD COLUMN failure_status INTEGER;
ALTER TABLE seen ADD COLUMN retry_at INTEGER;
CREATE INDEX IF NOT EXISTS seen_set_aside ON seen (tries) WHERE tries > 0;
CREATE TABLE IF NOT EXISTS erased (key TEXT PRIMARY KEY, at INTEGER NOT NULL);
"];

/// Creates the schema, or brings an older one up to date.
fn migrate(sql: &worker::SqlStorage) -> Result<()> {
    let existing = rows::first(
        &sql.exec(
            "SELECT COUNT(*) FROM sqlite_master WHERE type = 'table' AND name = 'seen'",
            None,
        )?,
        Columns::int,
    )?;
    let set_version = |version: usize| {
        sql.exec(
            "INSERT INTO meta (key, value) VALUES ('schema_version', ?) \
             ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            vec![version.to_string().into()],
        )
        .map(drop)
    };
    if existing.unwrap_or(0) == 0 {
        sql.exec(SCHEMA_CURRENT, None)?;
        return set_version(MIGRATIONS.len());
    }
    sql.exec(SCHEMA_V1, None)?;
    let applied = rows::first(
        &sql.exec(
            "SELECT CAST(value AS INTEGER) FROM meta WHERE key = 'schema_version'",
            None,
        )?,
        Columns::int,
    )?
    .unwrap_or(0);
    for (index, migration) in MIGRATIONS
        .iter()
        .enumerate()
        .skip(usize::try_from(applied).unwrap_or(0))
    {
        sql.exec(migration, None)?;
        set_version(index + 1)?;
    }
    Ok(())
}

/// The reconciler ([`GLOBAL`]).
#[durable_object]
pub struct Reconciler {
    state: State,
    env: Env,
    /// Erasure keys learned while a run waits on a step, for that run to hear of.
    erased_meanwhile: RefCell<Vec<String>>,
}

/// An operator's erasure, for the reconciler to forget (`ReconcilerCall::Forget`).
#[derive(Serialize, Deserialize)]
pub(crate) struct ForgetRequest {
    /// The subject's kind.
    pub subject_kind: String,
    /// Its id.
    pub subject_id: String,
}

/// What the reconciler forgot of an erased subject.
#[derive(Serialize, Deserialize)]
pub(crate) struct Forgotten {
    /// Sessions it remembered (0 or 1).
    pub sessions: usize,
}

/// What an API call returned, owned until the core reads it.
enum ApiResponse {
    Status {
        status: u16,
        body: String,
        retry_after: Option<String>,
    },
    TooLarge,
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
            Self::TooLarge => Answer::TooLarge,
            Self::Unreachable => Answer::Unreachable,
        }
    }
}

fn now() -> UnixMs {
    UnixMs(now_ms())
}

/// What [`Reconciler::recall`] found.
#[derive(Default)]
struct Recalled {
    seen: Vec<(String, Seen)>,
    marked: Vec<String>,
}

/// A `seen` row (after its `session_id`): what is remembered, or `None` for a row this
/// release cannot read, which is logged and left as stored (its session is asked about as
/// if unknown; nothing is guessed).
fn seen_of(row: &mut Columns) -> Result<Option<Seen>> {
    let (status, gap_since, checked_at) = (row.text()?, row.opt_int()?, row.int()?);
    let (tries, failure, failure_status, retry_at) =
        (row.int()?, row.opt_text()?, row.opt_int()?, row.opt_int()?);
    let set_aside = match (tries, failure) {
        (0, _) => None,
        (tries, code) => {
            let status = failure_status.and_then(|s| u16::try_from(s).ok());
            let Some(failure) = code
                .as_deref()
                .and_then(|code| Failure::from_stored(code, status))
            else {
                console_error!(
                    "reconciler: a remembered gap has a failure this release does not know ({}); it is left as stored",
                    code.as_deref().unwrap_or("none")
                );
                return Ok(None);
            };
            Some(SetAside {
                tries: u32::try_from(tries).unwrap_or(u32::MAX),
                failure,
                retry_at: retry_at.map(UnixSecs),
            })
        }
    };
    Ok(Some(Seen {
        status,
        gap_since: gap_since.map(UnixSecs),
        checked_at: UnixSecs(checked_at),
        set_aside,
    }))
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
        let sql = self.sql();
        match change {
            Change::Remember {
                session_id,
                created_at,
                seen,
            } => {
                let set_aside = seen.set_aside;
                sql.exec(
                    "INSERT INTO seen (session_id, status, gap_since, checked_at, created_at, tries, \
                     failure, failure_status, retry_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) \
                     ON CONFLICT (session_id) DO UPDATE SET status = excluded.status, \
                     gap_since = excluded.gap_since, checked_at = excluded.checked_at, \
                     created_at = excluded.created_at, tries = excluded.tries, \
                     failure = excluded.failure, failure_status = excluded.failure_status, \
                     retry_at = excluded.retry_at",
                    vec![
                        session_id.into(),
                        seen.status.into(),
                        seen.gap_since.map(|at| at.0).into(),
                        seen.checked_at.0.into(),
                        created_at.0.into(),
                        i64::from(set_aside.map_or(0, |s| s.tries)).into(),
                        set_aside.map(|s| s.failure.code()).into(),
                        set_aside
                            .and_then(|s| s.failure.status())
                            .map(i64::from)
                            .into(),
                        set_aside.and_then(|s| s.retry_at).map(|at| at.0).into(),
                    ],
                )?
            }
            Change::Forget { session_id } => sql.exec(
                "DELETE FROM seen WHERE session_id = ?",
                vec![session_id.into()],
            )?,
            Change::ForgetCreatedBefore(at) => {
                sql.exec("DELETE FROM seen WHERE created_at < ?", vec![at.0.into()])?
            }
            Change::MarkErased { key, at } => sql.exec(
                "INSERT INTO erased (key, at) VALUES (?, ?) \
                 ON CONFLICT (key) DO UPDATE SET at = MAX(at, excluded.at)",
                vec![key.into(), at.0.into()],
            )?,
            Change::ForgetErasedBefore(at) => {
                sql.exec("DELETE FROM erased WHERE at < ?", vec![at.0.into()])?
            }
        };
        Ok(())
    }

    /// What is remembered of these sessions, and which of these erasure keys are marked.
    fn recall(&self, session_ids: &[String], erasure_keys: &[String]) -> Result<Recalled> {
        let seen = self.select_in(
            "SELECT session_id, status, gap_since, checked_at, tries, failure, failure_status, \
             retry_at FROM seen WHERE session_id IN",
            session_ids,
            |row| Ok((row.text()?, seen_of(row)?)),
        )?;
        Ok(Recalled {
            seen: seen
                .into_iter()
                .filter_map(|(id, seen)| Some((id, seen?)))
                .collect(),
            marked: self.select_in("SELECT key FROM erased WHERE key IN", erasure_keys, |row| {
                row.text()
            })?,
        })
    }

    /// The rows `query` (ending in `IN`) selects for `keys`, read by `read`, in chunks: a page
    /// holds at most 100 sessions, and SQLite takes up to 100 bound values here.
    fn select_in<T>(
        &self,
        query: &str,
        keys: &[String],
        mut read: impl FnMut(&mut Columns) -> Result<T>,
    ) -> Result<Vec<T>> {
        let mut found = Vec::new();
        for chunk in keys.chunks(50) {
            let marks = vec!["?"; chunk.len()].join(", ");
            let bound: Vec<worker::SqlStorageValue> =
                chunk.iter().map(|key| key.as_str().into()).collect();
            let cursor = self.sql().exec(&format!("{query} ({marks})"), bound)?;
            found.extend(rows::all(&cursor, &mut read)?);
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

    /// Hands the run every erasure that arrived while it waited.
    fn hear_erasures(&self, run: &mut reconcile::Run) {
        for key in self.erased_meanwhile.borrow_mut().drain(..) {
            run.handle_erased(&key);
        }
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
        let mut run_settings = reconcile.settings;
        run_settings.lease_secs = faults::reconcile_lease_secs(&self.env, run_settings.lease_secs);
        run_settings.gap_retry = faults::reconcile_gap_retry(&self.env, run_settings.gap_retry);
        let mut run = match reconcile::begin(self.load()?, run_settings, now()) {
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
        self.erased_meanwhile.borrow_mut().clear();
        loop {
            let step = run.poll(now());
            if let Err(error) = self.store_progress(&mut run) {
                // Storage that cannot be written will not be written on the next step either.
                run.handle_storage_failure(error.to_string());
                break;
            }
            match step {
                Step::Done => break,
                Step::List { path } => {
                    let fetched = api_get(reconcile, &path, MAX_PAGE_BYTES).await;
                    self.hear_erasures(&mut run);
                    run.handle_page(fetched.answer(), now());
                }
                Step::Recall {
                    session_ids,
                    erasure_keys,
                } => match self.recall(&session_ids, &erasure_keys) {
                    Ok(recalled) => run.handle_recalled(recalled.seen, recalled.marked),
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
                    let asked = objects::ask::<Knowledge>(
                        &self.env,
                        InboxCall::BINDING,
                        &inbox,
                        InboxCall::Knows.path(),
                        &ask,
                    );
                    let known = within(STEP_TIMEOUT_MS, asked).await;
                    self.hear_erasures(&mut run);
                    run.handle_inbox(known.and_then(Result::ok).ok_or(()), now());
                }
                Step::FetchDecision { path } => {
                    let fetched = api_get(reconcile, &path, MAX_DECISION_BYTES).await;
                    self.hear_erasures(&mut run);
                    run.handle_decision(fetched.answer(), now());
                }
                Step::Inject { body } => {
                    let injected = within(STEP_TIMEOUT_MS, inject(&self.env, &body))
                        .await
                        .unwrap_or(Err(InjectFailure::InboxUnreachable));
                    self.hear_erasures(&mut run);
                    run.handle_injected(injected, now());
                }
                Step::Alert { alert } => {
                    let queued = within(STEP_TIMEOUT_MS, queue_alert(&self.env, alert))
                        .await
                        .unwrap_or(Err(()));
                    self.hear_erasures(&mut run);
                    run.handle_alerted(queued, now());
                }
            }
        }
        if let Err(error) = self.store_progress(&mut run) {
            console_error!("reconciliation could not store its last changes: {error}");
        }
        let (state, next) = run.finish(now());
        self.save(&state)?;
        self.wake_at(next).await?;
        let line = RunLine {
            event: "reconcile_run",
            run: state.last_run.as_ref().map(RunView::of),
            next_run_at: rfc3339(next),
        };
        let line = serde_json::to_string(&line)?;
        console_log!("{line}");
        Ok(line)
    }

    /// An operator erased a subject: its session is forgotten and marked to be left alone,
    /// and a run under way hears of it at its next step.
    async fn forget(&self, mut request: Request) -> Result<Response> {
        let ask: ForgetRequest = request.json().await?;
        let Some(kind) = SubjectKind::from_name(&ask.subject_kind) else {
            return http::rejection(&Rejection::InvalidSubject {
                reason: "unknown subject kind",
            });
        };
        let subject = Subject {
            kind,
            id: ask.subject_id.as_str().into(),
        };
        let mut forgotten = Forgotten { sessions: 0 };
        if let Some(changes) = erasure(&subject, now().secs()) {
            forgotten.sessions = usize::try_from(
                rows::first(
                    &self.sql().exec(
                        "SELECT COUNT(*) FROM seen WHERE session_id = ?",
                        vec![ask.subject_id.as_str().into()],
                    )?,
                    Columns::int,
                )?
                .unwrap_or(0),
            )
            .unwrap_or(0);
            for change in changes {
                self.apply(change)?;
            }
            self.erased_meanwhile
                .borrow_mut()
                .push(erasure_key(&subject));
        }
        http::json(200, serde_json::to_string(&forgotten)?)
    }

    /// Where reconciliation stands, for `GET /admin/reconciliation`.
    fn status(&self, reconcile: &ReconcileConfig) -> Result<ReconciliationStatus> {
        let state = self.load()?;
        let count = |query: &str| -> Result<i64> {
            Ok(rows::first(&self.sql().exec(query, None)?, Columns::int)?.unwrap_or(0))
        };
        let gaps = rows::all(
            &self.sql().exec(
                "SELECT session_id, status, tries, failure, failure_status, retry_at FROM seen \
                 WHERE tries > 0 ORDER BY retry_at IS NOT NULL, retry_at LIMIT ?",
                vec![LISTED_GAPS.into()],
            )?,
            |row| {
                let session_id = row.text()?;
                Ok(GapView {
                    gap: gap_reference(&session_id),
                    session_id,
                    status: row.text()?,
                    tries: row.int()?,
                    failure: row.opt_text()?.unwrap_or_default(),
                    http_status: row.opt_int()?,
                    next_try_at: row.opt_int()?.map(|at| rfc3339(UnixSecs(at))),
                })
            },
        )?;
        let settings = &reconcile.settings;
        Ok(ReconciliationStatus::On(Box::new(Reconciling {
            settings: SettingsView::of(settings),
            activated_at: state.switched_on().map(to_rfc3339_micros),
            checkpoint: state.checkpoint.map(rfc3339),
            sweep: state.sweep.as_ref().map(SweepView::of),
            last_run: state.last_run.as_ref().map(RunView::of),
            next_run_at: state
                .switched_on()
                .map(|_| rfc3339(state.next_run_at(settings))),
            api_failures_in_a_row: state.failures,
            sessions_remembered: count("SELECT COUNT(*) FROM seen")?,
            gaps_waiting: count("SELECT COUNT(*) FROM seen WHERE gap_since IS NOT NULL")?,
            gaps_set_aside: count("SELECT COUNT(*) FROM seen WHERE tries > 0")?,
            gaps_given_up: count("SELECT COUNT(*) FROM seen WHERE tries > 0 AND retry_at IS NULL")?,
            set_aside: gaps,
            erased_subjects: count("SELECT COUNT(*) FROM erased")?,
        })))
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
struct RunLine {
    event: &'static str,
    run: Option<RunView>,
    next_run_at: String,
}

/// `GET`s `path` under Didit's API base URL with the API key, reading at most `limit` bytes of
/// its body, all within the step's timeout. Redirects are not followed (the key would go
/// wherever they point).
async fn api_get(reconcile: &ReconcileConfig, path: &str, limit: usize) -> ApiResponse {
    let request = || -> Result<Request> {
        let headers = Headers::new();
        headers.set("x-api-key", &reconcile.api_key)?;
        headers.set("accept", "application/json")?;
        headers.set(
            "user-agent",
            concat!("didit-edge/", env!("CARGO_PKG_VERSION"), " reconciliation"),
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
    let started = now_ms();
    let timeout = u32::try_from(STEP_TIMEOUT_MS).unwrap_or(u32::MAX);
    let mut response = match fetch_within(timeout, Fetch::Request(request)).await {
        Fetched::Answered(response) => response,
        Fetched::Failed | Fetched::TimedOut => return ApiResponse::Unreachable,
    };
    let status = response.status_code();
    let retry_after = response.headers().get("retry-after").ok().flatten();
    let declared = response
        .headers()
        .get("content-length")
        .ok()
        .flatten()
        .and_then(|length| length.trim().parse::<usize>().ok());
    if (200..300).contains(&status) && declared.is_some_and(|length| length > limit) {
        return ApiResponse::TooLarge;
    }
    let left = STEP_TIMEOUT_MS.saturating_sub(u64::try_from(now_ms() - started).unwrap_or(0));
    match within(left, read_capped(&mut response, limit)).await {
        Some(Ok(Some(body))) => ApiResponse::Status {
            status,
            body,
            retry_after,
        },
        Some(Ok(None)) if (200..300).contains(&status) => ApiResponse::TooLarge,
        // An error body past the limit says nothing more than its status.
        Some(Ok(None)) => ApiResponse::Status {
            status,
            body: String::new(),
            retry_after,
        },
        Some(Err(())) | None => ApiResponse::Unreachable,
    }
}

/// A response's body as text, or `Ok(None)` once it passes `limit` bytes (read no further).
async fn read_capped(
    response: &mut Response,
    limit: usize,
) -> std::result::Result<Option<String>, ()> {
    let mut stream = response.stream().map_err(drop)?;
    let mut budget = BodyBudget::new(u64::try_from(limit).unwrap_or(u64::MAX));
    let mut body = Vec::new();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(drop)?;
        if budget.take(chunk.len()).is_err() {
            return Ok(None);
        }
        body.extend_from_slice(&chunk);
    }
    String::from_utf8(body)
        .map(Some)
        .or(Ok(Some(String::new())))
}

/// Queues a give-up alert.
async fn queue_alert(env: &Env, alert: Alert) -> std::result::Result<(), ()> {
    alerts::enqueue(env, &[alert]).await.map_err(|error| {
        console_error!("reconciliation could not queue an alert: {error}");
    })
}

/// Names, classifies and claims an event reconciliation wrote, and publishes it like a
/// webhook's. Logged without identity data.
async fn inject(env: &Env, body: &str) -> std::result::Result<Injected, InjectFailure> {
    let config = settings::config(env);
    let delivery = settings::delivery(&config).ok_or(InjectFailure::SettingsBroken)?;
    let now = now_ms().div_euclid(1000);
    let refused = |rejection: Rejection| {
        console_error!("reconciliation wrote an event the edge refuses: {rejection}");
        InjectFailure::Refused
    };
    let identified = Identified::from_api(body.as_bytes(), now).map_err(refused)?;
    let classified = identified
        .classify(&delivery.classify_policy())
        .map_err(refused)?;
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
        InjectFailure::InboxUnreachable
    })?;
    let (injected, receipt_name) = match &receipt {
        Receipt::Accepted { .. } => (Injected::Accepted, "accepted"),
        Receipt::Duplicate { .. } => (Injected::Duplicate, "duplicate"),
        Receipt::Erased => (Injected::Erased, "erased"),
    };
    let line = InjectedLine {
        event: "reconciled",
        event_id: identified.event_id.as_str(),
        subject_kind: identified.subject.kind.as_str(),
        status_code: classified.status_update.status_code.as_deref(),
        receipt: receipt_name,
    };
    if let Ok(line) = serde_json::to_string(&line) {
        console_log!("{line}");
    }
    if receipt.publishes_status(config.stream.on().is_some()) {
        stream::publish(env, &classified.status_update).await;
    }
    Ok(injected)
}

impl DurableObject for Reconciler {
    fn new(state: State, env: Env) -> Self {
        if let Err(error) = migrate(&state.storage().sql()) {
            console_error!("reconciler schema could not be brought up to date: {error}");
        }
        Self {
            state,
            env,
            erased_meanwhile: RefCell::new(Vec::new()),
        }
    }

    async fn fetch(&self, request: Request) -> Result<Response> {
        match ReconcilerCall::of_path(&request.path()) {
            Some(ReconcilerCall::Run) => http::json(200, self.run().await?),
            Some(ReconcilerCall::Forget) => self.forget(request).await,
            Some(ReconcilerCall::Status) => {
                let config = settings::config(&self.env);
                let status = match config.reconcile.on() {
                    Some(reconcile) => self.status(reconcile)?,
                    None => ReconciliationStatus::Off,
                };
                http::json(200, serde_json::to_string(&status)?)
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
pub(crate) async fn status(env: &Env) -> Result<ReconciliationStatus> {
    if settings::config(env).reconcile.on().is_none() {
        return Ok(ReconciliationStatus::Off);
    }
    objects::post(
        env,
        ReconcilerCall::BINDING,
        GLOBAL,
        ReconcilerCall::Status.path(),
        String::new(),
    )
    .await?
    .json()
    .await
}

/// Tells the reconciler an operator erased `subject` (when reconciliation is on): how many
/// sessions it forgot. Off, nothing is called; the subject's inbox keeps its own erasure
/// mark, which a later switch-on finds.
pub(crate) async fn forget(env: &Env, subject: &Subject<'_>) -> Result<Option<Forgotten>> {
    if settings::config(env).reconcile.on().is_none() {
        return Ok(None);
    }
    let ask = ForgetRequest {
        subject_kind: subject.kind.as_str().into(),
        subject_id: subject.id.to_string(),
    };
    objects::ask(
        env,
        ReconcilerCall::BINDING,
        GLOBAL,
        ReconcilerCall::Forget.path(),
        &ask,
    )
    .await
    .map(Some)
}
