//! One Durable Object per subject: the race-free duplicate check, the durable outbox, and the
//! alarm that delivers in order.
//!
//! The object is single-threaded and SQLite calls are synchronous, so the duplicate check and
//! the insert in [`Inbox::claim`] run with no `.await` between them: any number of concurrent
//! identical deliveries produce exactly one `accepted`. The runtime holds the reply until the
//! write is durable (output gate), so Didit's 200 always means the event is stored.

use didit_edge_core::delivery::{forget_at_ms, Progress};
use didit_edge_core::rejection::Receipt;
use serde::Deserialize;
use worker::{
    console_error, console_log, durable_object, Date, DurableObject, Env, Request, Response,
    Result, ScheduledTime, SqlStorage, SqlStorageValue, State,
};

use crate::claim::{self, Claim};
use crate::{origin, respond, settings};

/// Most deliveries one alarm makes before handing over to a fresh alarm, keeping each alarm
/// run short and bounded.
const DELIVERIES_PER_ALARM: usize = 25;
/// How soon an alarm tries again when configuration is broken: soon enough to notice a fix,
/// rare enough not to spin.
const MISCONFIGURED_RETRY_MS: i64 = 60_000;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS events (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT NOT NULL UNIQUE,
    alias TEXT,
    received_at_ms INTEGER NOT NULL,
    cloud_event TEXT,
    failures INTEGER NOT NULL DEFAULT 0,
    next_attempt_at_ms INTEGER,
    delivered_at_ms INTEGER,
    forget_at_ms INTEGER,
    last_error TEXT
);
CREATE INDEX IF NOT EXISTS events_alias ON events(alias) WHERE alias IS NOT NULL;
CREATE INDEX IF NOT EXISTS events_pending ON events(seq) WHERE delivered_at_ms IS NULL;
";

/// A subject's inbox.
#[durable_object]
pub struct Inbox {
    state: State,
    env: Env,
}

#[derive(Deserialize)]
struct ExistingId {
    id: String,
}

#[derive(Deserialize)]
struct Pending {
    seq: i64,
    id: String,
    cloud_event: Option<String>,
    received_at_ms: i64,
    failures: i64,
    next_attempt_at_ms: i64,
}

#[derive(Deserialize)]
struct Wake {
    at: Option<i64>,
}

fn alarm_at(unix_ms: i64) -> ScheduledTime {
    ScheduledTime::new(js_sys::Date::new(&(unix_ms as f64).into()))
}

fn now_ms() -> i64 {
    Date::now().as_millis() as i64
}

impl Inbox {
    fn sql(&self) -> SqlStorage {
        self.state.storage().sql()
    }

    /// Claims the id; stores the event if it is new.
    async fn claim(&self, mut request: Request) -> Result<Response> {
        let text = request.text().await?;
        let claim: Claim<'_> = serde_json::from_str(&text)?;
        let sql = self.sql();
        // No `.await` from here to the insert: this is the atomic duplicate check.
        let alias = claim.alias.map(String::from);
        let existing: Vec<ExistingId> = sql
            .exec(
                "SELECT id FROM events WHERE id = ? OR (alias IS NOT NULL AND alias = ?) ORDER BY seq LIMIT 1",
                vec![claim.id.into(), alias.clone().into()],
            )?
            .to_array()?;
        if let Some(original) = existing.into_iter().next() {
            // Re-arming is idempotent, and heals the case where an earlier claim stored the event
            // but failed to set the alarm (Didit then retries, and lands here).
            self.reschedule().await?;
            return respond::receipt(&Receipt::Duplicate { id: original.id });
        }
        let now = now_ms();
        sql.exec(
            "INSERT INTO events (id, alias, received_at_ms, cloud_event, failures, next_attempt_at_ms) VALUES (?, ?, ?, ?, 0, ?)",
            vec![
                claim.id.into(),
                alias.into(),
                now.into(),
                claim.cloud_event.get().into(),
                now.into(),
            ],
        )?;
        self.reschedule().await?;
        respond::receipt(&Receipt::Accepted {
            id: claim.id.to_owned(),
        })
    }

    /// The oldest undelivered event, which must go before any later one.
    fn head(&self) -> Result<Option<Pending>> {
        let rows: Vec<Pending> = self
            .sql()
            .exec(
                "SELECT seq, id, cloud_event, received_at_ms, failures, next_attempt_at_ms FROM events \
                 WHERE delivered_at_ms IS NULL ORDER BY seq LIMIT 1",
                None,
            )?
            .to_array()?;
        Ok(rows.into_iter().next())
    }

    /// Sets the alarm for the next thing to do: the head's next attempt, or the earliest record
    /// to forget. The head alone decides, so a later event never overtakes an earlier one.
    async fn reschedule(&self) -> Result<()> {
        let wake: Vec<Wake> = self
            .sql()
            .exec(
                "SELECT MIN(at) AS at FROM ( \
                   SELECT next_attempt_at_ms AS at FROM (SELECT next_attempt_at_ms FROM events WHERE delivered_at_ms IS NULL ORDER BY seq LIMIT 1) \
                   UNION ALL SELECT MIN(forget_at_ms) FROM events WHERE delivered_at_ms IS NOT NULL)",
                None,
            )?
            .to_array()?;
        let storage = self.state.storage();
        match wake.into_iter().next().and_then(|w| w.at) {
            Some(at) => storage.set_alarm(alarm_at(at)).await,
            None => storage.delete_alarm().await,
        }
    }

    async fn deliver_due(&self) -> Result<()> {
        let config = match settings::config(&self.env) {
            Ok(config) => config,
            Err(rejection) => {
                console_error!("inbox cannot deliver: {rejection}");
                let retry_at = now_ms() + MISCONFIGURED_RETRY_MS;
                return self.state.storage().set_alarm(alarm_at(retry_at)).await;
            }
        };
        let Some(target) = config.origins.first() else {
            return Ok(());
        };
        for _ in 0..DELIVERIES_PER_ALARM {
            let Some(head) = self.head()? else { break };
            if head.next_attempt_at_ms > now_ms() {
                break;
            }
            let Some(cloud_event) = head.cloud_event.as_deref() else {
                // A pending record always keeps its event; one without is unrecoverable data loss,
                // so it is logged loudly and skipped rather than blocking the subject forever.
                console_error!("event {} is pending without its payload; skipping", head.id);
                self.sql().exec(
                    "UPDATE events SET delivered_at_ms = ?, forget_at_ms = ? WHERE seq = ?",
                    vec![now_ms().into(), now_ms().into(), head.seq.into()],
                )?;
                continue;
            };
            let result =
                origin::deliver(target, &config.signing_secret, &head.id, cloud_event).await;
            let now = now_ms();
            let before = Progress::Pending {
                failures: u32::try_from(head.failures).unwrap_or(u32::MAX),
                next_attempt_at_ms: head.next_attempt_at_ms,
            };
            match before.after_attempt(&result, now, &config.retry_schedule) {
                Progress::Delivered { at_ms } => {
                    console_log!("delivered {} to {} ({:?})", head.id, target.name, result);
                    let forget = forget_at_ms(head.received_at_ms, at_ms, config.dedup_ttl_secs);
                    // The payload holds identity data: it goes as soon as the origin has it.
                    self.sql().exec(
                        "UPDATE events SET cloud_event = NULL, delivered_at_ms = ?, next_attempt_at_ms = NULL, \
                         forget_at_ms = ?, last_error = NULL WHERE seq = ?",
                        vec![at_ms.into(), forget.into(), head.seq.into()],
                    )?;
                }
                Progress::Pending {
                    failures,
                    next_attempt_at_ms,
                } => {
                    console_log!(
                        "delivery of {} to {} failed ({:?}), attempt {}; next in {} ms",
                        head.id,
                        target.name,
                        result,
                        failures,
                        next_attempt_at_ms - now
                    );
                    self.sql().exec(
                        "UPDATE events SET failures = ?, next_attempt_at_ms = ?, last_error = ? WHERE seq = ?",
                        vec![
                            i64::from(failures).into(),
                            next_attempt_at_ms.into(),
                            format!("{result:?}").into(),
                            head.seq.into(),
                        ],
                    )?;
                    break;
                }
            }
        }
        self.sql().exec(
            "DELETE FROM events WHERE delivered_at_ms IS NOT NULL AND forget_at_ms <= ?",
            vec![SqlStorageValue::from(now_ms())],
        )?;
        self.reschedule().await
    }
}

impl DurableObject for Inbox {
    fn new(state: State, env: Env) -> Self {
        if let Err(error) = state.storage().sql().exec(SCHEMA, None) {
            console_error!("inbox schema could not be created: {error}");
        }
        Self { state, env }
    }

    async fn fetch(&self, request: Request) -> Result<Response> {
        if request.path() == claim::PATH {
            return self.claim(request).await;
        }
        respond::json(
            404,
            r#"{"error":{"code":"not_found","message":"no such inbox call"}}"#.into(),
        )
    }

    async fn alarm(&self) -> Result<Response> {
        self.deliver_due().await?;
        Response::ok("done")
    }
}
