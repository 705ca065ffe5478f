//! Operational alerts ([`didit_edge_core::alert`]) on their way to `ALERTS_URL`: an outbox in
//! one Durable Object, sent by its alarm and retried on the core's schedule, so an alert
//! endpoint that is down for a while still hears of every dead letter and breaker change.
//! Alerts are signed with `ALERTS_SIGNING_SECRET`, never with the key of forwarded events.
//!
//! Producers (the dead-letter index, the health object, the reconciler) enqueue an alert before they record
//! what it reports; an alert id derives from what it reports, so enqueueing twice keeps one.

use didit_edge_core::alert::{self, Alert};
use didit_edge_core::rejection::Rejection;
use serde::{Deserialize, Serialize};
use worker::{
    console_error, console_log, durable_object, DurableObject, Env, Request, Response, Result,
    State,
};

use crate::clock::{alarm_at, now_ms};
use crate::objects::{self, AlertsCall, GLOBAL};
use crate::rows::{self, Columns};
use crate::{http, origin, settings};

/// How long an alert endpoint has to answer.
const ALERT_TIMEOUT_MS: u32 = 10_000;
/// Most alerts one alarm run sends, so a run stays short and within its subrequests.
const ALERTS_PER_RUN: i64 = 20;
/// How soon the outbox looks again while the settings it needs are broken.
const MISCONFIGURED_RETRY_MS: i64 = 60_000;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS outbox (
    id TEXT PRIMARY KEY,
    body TEXT NOT NULL,
    failures INTEGER NOT NULL DEFAULT 0,
    next_at_ms INTEGER NOT NULL
);
";

/// Alerts to queue, each as its id and CloudEvent.
#[derive(Serialize, Deserialize, Default)]
pub(crate) struct Enqueue {
    /// `(id, CloudEvent JSON)`.
    pub alerts: Vec<(String, String)>,
}

/// The alert outbox ([`GLOBAL`]).
#[durable_object]
pub struct Alerts {
    state: State,
    env: Env,
}

impl Alerts {
    fn sql(&self) -> worker::SqlStorage {
        self.state.storage().sql()
    }

    async fn enqueue(&self, mut request: Request) -> Result<Response> {
        let queued: Enqueue = request.json().await?;
        let now = now_ms();
        for (id, body) in &queued.alerts {
            self.sql().exec(
                "INSERT OR IGNORE INTO outbox (id, body, next_at_ms) VALUES (?, ?, ?)",
                vec![id.as_str().into(), body.as_str().into(), now.into()],
            )?;
        }
        let storage = self.state.storage();
        if storage.get_alarm().await?.is_none_or(|at| at > now) {
            storage.set_alarm(alarm_at(now)).await?;
        }
        http::json(200, "{}".into())
    }

    /// Sends what is due; the rest waits for the next run.
    async fn send_due(&self) -> Result<Option<i64>> {
        let config = settings::config(&self.env);
        let Some(alerts) = config.alerts.on() else {
            // Unset since these were queued: nobody wants them. Broken: they wait for a fix.
            if config.alerts == didit_edge_core::config::Feature::Off {
                self.sql().exec("DELETE FROM outbox", None)?;
                return Ok(None);
            }
            return Ok(Some(now_ms() + MISCONFIGURED_RETRY_MS));
        };
        let due = rows::all(
            &self.sql().exec(
                "SELECT id, body, failures FROM outbox WHERE next_at_ms <= ? ORDER BY next_at_ms LIMIT ?",
                vec![now_ms().into(), ALERTS_PER_RUN.into()],
            )?,
            |row| Ok((row.text()?, row.text()?, row.int()?)),
        )?;
        for (id, body, failures) in due {
            let (result, _) = origin::post_signed(
                &alerts.url,
                ALERT_TIMEOUT_MS,
                &alerts.signing_secrets,
                &id,
                &body,
            )
            .await;
            let failures = u32::try_from(failures)
                .unwrap_or(u32::MAX)
                .saturating_add(1);
            let retry = (!result.is_delivered()).then(|| alert::retry_wait_ms(failures));
            match retry {
                None => {
                    self.sql()
                        .exec("DELETE FROM outbox WHERE id = ?", vec![id.as_str().into()])?;
                }
                Some(Some(wait_ms)) => {
                    let wait = i64::try_from(wait_ms).unwrap_or(i64::MAX);
                    self.sql().exec(
                        "UPDATE outbox SET failures = ?, next_at_ms = ? WHERE id = ?",
                        vec![
                            i64::from(failures).into(),
                            now_ms().saturating_add(wait).into(),
                            id.as_str().into(),
                        ],
                    )?;
                }
                Some(None) => {
                    self.sql()
                        .exec("DELETE FROM outbox WHERE id = ?", vec![id.as_str().into()])?;
                    console_error!(
                        "{}",
                        serde_json::json!({"event": "alert_dropped", "alert_id": id, "failures": failures})
                    );
                }
            }
            if let (Some(_), Some(status)) = (retry, result.status()) {
                console_log!(
                    "{}",
                    serde_json::json!({"event": "alert_failed", "alert_id": id, "status": status})
                );
            }
        }
        rows::first(
            &self
                .sql()
                .exec("SELECT MIN(next_at_ms) FROM outbox", None)?,
            Columns::opt_int,
        )
        .map(Option::flatten)
    }
}

impl DurableObject for Alerts {
    fn new(state: State, env: Env) -> Self {
        if let Err(error) = state.storage().sql().exec(SCHEMA, None) {
            console_error!("alerts schema could not be created: {error}");
        }
        Self { state, env }
    }

    async fn fetch(&self, request: Request) -> Result<Response> {
        match AlertsCall::of_path(&request.path()) {
            Some(AlertsCall::Enqueue) => self.enqueue(request).await,
            None => http::rejection(&Rejection::NotFound),
        }
    }

    async fn alarm(&self) -> Result<Response> {
        let next = match self.send_due().await {
            Ok(next) => next,
            Err(error) => {
                console_error!("alert outbox run failed, next in a minute: {error}");
                Some(now_ms() + MISCONFIGURED_RETRY_MS)
            }
        };
        if let Some(at) = next {
            self.state.storage().set_alarm(alarm_at(at)).await?;
        }
        Response::ok("done")
    }
}

/// Whether alerts are to be queued: `ALERTS_URL` is set (a broken one holds them until fixed).
pub(crate) fn wanted(env: &Env) -> bool {
    settings::config(env).alerts != didit_edge_core::config::Feature::Off
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
