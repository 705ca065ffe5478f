//! One Durable Object per subject: the race-free duplicate check, the durable outbox, and the
//! alarm that delivers in order, one track per consumer.
//!
//! The object is single-threaded and SQLite calls are synchronous, so the duplicate check and
//! the insert in [`Inbox::claim`] run with no `.await` between them: any number of concurrent
//! identical deliveries produce exactly one `accepted`. The runtime holds the reply until the
//! write is durable (output gate), so Didit's 200 always means the event is stored.

use didit_edge_core::config::Config;
use didit_edge_core::delivery::{forget_at_ms, payload_drop_at_ms, AttemptResult, Progress};
use didit_edge_core::health::available;
use didit_edge_core::rejection::Receipt;
use didit_edge_core::risk::Level;
use didit_edge_core::route::origins_for;
use serde::Deserialize;
use worker::{
    console_error, console_log, durable_object, Date, DurableObject, Env, Request, Response,
    Result, ScheduledTime, SqlStorage, SqlStorageValue, State,
};

use crate::claim::{self, Claim};
use crate::{health, origin, respond, settings};

/// Most deliveries one alarm makes before handing over to a fresh alarm, keeping each alarm
/// run short and bounded.
const DELIVERIES_PER_ALARM: usize = 25;
/// How soon an alarm tries again when configuration is broken: soon enough to notice a fix,
/// rare enough not to spin.
const MISCONFIGURED_RETRY_MS: i64 = 60_000;

/// `events` holds each event once (its payload until every consumer has it, then only what
/// deduplication needs); `deliveries` holds one row per event and consumer; `refusals` records
/// each origin that refused an event for good (a permanent 4xx), so it is not sent it again.
const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS events (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT NOT NULL UNIQUE,
    alias TEXT,
    received_at_ms INTEGER NOT NULL,
    webhook_type TEXT NOT NULL,
    risk_level TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    cloud_event TEXT,
    payload_expires_at_ms INTEGER,
    forget_at_ms INTEGER
);
CREATE INDEX IF NOT EXISTS events_alias ON events(alias) WHERE alias IS NOT NULL;
CREATE TABLE IF NOT EXISTS deliveries (
    event_seq INTEGER NOT NULL,
    consumer TEXT NOT NULL,
    failures INTEGER NOT NULL DEFAULT 0,
    next_attempt_at_ms INTEGER,
    delivered_at_ms INTEGER,
    origin TEXT,
    last_error TEXT,
    PRIMARY KEY (event_seq, consumer)
);
CREATE INDEX IF NOT EXISTS deliveries_pending ON deliveries(consumer, event_seq) WHERE delivered_at_ms IS NULL;
CREATE TABLE IF NOT EXISTS refusals (
    event_seq INTEGER NOT NULL,
    consumer TEXT NOT NULL,
    origin TEXT NOT NULL,
    status INTEGER NOT NULL,
    at_ms INTEGER NOT NULL,
    PRIMARY KEY (event_seq, consumer, origin)
);
";

/// The earliest-created undelivered event of each consumer (Didit's `timestamp`, then arrival):
/// nothing created later overtakes it, even an event that arrived first.
const HEADS: &str = "
SELECT d.consumer, d.event_seq, d.failures, d.next_attempt_at_ms,
       e.id, e.cloud_event, e.webhook_type, e.risk_level, e.received_at_ms
FROM deliveries d JOIN events e ON e.seq = d.event_seq
WHERE d.delivered_at_ms IS NULL
  AND NOT EXISTS (SELECT 1 FROM deliveries p JOIN events pe ON pe.seq = p.event_seq
                  WHERE p.consumer = d.consumer AND p.delivered_at_ms IS NULL
                    AND (pe.created_at < e.created_at OR (pe.created_at = e.created_at AND pe.seq < e.seq)))
ORDER BY d.next_attempt_at_ms";

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
struct Head {
    consumer: String,
    event_seq: i64,
    failures: i64,
    next_attempt_at_ms: i64,
    id: String,
    cloud_event: Option<String>,
    webhook_type: String,
    risk_level: String,
    received_at_ms: i64,
}

#[derive(Deserialize)]
struct Count {
    n: i64,
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

    /// Claims the id; stores the event and one delivery per consumer if it is new.
    async fn claim(&self, mut request: Request) -> Result<Response> {
        let text = request.text().await?;
        let claim: Claim<'_> = serde_json::from_str(&text)?;
        let sql = self.sql();
        // No `.await` from here to the inserts: this is the atomic duplicate check.
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
        let config = settings::config(&self.env).map_err(|r| worker::Error::from(r.to_string()))?;
        // An event no consumer takes is remembered for deduplication only.
        let (payload, forget_at) = if claim.consumers.is_empty() {
            (None, Some(forget_at_ms(now, now, config.dedup_ttl_secs)))
        } else {
            (Some(claim.cloud_event.get()), None)
        };
        sql.exec(
            "INSERT INTO events (id, alias, received_at_ms, webhook_type, risk_level, created_at, cloud_event, forget_at_ms) \
             VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            vec![
                claim.id.into(),
                alias.into(),
                now.into(),
                claim.webhook_type.into(),
                claim.risk_level.as_str().into(),
                claim.created_at.into(),
                payload.into(),
                forget_at.into(),
            ],
        )?;
        for consumer in &claim.consumers {
            sql.exec(
                "INSERT INTO deliveries (event_seq, consumer, next_attempt_at_ms) \
                 VALUES ((SELECT seq FROM events WHERE id = ?), ?, ?)",
                vec![claim.id.into(), consumer.as_str().into(), now.into()],
            )?;
        }
        if claim.consumers.is_empty() {
            console_log!(
                "{} taken by no consumer ({} at {} risk)",
                claim.id,
                claim.webhook_type,
                claim.risk_level.as_str()
            );
        }
        self.reschedule().await?;
        respond::receipt(&Receipt::Accepted {
            id: claim.id.to_owned(),
        })
    }

    /// Origins that refused this event for this consumer.
    fn refused_by(&self, head: &Head) -> Result<Vec<String>> {
        #[derive(Deserialize)]
        struct Row {
            origin: String,
        }
        let rows: Vec<Row> = self
            .sql()
            .exec(
                "SELECT origin FROM refusals WHERE event_seq = ? AND consumer = ?",
                vec![head.event_seq.into(), head.consumer.as_str().into()],
            )?
            .to_array()?;
        Ok(rows.into_iter().map(|row| row.origin).collect())
    }

    fn record_refusal(&self, head: &Head, origin: &str, status: u16) -> Result<()> {
        console_log!(
            "{} refused {} with {status}; it will not be sent this event again",
            origin,
            head.id
        );
        self.sql().exec(
            "INSERT OR REPLACE INTO refusals (event_seq, consumer, origin, status, at_ms) VALUES (?, ?, ?, ?, ?)",
            vec![
                head.event_seq.into(),
                head.consumer.as_str().into(),
                origin.into(),
                i64::from(status).into(),
                now_ms().into(),
            ],
        )?;
        Ok(())
    }

    fn heads(&self) -> Result<Vec<Head>> {
        self.sql().exec(HEADS, None)?.to_array()
    }

    /// Sets the alarm for the next thing to do: the earliest next attempt among the consumers'
    /// oldest undelivered events, or the earliest record to forget.
    async fn reschedule(&self) -> Result<()> {
        let wake: Vec<Wake> = self
            .sql()
            .exec(
                &format!(
                    "SELECT MIN(at) AS at FROM (SELECT next_attempt_at_ms AS at FROM ({HEADS}) \
                     UNION ALL SELECT MIN(forget_at_ms) FROM events WHERE forget_at_ms IS NOT NULL \
                     UNION ALL SELECT MIN(payload_expires_at_ms) FROM events WHERE payload_expires_at_ms IS NOT NULL)"
                ),
                None,
            )?
            .to_array()?;
        let storage = self.state.storage();
        match wake.into_iter().next().and_then(|w| w.at) {
            Some(at) => storage.set_alarm(alarm_at(at)).await,
            None => storage.delete_alarm().await,
        }
    }

    /// Marks an event done once no consumer is waiting for it: its payload (identity data)
    /// goes, and it is forgotten after the dedup TTL.
    fn finish_if_done(&self, head: &Head, delivered_at_ms: i64, config: &Config) -> Result<()> {
        let pending: Vec<Count> = self
            .sql()
            .exec(
                "SELECT COUNT(*) AS n FROM deliveries WHERE event_seq = ? AND delivered_at_ms IS NULL",
                vec![head.event_seq.into()],
            )?
            .to_array()?;
        if pending.first().is_some_and(|c| c.n == 0) {
            let forget = forget_at_ms(head.received_at_ms, delivered_at_ms, config.dedup_ttl_secs);
            let drop_payload = payload_drop_at_ms(delivered_at_ms, config.payload_retention_secs);
            self.sql().exec(
                "UPDATE events SET payload_expires_at_ms = ?, forget_at_ms = ? WHERE seq = ?",
                vec![drop_payload.into(), forget.into(), head.event_seq.into()],
            )?;
            self.drop_expired_payloads(delivered_at_ms)?;
        }
        Ok(())
    }

    /// Drops the payload (identity data) of delivered events whose retention is over.
    fn drop_expired_payloads(&self, now_ms: i64) -> Result<()> {
        self.sql().exec(
            "UPDATE events SET cloud_event = NULL, payload_expires_at_ms = NULL WHERE payload_expires_at_ms <= ?",
            vec![now_ms.into()],
        )?;
        Ok(())
    }

    async fn deliver_due(&self) -> Result<()> {
        let config = match settings::config(&self.env) {
            Ok(config) => config,
            Err(rejection) => {
                console_error!("inbox cannot deliver: {rejection}");
                return self
                    .state
                    .storage()
                    .set_alarm(alarm_at(now_ms() + MISCONFIGURED_RETRY_MS))
                    .await;
            }
        };
        let mut budget = DELIVERIES_PER_ALARM;
        'rounds: while budget > 0 {
            let due: Vec<Head> = self
                .heads()?
                .into_iter()
                .filter(|h| h.next_attempt_at_ms <= now_ms())
                .collect();
            if due.is_empty() {
                break;
            }
            for head in due {
                if budget == 0 {
                    break 'rounds;
                }
                budget -= 1;
                self.attempt(&head, &config).await?;
            }
        }
        self.drop_expired_payloads(now_ms())?;
        for table in ["deliveries", "refusals"] {
            self.sql().exec(
                &format!("DELETE FROM {table} WHERE event_seq IN (SELECT seq FROM events WHERE forget_at_ms <= ?)"),
                vec![SqlStorageValue::from(now_ms())],
            )?;
        }
        self.sql().exec(
            "DELETE FROM events WHERE forget_at_ms <= ?",
            vec![SqlStorageValue::from(now_ms())],
        )?;
        self.reschedule().await
    }

    /// One attempt to hand a consumer its oldest undelivered event.
    async fn attempt(&self, head: &Head, config: &Config) -> Result<()> {
        let level = head.risk_level.parse().unwrap_or(Level::Unknown);
        // A fresh draw per attempt spreads traffic over origins of equal priority by weight.
        let seed = (js_sys::Math::random() * 9_007_199_254_740_992.0) as u64;
        let candidates = origins_for(
            &config.origins,
            &head.consumer,
            &head.webhook_type,
            level,
            seed,
        );
        let configured = !candidates.is_empty();
        let health = health::snapshot(&self.env).await;
        let refused = self.refused_by(head)?;
        let candidates: Vec<_> = candidates
            .into_iter()
            .filter(|o| !refused.contains(&o.name))
            .collect();
        let every_origin_refused = configured && candidates.is_empty();
        let candidates = available(candidates, |name| health.get(name).copied(), now_ms());
        let (origin_name, outcome, detail) = match head.cloud_event.as_deref() {
            None => (
                None,
                AttemptResult::NotSent,
                String::from("the stored event has no payload"),
            ),
            Some(_) if !configured => (
                None,
                AttemptResult::NotSent,
                format!(
                    "no origin of consumer `{}` takes this event now",
                    head.consumer
                ),
            ),
            Some(_) if every_origin_refused => (
                None,
                AttemptResult::NotSent,
                format!(
                    "every origin of consumer `{}` refused this event",
                    head.consumer
                ),
            ),
            Some(_) if candidates.is_empty() => (
                None,
                AttemptResult::NotSent,
                format!(
                    "every origin of consumer `{}` is cooling down",
                    head.consumer
                ),
            ),
            Some(cloud_event) => {
                // Failover within one attempt: the next origin as soon as one fails.
                let mut tried = Vec::with_capacity(candidates.len());
                let mut last = (None, AttemptResult::NotSent);
                for target in candidates {
                    let (outcome, retry_after) = origin::deliver(
                        target,
                        config.signing_secret_for(target),
                        &head.id,
                        cloud_event,
                    )
                    .await;
                    if let Some(up) = outcome.health_signal() {
                        health::report(&self.env, &target.name, up, retry_after).await;
                    }
                    if let AttemptResult::Status(status) = outcome {
                        if outcome.is_refusal() {
                            self.record_refusal(head, &target.name, status)?;
                        }
                    }
                    tried.push(format!("{}: {outcome:?}", target.name));
                    let delivered = outcome.is_delivered();
                    last = (Some(target.name.as_str()), outcome);
                    if delivered {
                        break;
                    }
                }
                (last.0, last.1, tried.join("; "))
            }
        };
        let now = now_ms();
        let before = Progress::Pending {
            failures: u32::try_from(head.failures).unwrap_or(u32::MAX),
            next_attempt_at_ms: head.next_attempt_at_ms,
        };
        let after = before.after_attempt(&outcome, now, &config.retry_schedule);
        match after {
            Progress::Delivered { at_ms } => {
                console_log!(
                    "delivered {} to {} ({}) {detail}",
                    head.id,
                    origin_name.unwrap_or("?"),
                    head.consumer
                );
                self.sql().exec(
                    "UPDATE deliveries SET delivered_at_ms = ?, next_attempt_at_ms = NULL, origin = ?, last_error = NULL \
                     WHERE event_seq = ? AND consumer = ?",
                    vec![at_ms.into(), origin_name.into(), head.event_seq.into(), head.consumer.as_str().into()],
                )?;
                self.finish_if_done(head, at_ms, config)?;
            }
            Progress::Pending {
                failures,
                next_attempt_at_ms,
            } => {
                console_log!(
                    "delivery of {} to consumer {} failed ({detail}), attempt {failures}; next in {} ms",
                    head.id, head.consumer, next_attempt_at_ms - now
                );
                self.sql().exec(
                    "UPDATE deliveries SET failures = ?, next_attempt_at_ms = ?, origin = ?, last_error = ? \
                     WHERE event_seq = ? AND consumer = ?",
                    vec![
                        i64::from(failures).into(),
                        next_attempt_at_ms.into(),
                        origin_name.into(),
                        detail.into(),
                        head.event_seq.into(),
                        head.consumer.as_str().into(),
                    ],
                )?;
            }
        }
        Ok(())
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
