//! Origin health shared across the edge: one Durable Object holds every origin's circuit
//! breaker (the state machine is the core's), inboxes report each outcome to it and read its
//! snapshot through a short per-isolate cache, so delivery pays no round trip per event to
//! decide where to go.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::rc::Rc;

use didit_edge_core::alert::breaker_alert;
use didit_edge_core::budget::SubrequestBudget;
use didit_edge_core::health::{Breaker, BreakerPolicy, BreakerState};
use didit_edge_core::rejection::Rejection;
use serde::{Deserialize, Serialize};
use worker::{durable_object, DurableObject, Env, Request, Response, Result, State};

use crate::clock::now_ms;
use crate::objects::{self, HealthCall, GLOBAL};
use crate::rows::{self, Columns};
use crate::{alerts, http};

/// How long a snapshot is reused inside one isolate.
const SNAPSHOT_CACHE_MS: i64 = 2_000;
/// Every origin's breaker state, by origin name.
pub(crate) type Snapshot = BTreeMap<String, BreakerState>;

/// One outcome, reported by an inbox.
#[derive(Serialize, Deserialize)]
struct Report {
    origin: String,
    up: bool,
    retry_after_ms: Option<u64>,
    at_ms: i64,
}

/// Every origin's circuit breaker, shared by all inboxes and the cron probe.
#[durable_object]
pub struct Health {
    state: State,
    env: Env,
}

impl Health {
    fn breaker(&self, origin: &str) -> Result<Breaker> {
        let stored = rows::first(
            &self.state.storage().sql().exec(
                "SELECT breaker FROM breakers WHERE origin = ?",
                vec![origin.into()],
            )?,
            Columns::text,
        )?;
        Ok(stored
            .and_then(|breaker| serde_json::from_str(&breaker).ok())
            .unwrap_or_else(|| Breaker::new(BreakerPolicy::default())))
    }

    fn snapshot(&self) -> Result<Snapshot> {
        let stored = rows::all(
            &self
                .state
                .storage()
                .sql()
                .exec("SELECT origin, breaker FROM breakers", None)?,
            |row| Ok((row.text()?, row.text()?)),
        )?;
        Ok(stored
            .into_iter()
            .filter_map(|(origin, breaker)| {
                serde_json::from_str::<Breaker>(&breaker)
                    .ok()
                    .map(|b| (origin, b.state()))
            })
            .collect())
    }

    /// Records an outcome. A change of the breaker worth an alert is queued first: if that
    /// fails, nothing is recorded and the next outcome reports the change again.
    async fn record(&self, report: &Report) -> Result<()> {
        let mut breaker = self.breaker(&report.origin)?;
        let before = breaker.state();
        breaker.report(report.up, report.retry_after_ms, report.at_ms);
        if let Some(alert) = breaker_alert(&report.origin, before, breaker.state(), report.at_ms) {
            alerts::enqueue(&self.env, &[alert]).await?;
            // Other reports may have come in while this one waited: apply it to what they left.
            breaker = self.breaker(&report.origin)?;
            breaker.report(report.up, report.retry_after_ms, report.at_ms);
        }
        self.state.storage().sql().exec(
            "INSERT INTO breakers (origin, breaker) VALUES (?, ?) ON CONFLICT(origin) DO UPDATE SET breaker = excluded.breaker",
            vec![report.origin.as_str().into(), serde_json::to_string(&breaker)?.into()],
        )?;
        Ok(())
    }
}

impl DurableObject for Health {
    fn new(state: State, env: Env) -> Self {
        if let Err(error) = state.storage().sql().exec(
            "CREATE TABLE IF NOT EXISTS breakers (origin TEXT PRIMARY KEY, breaker TEXT NOT NULL)",
            None,
        ) {
            worker::console_error!("health schema could not be created: {error}");
        }
        Self { state, env }
    }

    async fn fetch(&self, mut request: Request) -> Result<Response> {
        match HealthCall::of_path(&request.path()) {
            Some(HealthCall::Report) => {
                let report: Report = request.json().await?;
                self.record(&report).await?;
                http::json(200, "{}".into())
            }
            Some(HealthCall::Snapshot) => {
                http::json(200, serde_json::to_string(&self.snapshot()?)?)
            }
            None => http::rejection(&Rejection::NotFound),
        }
    }
}

thread_local! {
    static CACHE: RefCell<Option<(i64, Rc<Snapshot>)>> = const { RefCell::new(None) };
}

async fn call(env: &Env, call: HealthCall, body: String) -> Result<Response> {
    objects::post(env, HealthCall::BINDING, GLOBAL, call.path(), body).await
}

/// The current snapshot, straight from the object.
pub(crate) async fn fresh_snapshot(env: &Env) -> Result<Snapshot> {
    let snapshot: Snapshot = call(env, HealthCall::Snapshot, String::new())
        .await?
        .json()
        .await?;
    CACHE.with(|cache| *cache.borrow_mut() = Some((now_ms(), Rc::new(snapshot.clone()))));
    Ok(snapshot)
}

/// A snapshot at most [`SNAPSHOT_CACHE_MS`] old; fetching it takes one subrequest from
/// `budget`. Health only orders origins: when it cannot be read (or the budget is spent),
/// every origin counts as available and delivery goes on.
pub(crate) async fn snapshot(env: &Env, budget: &mut SubrequestBudget) -> Rc<Snapshot> {
    let cached = CACHE.with(|cache| cache.borrow().clone());
    if let Some((at, snapshot)) = &cached {
        if now_ms() - at < SNAPSHOT_CACHE_MS {
            return snapshot.clone();
        }
    }
    if !budget.take(1) {
        return cached.map(|(_, snapshot)| snapshot).unwrap_or_default();
    }
    match fresh_snapshot(env).await {
        Ok(snapshot) => Rc::new(snapshot),
        Err(error) => {
            worker::console_error!("origin health unavailable, trying every origin: {error}");
            Rc::new(Snapshot::new())
        }
    }
}

/// Reports one outcome at `at_ms`; a failure to report is logged and never fails the delivery.
/// The isolate's cached snapshot takes the same step the shared breaker takes, so the next
/// attempt here sees it without asking again.
pub(crate) async fn report(
    env: &Env,
    origin: &str,
    up: bool,
    retry_after_ms: Option<u64>,
    at_ms: i64,
) {
    let report = Report {
        origin: origin.into(),
        up,
        retry_after_ms,
        at_ms,
    };
    let sent = match serde_json::to_string(&report) {
        Ok(body) => call(env, HealthCall::Report, body).await.map(|_| ()),
        Err(error) => Err(error.into()),
    };
    if let Err(error) = sent {
        worker::console_error!("could not report health of {origin}: {error}");
    }
    CACHE.with(|cache| {
        if let Some((_, snapshot)) = cache.borrow_mut().as_mut() {
            let closed = BreakerState::Closed {
                consecutive_failures: 0,
            };
            let state = snapshot.get(origin).copied().unwrap_or(closed);
            let mut breaker = Breaker::with_state(BreakerPolicy::default(), state);
            breaker.report(up, retry_after_ms, at_ms);
            Rc::make_mut(snapshot).insert(origin.into(), breaker.state());
        }
    });
}
