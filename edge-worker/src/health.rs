//! Origin health shared across the edge: one Durable Object holds every origin's circuit
//! breaker (the state machine is the core's), inboxes report each outcome to it and read its
//! snapshot through a short per-isolate cache, so delivery pays no round trip per event to
//! decide where to go. What is recorded, what is alerted, when the cache is fresh and what
//! happens when health cannot be read are the core's ([`health_record::Recording`],
//! [`SnapshotCache`]); this file reads, writes and fetches.

use std::cell::RefCell;
use std::rc::Rc;

use didit_edge_core::budget::SubrequestBudget;
use didit_edge_core::health::{Lookup, Report, Restored, SnapshotCache};
use didit_edge_core::health_record::{self, Recording};
use didit_edge_core::time::UnixMs;
use worker::{console_error, durable_object, DurableObject, Env, Request, Response, Result, State};

use crate::clock::now_ms;
use crate::objects::{self, HealthCall, GLOBAL};
use crate::rows::{self, Columns};
use crate::{alerts, http};

/// One row per origin: its breaker, as the core writes it.
const SCHEMA: &str =
    "CREATE TABLE IF NOT EXISTS breakers (origin TEXT PRIMARY KEY, breaker TEXT NOT NULL)";

/// Every origin's breaker state, by origin name.
pub(crate) type Snapshot = didit_edge_core::health::Snapshot;

/// Every origin's circuit breaker, shared by all inboxes and the cron probe.
// `fetch` only: each handler the macro exports is a future the upload carries.
#[durable_object(fetch)]
pub struct Health {
    state: State,
    env: Env,
}

impl Health {
    fn sql(&self) -> worker::SqlStorage {
        self.state.storage().sql()
    }

    fn stored(&self, origin: &str) -> Result<Option<String>> {
        rows::first(
            &self.sql().exec(
                "SELECT breaker FROM breakers WHERE origin = ?",
                vec![origin.into()],
            )?,
            Columns::text,
        )
    }

    fn snapshot(&self) -> Result<Snapshot> {
        let stored = rows::all(
            &self
                .sql()
                .exec("SELECT origin, breaker FROM breakers", None)?,
            |row| Ok((row.text()?, row.text()?)),
        )?;
        let (snapshot, unreadable) = didit_edge_core::health::snapshot_of(stored);
        for origin in unreadable {
            console_error!("breaker of {origin} is unreadable, shown as closed");
        }
        Ok(snapshot)
    }

    /// Performs the core's [`Recording`] of one outcome.
    async fn record(&self, report: Report) -> Result<()> {
        let mut recording = Recording::new(report);
        loop {
            match recording.poll() {
                health_record::Step::Load { origin } => {
                    let stored = self.stored(&origin)?;
                    recording.handle_loaded(Restored::from_stored(stored.as_deref()));
                }
                health_record::Step::LogUnreadable { origin } => {
                    console_error!("breaker of {origin} is unreadable, recorded afresh");
                }
                health_record::Step::Alert(alert) => {
                    alerts::enqueue(&self.env, &[alert]).await?;
                    recording.handle_alerted();
                }
                health_record::Step::Store { origin, breaker } => {
                    self.sql().exec(
                        "INSERT INTO breakers (origin, breaker) VALUES (?, ?) ON CONFLICT(origin) DO UPDATE SET breaker = excluded.breaker",
                        vec![origin.as_str().into(), serde_json::to_string(&breaker)?.into()],
                    )?;
                }
                health_record::Step::Done => return Ok(()),
            }
        }
    }
}

impl DurableObject for Health {
    fn new(state: State, env: Env) -> Self {
        objects::create_tables(&state, "health", SCHEMA);
        Self { state, env }
    }

    async fn fetch(&self, mut request: Request) -> Result<Response> {
        match HealthCall::of_path(&request.path()) {
            Some(HealthCall::Report) => {
                let Reported(report) = objects::message(&mut request).await?;
                self.record(report).await?;
                http::json(200, "{}".into())
            }
            Some(HealthCall::Snapshot) => {
                http::json(200, serde_json::to_string(&self.snapshot()?)?)
            }
            None => objects::no_such_call(),
        }
    }
}

thread_local! {
    static CACHE: RefCell<SnapshotCache> = const { RefCell::new(SnapshotCache::new()) };
}

async fn call(env: &Env, call: HealthCall, body: String) -> Result<objects::Answer> {
    objects::post(env, HealthCall::BINDING, GLOBAL, call.path(), body).await
}

/// One outcome as the `Report` call carries it (written as `crate::fields` says).
pub(crate) struct Reported(pub Report);

/// The current snapshot, straight from the object (and held by this isolate's cache).
pub(crate) async fn fresh_snapshot(env: &Env) -> Result<Snapshot> {
    let text = call(env, HealthCall::Snapshot, String::new())
        .await?
        .text()
        .await?;
    let snapshot: Snapshot = didit_edge_core::json::from_str(&text)?;
    let now = UnixMs(now_ms());
    CACHE.with(|cache| {
        cache
            .borrow_mut()
            .handle_fetched(Some(snapshot.clone()), now)
    });
    Ok(snapshot)
}

/// The snapshot the core's [`SnapshotCache`] says to use, fetching it when it says so (one
/// subrequest, taken from `budget`).
pub(crate) async fn snapshot(env: &Env, budget: &mut SubrequestBudget) -> Rc<Snapshot> {
    let lookup = CACHE.with(|cache| cache.borrow().lookup(UnixMs(now_ms()), budget));
    match lookup {
        Lookup::Use(snapshot) => snapshot,
        Lookup::Fetch => {
            let fetched = call(env, HealthCall::Snapshot, String::new()).await;
            let fetched = match fetched {
                Ok(answer) => answer.text().await.and_then(|text| {
                    didit_edge_core::json::from_str::<Snapshot>(&text).map_err(Into::into)
                }),
                Err(error) => Err(error),
            };
            let fetched = fetched
                .map_err(|error| {
                    console_error!("origin health unavailable, trying every origin: {error}");
                })
                .ok();
            let now = UnixMs(now_ms());
            CACHE.with(|cache| cache.borrow_mut().handle_fetched(fetched, now))
        }
    }
}

/// Reports one outcome at `at_ms`; a failure to report is logged and never fails the delivery.
/// This isolate's cached snapshot takes the same step ([`SnapshotCache::handle_reported`]).
pub(crate) async fn report(env: &Env, report: &Report) {
    let sent = match serde_json::to_string(&Reported(report.clone())) {
        Ok(body) => call(env, HealthCall::Report, body).await.map(|_| ()),
        Err(error) => Err(error.into()),
    };
    if let Err(error) = sent {
        console_error!("could not report health of {}: {error}", report.origin);
    }
    CACHE.with(|cache| cache.borrow_mut().handle_reported(report));
}
