//! One Durable Object per subject: the race-free duplicate check, the durable outbox, and the
//! alarm that delivers in order, one track per consumer, until each copy is delivered or
//! becomes a dead letter.
//!
//! The object is single-threaded and SQLite calls are synchronous, so the duplicate check and
//! the insert in [`Inbox::claim`] run with no `.await` between them: any number of concurrent
//! identical deliveries produce exactly one `accepted`. The runtime holds the reply until the
//! write is durable (output gate), so Didit's 200 always means the event is stored.

use didit_edge_core::attempt::{LogEntry, Plan, Verdict};
use didit_edge_core::config::{AfterDeadLetter, Config};
use didit_edge_core::delivery::{expiry, DeadReason, Progress, Retention};
use didit_edge_core::rejection::Receipt;
use didit_edge_core::risk::Level;
use didit_edge_core::route::origins_for;
use serde::{Deserialize, Serialize};
use worker::{
    console_error, console_log, durable_object, Date, DurableObject, Env, Request, Response,
    Result, ScheduledTime, SqlStorage, SqlStorageValue, State,
};

use crate::claim::{self, Claim};
use crate::dead_letters::{self, Changes, Entry, Key, LoggedAttempt};
use crate::{health, origin, respond, settings};

/// Most deliveries one alarm makes before handing over to a fresh alarm, keeping each alarm
/// run short and bounded (each makes at most four origin requests and their health reports,
/// far inside the platform's subrequest limit).
const DELIVERIES_PER_ALARM: usize = 25;
/// No new attempt starts after an alarm has run this long: with slow origins, 25 attempts of
/// up to four origin timeouts each could otherwise outlast an alarm's 15 minute wall-clock limit.
const ALARM_TIME_BUDGET_MS: i64 = 60_000;
/// How soon an alarm tries again when configuration is broken: soon enough to notice a fix,
/// rare enough not to spin.
const MISCONFIGURED_RETRY_MS: i64 = 60_000;
/// How soon an unreachable dead-letter index is tried again.
const INDEX_RETRY_MS: i64 = 30_000;
/// Most attempts a dead letter's listing shows (the latest); the inbox keeps them all.
const LISTED_ATTEMPTS: usize = 100;

/// `events` holds each event once (its payload while a consumer may still need it, then only
/// what deduplication needs); `deliveries` one row per event and consumer, whose `state` is
/// `pending`, `delivered`, `dead` (a dead letter, replayable) or `expired` (a dead letter past
/// its retention); `refusals` each origin that refused an event for good; `attempts` every
/// request made, the dead-letter attempt log. `index_sync` is an outbox for the dead-letter
/// index: a change (`put`, `remove`) the index has not confirmed yet.
const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS meta (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
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
    state TEXT NOT NULL DEFAULT 'pending',
    failures INTEGER NOT NULL DEFAULT 0,
    next_attempt_at_ms INTEGER,
    delivered_at_ms INTEGER,
    dead_at_ms INTEGER,
    dead_reason TEXT,
    origin TEXT,
    last_error TEXT,
    index_sync TEXT,
    PRIMARY KEY (event_seq, consumer)
);
CREATE INDEX IF NOT EXISTS deliveries_open ON deliveries(consumer, event_seq) WHERE state IN ('pending', 'dead');
CREATE TABLE IF NOT EXISTS refusals (
    event_seq INTEGER NOT NULL,
    consumer TEXT NOT NULL,
    origin TEXT NOT NULL,
    status INTEGER NOT NULL,
    at_ms INTEGER NOT NULL,
    PRIMARY KEY (event_seq, consumer, origin)
);
CREATE TABLE IF NOT EXISTS attempts (
    event_seq INTEGER NOT NULL,
    consumer TEXT NOT NULL,
    at_ms INTEGER NOT NULL,
    origin TEXT,
    status INTEGER,
    error TEXT
);
CREATE INDEX IF NOT EXISTS attempts_event ON attempts(event_seq, consumer);
";

/// The earliest-created pending event of each consumer (Didit's `timestamp`, then arrival):
/// nothing created later overtakes it, even an event that arrived first. Under
/// `AFTER_DEAD_LETTER=hold` an earlier dead letter blocks too.
fn heads_query(after_dead_letter: AfterDeadLetter) -> String {
    let blocking = match after_dead_letter {
        AfterDeadLetter::Hold => "'pending', 'dead'",
        AfterDeadLetter::Continue => "'pending'",
    };
    format!(
        "SELECT d.consumer, d.event_seq, d.failures, d.next_attempt_at_ms,
                e.id, e.cloud_event, e.webhook_type, e.risk_level
         FROM deliveries d JOIN events e ON e.seq = d.event_seq
         WHERE d.state = 'pending'
           AND NOT EXISTS (SELECT 1 FROM deliveries p JOIN events pe ON pe.seq = p.event_seq
                           WHERE p.consumer = d.consumer AND p.state IN ({blocking})
                             AND (pe.created_at < e.created_at OR (pe.created_at = e.created_at AND pe.seq < e.seq)))
         ORDER BY d.next_attempt_at_ms"
    )
}

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
}

#[derive(Deserialize)]
struct Wake {
    at: Option<i64>,
}

/// A replay request from the edge: every dead letter of this inbox, or one event's, or one
/// consumer's.
#[derive(Serialize, Deserialize)]
pub struct ReplayRequest {
    /// Only this event (its id or Didit's `event_id`).
    pub id: Option<String>,
    /// Only this consumer's copies.
    pub consumer: Option<String>,
}

/// What a replay put back in line.
#[derive(Serialize, Deserialize)]
pub struct Replayed {
    /// The copies, by event id and consumer.
    pub replayed: Vec<Key>,
}

/// Path of the replay call on the inbox.
pub const REPLAY_PATH: &str = "/replay";

fn alarm_at(unix_ms: i64) -> ScheduledTime {
    ScheduledTime::new(js_sys::Date::new(&(unix_ms as f64).into()))
}

fn now_ms() -> i64 {
    Date::now().as_millis() as i64
}

fn random_seed() -> u64 {
    (js_sys::Math::random() * 9_007_199_254_740_992.0) as u64
}

fn retention(config: &Config) -> Retention {
    Retention {
        payload_secs: config.payload_retention_secs,
        dead_letter_secs: config.dead_letter_retention_secs,
        dedup_ttl_secs: config.dedup_ttl_secs,
    }
}

fn secs_to_ms(secs: u64) -> i64 {
    i64::try_from(secs.saturating_mul(1000)).unwrap_or(i64::MAX)
}

/// One line for `last_error` and the log: what each origin said.
fn summary(log: &[LogEntry], verdict: &Verdict) -> String {
    let mut parts: Vec<String> = log
        .iter()
        .map(|entry| {
            let origin = entry.origin.as_deref().unwrap_or("-");
            match (entry.status, entry.error) {
                (Some(status), Some(error)) => format!("{origin}: {error} {status}"),
                (Some(status), None) => format!("{origin}: {status}"),
                (None, Some(error)) => format!("{origin}: {error}"),
                (None, None) => origin.to_string(),
            }
        })
        .collect();
    if let Verdict::Deferred { until_ms } = verdict {
        parts.push(format!("every origin is cooling down until {until_ms}"));
    }
    parts.join("; ")
}

impl Inbox {
    fn sql(&self) -> SqlStorage {
        self.state.storage().sql()
    }

    /// Claims the id; stores the event and one delivery per consumer if it is new.
    async fn claim(&self, mut request: Request) -> Result<Response> {
        let text = request.text().await?;
        let claim: Claim<'_> = serde_json::from_str(&text)?;
        let config = settings::config(&self.env).map_err(|r| worker::Error::from(r.to_string()))?;
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
            self.reschedule(&config).await?;
            return respond::receipt(&Receipt::Duplicate { id: original.id });
        }
        let now = now_ms();
        sql.exec(
            "INSERT OR IGNORE INTO meta (key, value) VALUES ('subject', ?)",
            vec![claim.inbox.into()],
        )?;
        // An event no consumer takes is remembered for deduplication only.
        let (payload, forget_at) = if claim.consumers.is_empty() {
            let forget = expiry(now, [], &retention(&config)).map(|e| e.record_at_ms);
            (None, forget)
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
        self.reschedule(&config).await?;
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

    fn log_attempts(&self, head: &Head, log: &[LogEntry]) -> Result<()> {
        for entry in log {
            self.sql().exec(
                "INSERT INTO attempts (event_seq, consumer, at_ms, origin, status, error) VALUES (?, ?, ?, ?, ?, ?)",
                vec![
                    head.event_seq.into(),
                    head.consumer.as_str().into(),
                    entry.at_ms.into(),
                    entry.origin.as_deref().into(),
                    entry.status.map(i64::from).into(),
                    entry.error.into(),
                ],
            )?;
        }
        Ok(())
    }

    fn heads(&self, config: &Config) -> Result<Vec<Head>> {
        self.sql()
            .exec(&heads_query(config.after_dead_letter), None)?
            .to_array()
    }

    /// Sets the alarm for the next thing to do: the earliest next attempt among the consumers'
    /// first pending events, a payload or dead letter to expire, a record to forget, or a
    /// change the dead-letter index has not taken yet.
    async fn reschedule(&self, config: &Config) -> Result<()> {
        let heads = heads_query(config.after_dead_letter);
        let wake: Vec<Wake> = self
            .sql()
            .exec(
                &format!(
                    "SELECT MIN(at) AS at FROM (SELECT next_attempt_at_ms AS at FROM ({heads}) \
                     UNION ALL SELECT MIN(forget_at_ms) FROM events WHERE forget_at_ms IS NOT NULL \
                     UNION ALL SELECT MIN(payload_expires_at_ms) FROM events WHERE payload_expires_at_ms IS NOT NULL \
                     UNION ALL SELECT MIN(dead_at_ms) + ? FROM deliveries WHERE state = 'dead' \
                     UNION ALL SELECT ? FROM deliveries WHERE index_sync IS NOT NULL)"
                ),
                vec![
                    secs_to_ms(config.dead_letter_retention_secs).into(),
                    (now_ms() + INDEX_RETRY_MS).into(),
                ],
            )?
            .to_array()?;
        let storage = self.state.storage();
        match wake.into_iter().next().and_then(|w| w.at) {
            Some(at) => storage.set_alarm(alarm_at(at)).await,
            None => storage.delete_alarm().await,
        }
    }

    /// Recomputes when an event's payload and record expire, from where each consumer's copy
    /// stands (the core decides; nothing expires while a copy is pending).
    fn settle(&self, event_seq: i64, config: &Config) -> Result<()> {
        #[derive(Deserialize)]
        struct Copy {
            state: String,
            delivered_at_ms: Option<i64>,
            dead_at_ms: Option<i64>,
            dead_reason: Option<String>,
            received_at_ms: i64,
        }
        let copies: Vec<Copy> = self
            .sql()
            .exec(
                "SELECT d.state, d.delivered_at_ms, d.dead_at_ms, d.dead_reason, e.received_at_ms \
                 FROM deliveries d JOIN events e ON e.seq = d.event_seq WHERE d.event_seq = ?",
                vec![event_seq.into()],
            )?
            .to_array()?;
        let Some(received_at_ms) = copies.first().map(|c| c.received_at_ms) else {
            return Ok(());
        };
        let progress = copies.iter().map(|copy| match copy.state.as_str() {
            "delivered" => Progress::Delivered {
                at_ms: copy.delivered_at_ms.unwrap_or(received_at_ms),
            },
            "dead" | "expired" => Progress::Dead {
                at_ms: copy.dead_at_ms.unwrap_or(received_at_ms),
                reason: copy
                    .dead_reason
                    .as_deref()
                    .and_then(|r| r.parse().ok())
                    .unwrap_or(DeadReason::RetriesExhausted),
            },
            _ => Progress::new(received_at_ms),
        });
        let (payload_at, record_at) = match expiry(received_at_ms, progress, &retention(config)) {
            Some(expiry) => (Some(expiry.payload_at_ms), Some(expiry.record_at_ms)),
            None => (None, None),
        };
        self.sql().exec(
            "UPDATE events SET payload_expires_at_ms = CASE WHEN cloud_event IS NULL THEN NULL ELSE ? END, \
             forget_at_ms = ? WHERE seq = ?",
            vec![payload_at.into(), record_at.into(), event_seq.into()],
        )?;
        Ok(())
    }

    /// Dead letters past their retention, payloads past theirs, records past the dedup TTL.
    fn expire(&self, now: i64, config: &Config) -> Result<()> {
        let sql = self.sql();
        sql.exec(
            "UPDATE deliveries SET state = 'expired', index_sync = 'remove' WHERE state = 'dead' AND dead_at_ms + ? <= ?",
            vec![secs_to_ms(config.dead_letter_retention_secs).into(), now.into()],
        )?;
        sql.exec(
            "UPDATE events SET cloud_event = NULL, payload_expires_at_ms = NULL WHERE payload_expires_at_ms <= ?",
            vec![now.into()],
        )?;
        for table in ["deliveries", "refusals", "attempts"] {
            sql.exec(
                &format!("DELETE FROM {table} WHERE event_seq IN (SELECT seq FROM events WHERE forget_at_ms <= ?)"),
                vec![SqlStorageValue::from(now)],
            )?;
        }
        sql.exec(
            "DELETE FROM events WHERE forget_at_ms <= ?",
            vec![SqlStorageValue::from(now)],
        )?;
        Ok(())
    }

    /// Pushes the changes the dead-letter index has not confirmed. A failure leaves them for
    /// the next alarm ([`INDEX_RETRY_MS`]).
    async fn sync_index(&self, config: &Config) -> Result<()> {
        #[derive(Deserialize)]
        struct Pending {
            event_seq: i64,
            consumer: String,
            index_sync: String,
            dead_reason: Option<String>,
            dead_at_ms: Option<i64>,
            id: String,
            webhook_type: String,
            received_at_ms: i64,
        }
        let pending: Vec<Pending> = self
            .sql()
            .exec(
                "SELECT d.event_seq, d.consumer, d.index_sync, d.dead_reason, d.dead_at_ms, e.id, e.webhook_type, e.received_at_ms \
                 FROM deliveries d JOIN events e ON e.seq = d.event_seq WHERE d.index_sync IS NOT NULL LIMIT 100",
                None,
            )?
            .to_array()?;
        if pending.is_empty() {
            return Ok(());
        }
        let subject = self.subject()?;
        let mut changes = Changes::default();
        for row in &pending {
            match (row.index_sync.as_str(), row.dead_at_ms) {
                ("put", Some(dead_at_ms)) => changes.put.push(Entry {
                    id: row.id.clone(),
                    consumer: row.consumer.clone(),
                    subject: subject.clone(),
                    webhook_type: row.webhook_type.clone(),
                    reason: row.dead_reason.clone().unwrap_or_default(),
                    received_at_ms: row.received_at_ms,
                    dead_at_ms,
                    replayable_until_ms: dead_at_ms
                        .saturating_add(secs_to_ms(config.dead_letter_retention_secs)),
                    attempts: self.attempt_log(row.event_seq, &row.consumer)?,
                }),
                _ => changes.remove.push(Key {
                    id: row.id.clone(),
                    consumer: row.consumer.clone(),
                }),
            }
        }
        if let Err(error) = dead_letters::push(&self.env, &changes).await {
            console_error!("dead-letter index unreachable, will retry: {error}");
            return Ok(());
        }
        for row in &pending {
            // Only if nothing changed while the index was being called.
            self.sql().exec(
                "UPDATE deliveries SET index_sync = NULL WHERE event_seq = ? AND consumer = ? AND index_sync = ?",
                vec![
                    row.event_seq.into(),
                    row.consumer.as_str().into(),
                    row.index_sync.as_str().into(),
                ],
            )?;
        }
        Ok(())
    }

    fn subject(&self) -> Result<String> {
        #[derive(Deserialize)]
        struct Row {
            value: String,
        }
        let rows: Vec<Row> = self
            .sql()
            .exec("SELECT value FROM meta WHERE key = 'subject'", None)?
            .to_array()?;
        Ok(rows.into_iter().next().map(|r| r.value).unwrap_or_default())
    }

    /// The latest [`LISTED_ATTEMPTS`] attempts of one copy, oldest first.
    fn attempt_log(&self, event_seq: i64, consumer: &str) -> Result<Vec<LoggedAttempt>> {
        let mut log: Vec<LoggedAttempt> = self
            .sql()
            .exec(
                "SELECT at_ms, origin, status, error FROM attempts WHERE event_seq = ? AND consumer = ? \
                 ORDER BY rowid DESC LIMIT ?",
                vec![
                    event_seq.into(),
                    consumer.into(),
                    (LISTED_ATTEMPTS as i64).into(),
                ],
            )?
            .to_array()?;
        log.reverse();
        Ok(log)
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
        let started = now_ms();
        self.expire(started, &config)?;
        let mut budget = DELIVERIES_PER_ALARM;
        'rounds: while budget > 0 {
            let due: Vec<Head> = self
                .heads(&config)?
                .into_iter()
                .filter(|h| h.next_attempt_at_ms <= now_ms())
                .collect();
            if due.is_empty() {
                break;
            }
            for head in due {
                if budget == 0 || now_ms() - started > ALARM_TIME_BUDGET_MS {
                    break 'rounds;
                }
                budget -= 1;
                self.attempt(&head, &config).await?;
            }
        }
        self.sync_index(&config).await?;
        self.expire(now_ms(), &config)?;
        self.reschedule(&config).await
    }

    /// One attempt to hand a consumer its first pending event: the core plans it, this sends.
    async fn attempt(&self, head: &Head, config: &Config) -> Result<()> {
        let level = head.risk_level.parse().unwrap_or(Level::Unknown);
        // A fresh draw per attempt spreads traffic over origins of equal priority by weight.
        let candidates = origins_for(
            &config.origins,
            &head.consumer,
            &head.webhook_type,
            level,
            random_seed(),
        );
        let health = health::snapshot(&self.env).await;
        let refused = self.refused_by(head)?;
        let mut plan = match head.cloud_event.as_deref() {
            Some(_) => Plan::new(
                candidates,
                &refused,
                |name| health.get(name).copied(),
                now_ms(),
            ),
            None => Plan::without_payload(now_ms()),
        };
        let cloud_event = head.cloud_event.as_deref().unwrap_or_default();
        while let Some(target) = plan.next_origin() {
            let (result, retry_after) = origin::deliver(
                target,
                config.signing_secret_for(target),
                &head.id,
                cloud_event,
            )
            .await;
            if let Some(up) = result.health_signal() {
                health::report(&self.env, &target.name, up, retry_after).await;
            }
            if let (true, Some(status)) = (result.is_refusal(), result.status()) {
                self.record_refusal(head, &target.name, status)?;
            }
            plan.record(target, result, now_ms());
        }
        let (verdict, log) = plan.finish();
        self.log_attempts(head, &log)?;
        let detail = summary(&log, &verdict);
        let now = now_ms();
        let before = Progress::Pending {
            failures: u32::try_from(head.failures).unwrap_or(u32::MAX),
            next_attempt_at_ms: head.next_attempt_at_ms,
        };
        let key = vec![
            SqlStorageValue::from(head.event_seq),
            head.consumer.as_str().into(),
        ];
        match before.after_attempt(&verdict, now, &config.retry_schedule, random_seed()) {
            Progress::Delivered { at_ms } => {
                let origin = match &verdict {
                    Verdict::Delivered { origin } => Some(origin.as_str()),
                    _ => None,
                };
                console_log!(
                    "delivered {} to {} ({})",
                    head.id,
                    origin.unwrap_or("?"),
                    head.consumer
                );
                let mut values = vec![at_ms.into(), origin.into()];
                values.extend(key);
                self.sql().exec(
                    "UPDATE deliveries SET state = 'delivered', delivered_at_ms = ?, next_attempt_at_ms = NULL, \
                     origin = ?, last_error = NULL WHERE event_seq = ? AND consumer = ?",
                    values,
                )?;
                self.settle(head.event_seq, config)?;
            }
            Progress::Dead { at_ms, reason } => {
                console_error!(
                    "{} is a dead letter for consumer {} ({}): {detail}",
                    head.id,
                    head.consumer,
                    reason.as_str()
                );
                let mut values = vec![at_ms.into(), reason.as_str().into(), detail.into()];
                values.extend(key);
                self.sql().exec(
                    "UPDATE deliveries SET state = 'dead', dead_at_ms = ?, dead_reason = ?, next_attempt_at_ms = NULL, \
                     last_error = ?, index_sync = 'put' WHERE event_seq = ? AND consumer = ?",
                    values,
                )?;
                self.settle(head.event_seq, config)?;
            }
            Progress::Pending {
                failures,
                next_attempt_at_ms,
            } => {
                console_log!(
                    "delivery of {} to consumer {} failed ({detail}), {failures} failures; next in {} ms",
                    head.id,
                    head.consumer,
                    next_attempt_at_ms - now
                );
                let mut values = vec![
                    i64::from(failures).into(),
                    next_attempt_at_ms.into(),
                    detail.into(),
                ];
                values.extend(key);
                self.sql().exec(
                    "UPDATE deliveries SET failures = ?, next_attempt_at_ms = ?, last_error = ? \
                     WHERE event_seq = ? AND consumer = ?",
                    values,
                )?;
            }
        }
        Ok(())
    }

    /// Puts dead letters back in line with a fresh schedule, forgetting past refusals (the
    /// operator replays because the origin was fixed).
    async fn replay(&self, mut request: Request) -> Result<Response> {
        #[derive(Deserialize)]
        struct Dead {
            event_seq: i64,
            consumer: String,
            id: String,
        }
        let ask: ReplayRequest = request.json().await?;
        let config = settings::config(&self.env).map_err(|r| worker::Error::from(r.to_string()))?;
        let mut clause = String::from("d.state = 'dead'");
        let mut values: Vec<SqlStorageValue> = Vec::new();
        if let Some(id) = &ask.id {
            clause.push_str(" AND (e.id = ? OR e.alias = ?)");
            values.push(id.as_str().into());
            values.push(id.as_str().into());
        }
        if let Some(consumer) = &ask.consumer {
            clause.push_str(" AND d.consumer = ?");
            values.push(consumer.as_str().into());
        }
        let dead: Vec<Dead> = self
            .sql()
            .exec(
                &format!(
                    "SELECT d.event_seq, d.consumer, e.id FROM deliveries d JOIN events e ON e.seq = d.event_seq WHERE {clause}"
                ),
                values,
            )?
            .to_array()?;
        let now = now_ms();
        for copy in &dead {
            let key = || {
                vec![
                    SqlStorageValue::from(copy.event_seq),
                    copy.consumer.as_str().into(),
                ]
            };
            let mut values = vec![now.into()];
            values.extend(key());
            self.sql().exec(
                "UPDATE deliveries SET state = 'pending', failures = 0, next_attempt_at_ms = ?, dead_at_ms = NULL, \
                 dead_reason = NULL, last_error = NULL, index_sync = 'remove' WHERE event_seq = ? AND consumer = ?",
                values,
            )?;
            self.sql().exec(
                "DELETE FROM refusals WHERE event_seq = ? AND consumer = ?",
                key(),
            )?;
            self.settle(copy.event_seq, &config)?;
            console_log!("replaying {} for consumer {}", copy.id, copy.consumer);
        }
        // The listing should not show what was just replayed; if the index is unreachable the
        // alarm pushes the change later.
        self.sync_index(&config).await?;
        self.reschedule(&config).await?;
        let replayed = Replayed {
            replayed: dead
                .into_iter()
                .map(|copy| Key {
                    id: copy.id,
                    consumer: copy.consumer,
                })
                .collect(),
        };
        respond::json(200, serde_json::to_string(&replayed)?)
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
        match request.path().as_str() {
            claim::PATH => self.claim(request).await,
            REPLAY_PATH => self.replay(request).await,
            _ => respond::json(
                404,
                r#"{"error":{"code":"not_found","message":"no such inbox call"}}"#.into(),
            ),
        }
    }

    async fn alarm(&self) -> Result<Response> {
        self.deliver_due().await?;
        Response::ok("done")
    }
}
