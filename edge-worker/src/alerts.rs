//! Operational alerts ([`didit_edge_core::alert`]) on their way to `ALERTS_URL`: an outbox in
//! one Durable Object, sent by its alarm and retried on the core's schedule, so an alert
//! endpoint that is down for a while still hears of every dead letter and breaker change.
//! Alerts are signed with `ALERTS_SIGNING_SECRET`, never with the key of forwarded events.
//!
//! Producers (the dead-letter index, the health object, the reconciler) enqueue an alert before they record
//! what it reports; an alert id derives from what it reports, so enqueueing twice keeps one.

use didit_edge_core::alert::Alert;
use didit_edge_core::alert_outbox::{self, Change, Queued, Run, Step};
use didit_edge_core::time::UnixMs;
use worker::{
    console_error, console_log, durable_object, DurableObject, Env, Request, Response, Result,
    State,
};

use crate::clock::{alarm_at, now_ms};
use crate::objects::{self, AlertsCall, GLOBAL};
use crate::rows::{self, Columns};
use crate::{http, origin, settings};

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS outbox (
    id TEXT PRIMARY KEY,
    body TEXT NOT NULL,
    failures INTEGER NOT NULL DEFAULT 0,
    next_at_ms INTEGER NOT NULL
);
";

/// Alerts to queue, each as its id and CloudEvent (written as `crate::fields` says).
#[derive(Default)]
pub(crate) struct Enqueue {
    /// `(id, CloudEvent JSON)`.
    pub alerts: Vec<(String, String)>,
}

/// The alert outbox ([`GLOBAL`]).
// `fetch` and `alarm` only: each handler the macro exports is a future the upload carries.
#[durable_object(alarm)]
pub struct Alerts {
    state: State,
    env: Env,
}

impl Alerts {
    fn sql(&self) -> worker::SqlStorage {
        self.state.storage().sql()
    }

    async fn enqueue(&self, mut request: Request) -> Result<Response> {
        let queued: Enqueue = objects::message(&mut request).await?;
        let now = now_ms();
        for (id, body) in &queued.alerts {
            self.sql().exec(
                "INSERT OR IGNORE INTO outbox (id, body, next_at_ms) VALUES (?, ?, ?)",
                vec![id.as_str().into(), body.as_str().into(), now.into()],
            )?;
        }
        let storage = self.state.storage();
        let set = storage.get_alarm().await?.map(UnixMs);
        if let Some(at) = alert_outbox::alarm_after_enqueue(set, UnixMs(now)) {
            storage.set_alarm(alarm_at(at.0)).await?;
        }
        http::json(200, "{}".into())
    }

    /// Performs one run of the core's [`Run`]: what it sends, writes and logs, and when the
    /// outbox wakes again.
    async fn send_due(&self) -> Result<Option<UnixMs>> {
        let config = settings::config(&self.env);
        let mut run = Run::begin(&config.alerts, UnixMs(now_ms()));
        loop {
            match run.poll() {
                Step::Clear => {
                    self.sql().exec("DELETE FROM outbox", None)?;
                    run.handle_cleared();
                }
                Step::ReadDue { now, limit } => {
                    let due = rows::all(
                        &self.sql().exec(
                            "SELECT id, body, failures FROM outbox WHERE next_at_ms <= ? ORDER BY next_at_ms LIMIT ?",
                            vec![now.0.into(), i64::from(limit).into()],
                        )?,
                        |row| {
                            Ok(Queued {
                                id: row.text()?,
                                body: row.text()?,
                                failures: row.int()?,
                            })
                        },
                    )?;
                    run.handle_due(due);
                }
                Step::Send {
                    to,
                    id,
                    body,
                    timeout_ms,
                } => {
                    let (result, _) =
                        origin::post_signed(&to.url, timeout_ms, &to.signing_secrets, &id, &body)
                            .await;
                    run.handle_sent(&result, UnixMs(now_ms()));
                }
                Step::Write(Change::Forget { id }) => {
                    self.sql()
                        .exec("DELETE FROM outbox WHERE id = ?", vec![id.as_str().into()])?;
                }
                Step::Write(Change::Retry {
                    id,
                    failures,
                    next_at,
                }) => {
                    self.sql().exec(
                        "UPDATE outbox SET failures = ?, next_at_ms = ? WHERE id = ?",
                        vec![
                            i64::from(failures).into(),
                            next_at.0.into(),
                            id.as_str().into(),
                        ],
                    )?;
                }
                Step::Log(note) if note.is_error() => console_error!("{}", note.to_json()),
                Step::Log(note) => console_log!("{}", note.to_json()),
                Step::ReadNext => {
                    let soonest = rows::first(
                        &self
                            .sql()
                            .exec("SELECT MIN(next_at_ms) FROM outbox", None)?,
                        Columns::opt_int,
                    )?
                    .flatten();
                    run.handle_next(soonest.map(UnixMs));
                }
                Step::Done { wake_at } => return Ok(wake_at),
            }
        }
    }
}

impl DurableObject for Alerts {
    fn new(state: State, env: Env) -> Self {
        objects::create_tables(&state, "alerts", SCHEMA);
        Self { state, env }
    }

    async fn fetch(&self, request: Request) -> Result<Response> {
        match AlertsCall::of_path(&request.path()) {
            Some(AlertsCall::Enqueue) => self.enqueue(request).await,
            None => objects::no_such_call(),
        }
    }

    async fn alarm(&self) -> Result<Response> {
        let next = match self.send_due().await {
            Ok(next) => next,
            Err(error) => {
                console_error!("alert outbox run failed, next in a minute: {error}");
                Some(alert_outbox::wake_after_failure(UnixMs(now_ms())))
            }
        };
        if let Some(at) = next {
            self.state.storage().set_alarm(alarm_at(at.0)).await?;
        }
        Response::ok("done")
    }
}

/// Whether alerts are to be queued ([`alert_outbox::queues`]).
pub(crate) fn wanted(env: &Env) -> bool {
    alert_outbox::queues(&settings::config(env).alerts)
}

/// Queues `alerts` when alerts are on (and does nothing otherwise). An error means they were
/// not queued: the caller must not record what they report, so it is reported again.
pub(crate) async fn enqueue(env: &Env, alerts: &[Alert]) -> Result<()> {
    if alerts.is_empty() || !wanted(env) {
        return Ok(());
    }
    let queued = Enqueue {
        alerts: alerts
            .iter()
            .map(|alert| (alert.id(), alert.to_cloud_event()))
            .collect(),
    };
    objects::post(
        env,
        AlertsCall::BINDING,
        GLOBAL,
        AlertsCall::Enqueue.path(),
        serde_json::to_string(&queued)?,
    )
    .await?;
    Ok(())
}
