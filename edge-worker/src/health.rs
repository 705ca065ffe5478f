//! Origin health shared across the edge: one Durable Object holds every origin's circuit
//! breaker (the state machine is the core's), inboxes report each outcome to it and read its
//! snapshot through a short per-isolate cache, so delivery pays no round trip per event to
//! decide where to go. What is recorded, what is alerted, when the cache is fresh and what
//! happens when health cannot be read are the core's ([`health_record::Recording`],
//! [`SnapshotCache`]); this file reads, writes and fetches.
//!
//! The same object keeps the delivery metrics per origin ([`didit_edge_core::metrics`]): an
//! isolate's tally rides in the body of the snapshot fetch it makes anyway, so metrics add no
//! request and no subrequest to an event, and the object stores a row per origin and bucket.

use std::cell::RefCell;
use std::rc::Rc;

use didit_edge_core::admin::{LastProbe, MetricsView};
use didit_edge_core::attempt::AttemptResult;
use didit_edge_core::budget::SubrequestBudget;
use didit_edge_core::health::{Lookup, Report, Restored, SnapshotCache};
use didit_edge_core::health_record::{self, Recording};
use didit_edge_core::metrics::{self, Counts, Tally};
use didit_edge_core::time::UnixMs;
use worker::{console_error, durable_object, DurableObject, Env, Request, Response, Result, State};

use crate::clock::now_ms;
use crate::objects::{self, HealthCall, GLOBAL};
use crate::rows::{self, Columns};
use crate::{alerts, http, settings};

/// One row per origin: its breaker, as the core writes it.
const SCHEMA: &str =
    "CREATE TABLE IF NOT EXISTS breakers (origin TEXT PRIMARY KEY, breaker TEXT NOT NULL)";

/// One row per origin and 5-minute bucket, kept a day (at most 288 rows an origin): the
/// counts as the core writes them ([`Counts::encode`]). `WITHOUT ROWID`: the key is the table, so a bucket's
/// update is one row written.
const METRICS_SCHEMA: &str = "CREATE TABLE IF NOT EXISTS metrics (origin TEXT NOT NULL, bucket INTEGER NOT NULL, counts TEXT NOT NULL, PRIMARY KEY (origin, bucket)) WITHOUT ROWID";

/// One row per probed origin: the cron probe's latest outcome, rewritten by each probe.
const PROBES_SCHEMA: &str = "CREATE TABLE IF NOT EXISTS probes (origin TEXT PRIMARY KEY, at_ms INTEGER NOT NULL, up INTEGER NOT NULL) WITHOUT ROWID";

/// Every origin's breaker state, by origin name.
pub(crate) type Snapshot = didit_edge_core::health::Snapshot;

/// Every origin's circuit breaker, shared by all inboxes and the cron probe.
// `fetch` only: each handler the macro exports is a future the upload carries.
#[durable_object(fetch)]
pub struct Health {
    state: State,
    env: Env,
    /// The gate's memory, in an instance named `gate:<origin>` (unused in `global`).
    gate: crate::origin_gate::Memory,
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

    /// Folds an isolate's flush into the stored buckets, line by line. A line that cannot be
    /// read or stored is logged and drops the rest of the flush: metrics never fail the
    /// snapshot that carries them.
    fn store_flush(&self, flush: &str) {
        if let Err(error) = self.try_store_flush(flush) {
            console_error!("delivery metrics dropped: {error}");
        }
    }

    fn try_store_flush(&self, flush: &str) -> Result<()> {
        let now = UnixMs(now_ms());
        let mut new_bucket = false;
        for line in flush.lines().filter(|line| !line.is_empty()) {
            let line = metrics::parse_line(line)
                .map_err(|_| worker::Error::RustError("an unreadable line".into()))?;
            new_bucket |= self.store_line(line, now)?;
        }
        // A new bucket is when the oldest may have left the day: at most once per bucket, so
        // the scan is not paid on every flush.
        if new_bucket {
            self.sql().exec(
                "DELETE FROM metrics WHERE bucket < ?",
                vec![metrics::oldest_kept(now).0.into()],
            )?;
        }
        Ok(())
    }

    /// Adds one line to its bucket's row; `true` when the row is new.
    fn store_line(&self, line: metrics::Flushed, now: UnixMs) -> Result<bool> {
        if !metrics::keeps(line.bucket, now) {
            return Ok(false);
        }
        let sql = self.sql();
        let key = || vec![line.origin.as_str().into(), line.bucket.0.into()];
        let held = rows::first(
            &sql.exec(
                "SELECT counts FROM metrics WHERE origin = ? AND bucket = ?",
                key(),
            )?,
            Columns::text,
        )?;
        let mut counts = line.counts;
        // An unreadable row is replaced by the new counts.
        if let Some(Ok(held)) = held.as_deref().map(Counts::decode) {
            counts.merge(&held);
        }
        let mut values = key();
        values.push(counts.encode().into());
        sql.exec(
            "INSERT INTO metrics (origin, bucket, counts) VALUES (?, ?, ?) ON CONFLICT(origin, bucket) DO UPDATE SET counts = excluded.counts",
            values,
        )?;
        Ok(held.is_none())
    }

    /// The hour and day of every configured origin, and of any other the stored rows name.
    fn metrics(&self) -> Result<MetricsView> {
        let now = UnixMs(now_ms());
        // An unreadable row counts as nothing rather than failing the whole answer.
        let rows = rows::all(
            &self.sql().exec(
                "SELECT origin, bucket, counts FROM metrics WHERE bucket >= ?",
                vec![metrics::oldest_kept(now).0.into()],
            )?,
            |row| {
                let origin = row.text()?;
                let bucket = UnixMs(row.int()?);
                Ok((
                    origin,
                    bucket,
                    Counts::decode(&row.text()?).unwrap_or_default(),
                ))
            },
        )?;
        let probes = rows::all(
            &self
                .sql()
                .exec("SELECT origin, at_ms, up FROM probes", None)?,
            |row| {
                let origin = row.text()?;
                let at_ms = UnixMs(row.int()?);
                Ok((
                    origin,
                    LastProbe {
                        at_ms,
                        up: row.int()? != 0,
                    },
                ))
            },
        )?;
        let config = settings::config(&self.env);
        let configured = config
            .delivery_or_refusal()
            .map_or(&[][..], |delivery| &delivery.origins[..]);
        Ok(metrics::summarize(configured, &rows, &probes, now))
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
                health_record::Step::StoreProbe { origin, probe } => {
                    self.sql().exec(
                        "INSERT INTO probes (origin, at_ms, up) VALUES (?, ?, ?) ON CONFLICT(origin) DO UPDATE SET at_ms = excluded.at_ms, up = excluded.up",
                        vec![origin.as_str().into(), probe.at_ms.0.into(), i64::from(probe.up).into()],
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
        objects::create_tables(&state, "health", METRICS_SCHEMA);
        objects::create_tables(&state, "health", PROBES_SCHEMA);
        objects::create_tables(&state, "health", crate::origin_gate::SCHEMA);
        Self {
            state,
            env,
            gate: crate::origin_gate::Memory::default(),
        }
    }

    async fn fetch(&self, mut request: Request) -> Result<Response> {
        match HealthCall::of_path(&request.path()) {
            Some(HealthCall::Report) => {
                let Reported(report) = objects::message(&mut request).await?;
                self.record(report).await?;
                http::json(200, "{}".into())
            }
            Some(call @ (HealthCall::GateAsk | HealthCall::GateRelease)) => {
                let body = request.text().await?;
                crate::origin_gate::answer(&self.state, &self.gate, call, &body)
            }
            Some(call) => {
                // Both carry the caller's metrics flush.
                self.store_flush(&request.text().await.unwrap_or_default());
                let body = if call == HealthCall::Snapshot {
                    serde_json::to_string(&self.snapshot()?)?
                } else {
                    write_metrics(&self.metrics()?)?
                };
                http::json(200, body)
            }
            None => objects::no_such_call(),
        }
    }
}

/// Writes `GET /admin/metrics`' body by hand, in the order and names of [`MetricsView`]'s
/// fields (the CLI reads it with the derived `Deserialize`): a derived `Serialize` of the three
/// types would be more upload than this.
fn write_metrics(view: &MetricsView) -> Result<String> {
    use std::fmt::Write as _;
    fn number(out: &mut String, value: Option<u64>) {
        match value {
            Some(value) => {
                let _ = write!(out, "{value}");
            }
            None => out.push_str("null"),
        }
    }
    fn window(out: &mut String, name: &str, w: &didit_edge_core::admin::WindowMetrics) {
        let _ = write!(
            out,
            "\"{name}\":{{\"attempts\":{},\"delivered\":{},\"refused\":{},\"timeouts\":{},\"network\":{},\"success_per_mille\":",
            w.attempts, w.delivered, w.refused, w.timeouts, w.network
        );
        number(out, w.success_per_mille.map(u64::from));
        out.push_str(",\"p50_ms\":");
        number(out, w.p50_ms);
        out.push_str(",\"p95_ms\":");
        number(out, w.p95_ms);
        out.push('}');
    }
    let mut out = format!(
        "{{\"now_ms\":{},\"bucket_ms\":{},\"origins\":[",
        view.now_ms.0, view.bucket_ms
    );
    for (i, origin) in view.origins.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str("{\"origin\":");
        out.push_str(&serde_json::to_string(&origin.origin)?);
        out.push(',');
        window(&mut out, "hour", &origin.hour);
        out.push(',');
        window(&mut out, "day", &origin.day);
        match origin.last_probe {
            Some(probe) => {
                let _ = write!(
                    out,
                    ",\"last_probe\":{{\"at_ms\":{},\"up\":{}}}}}",
                    probe.at_ms.0, probe.up
                );
            }
            None => out.push_str(",\"last_probe\":null}"),
        }
    }
    out.push_str("]}");
    Ok(out)
}

thread_local! {
    static CACHE: RefCell<SnapshotCache> = const { RefCell::new(SnapshotCache::new()) };
    static TALLY: RefCell<Tally> = const { RefCell::new(Tally::new()) };
}

/// Counts one attempt on `origin` in this isolate, for its next flush.
pub(crate) fn count_attempt(origin: &str, result: &AttemptResult, latency_ms: u64, now: UnixMs) {
    TALLY.with(|tally| tally.borrow_mut().record(origin, result, latency_ms, now));
}

/// This isolate's counts since its last flush, forgotten here (lost if the call fails).
fn flush() -> String {
    TALLY
        .with(|tally| tally.borrow_mut().take())
        .unwrap_or_default()
}

/// `GET /admin/metrics`'s body, as the object writes it (with this isolate's counts in).
pub(crate) async fn metrics_json(env: &Env) -> Result<String> {
    answer_text(env, HealthCall::Metrics).await
}

/// The object's answer to `call`, which carries this isolate's flush. One function for the
/// admin API's two calls: each async call site is another state machine in the upload.
async fn answer_text(env: &Env, health_call: HealthCall) -> Result<String> {
    call(env, health_call, flush()).await?.text().await
}

async fn call(env: &Env, call: HealthCall, body: String) -> Result<objects::Answer> {
    objects::post(env, HealthCall::BINDING, GLOBAL, call.path(), body).await
}

/// One outcome as the `Report` call carries it (written as `crate::fields` says).
pub(crate) struct Reported(pub Report);

/// The current snapshot, straight from the object (and held by this isolate's cache).
pub(crate) async fn fresh_snapshot(env: &Env) -> Result<Snapshot> {
    let text = answer_text(env, HealthCall::Snapshot).await?;
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
            let fetched = call(env, HealthCall::Snapshot, flush()).await;
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
