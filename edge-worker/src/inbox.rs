//! One Durable Object per subject: the race-free duplicate check, the durable outbox, and the
//! alarm that delivers in order, one track per consumer, until each copy is delivered or
//! becomes a dead letter.
//!
//! The object is single-threaded and SQLite calls are synchronous, so the duplicate check and
//! the insert in [`Inbox::claim`] run with no `.await` between them: any number of concurrent
//! identical deliveries produce exactly one `accepted`. The runtime holds the reply until the
//! write is durable (output gate), so Didit's 200 always means the event is stored. A claim
//! needs no configuration beyond what the edge already checked: an event that arrives while
//! delivery settings are broken is stored unclassified and waits for them.
//!
//! The alarm never ends in an error: the platform retries a failing alarm only a few times and
//! then drops it, which would leave pending events with no alarm at all. A failed run is
//! logged and the inbox re-arms itself with a backoff.

use didit_edge_core::attempt::{AttemptResult, DeadReason, LogEntry, Plan, Verdict};
use didit_edge_core::budget::{alarm_backoff_ms, SubrequestBudget};
use didit_edge_core::config::{AfterDeadLetter, Config, DeliveryConfig, Feature};
use didit_edge_core::delivery::{expiry, Progress};
use didit_edge_core::health::report_changes_nothing;
use didit_edge_core::intake::Identified;
use didit_edge_core::rejection::Receipt;
use didit_edge_core::risk::Level;
use didit_edge_core::route::origins_for;
use didit_edge_core::verify::Verified;
use serde::{Deserialize, Serialize};
use worker::{
    console_error, console_log, durable_object, DurableObject, Env, Request, Response, Result,
    SqlStorage, SqlStorageValue, State,
};

use crate::claim::{self, Claim, Content};
use crate::clock::{alarm_at, now_ms};
use crate::dead_letters::{self, Changes, Entry, Key, LoggedAttempt};
use crate::{faults, health, origin, respond, settings, stream};

/// Most deliveries one alarm makes before handing over to a fresh alarm, keeping each run
/// short and bounded.
const DELIVERIES_PER_ALARM: usize = 25;
/// No new attempt starts after an alarm has run this long: with slow origins, 25 attempts of
/// up to four origin timeouts each could otherwise outlast an alarm's 15 minute wall-clock limit.
const ALARM_TIME_BUDGET_MS: i64 = 60_000;
/// How soon an alarm looks again while delivery settings are broken: soon enough to notice a
/// fix, rare enough not to spin.
const MISCONFIGURED_RETRY_MS: i64 = 60_000;
/// How soon an unreachable dead-letter index is tried again.
const INDEX_RETRY_MS: i64 = 30_000;
/// Most attempts a dead letter's listing shows (the latest); the inbox keeps them all.
const LISTED_ATTEMPTS: usize = 100;
/// Subrequests one attempt needs per origin: the POST, and a health report if the outcome
/// moves the origin's breaker.
const SUBREQUESTS_PER_TRY: u32 = 2;
/// Most events classified in one alarm run (each may publish to two stream channels).
const CLASSIFICATIONS_PER_ALARM: usize = 25;

/// The schema the first release created. Later versions change it in [`MIGRATIONS`].
///
/// `events` holds each event once (its payload while a consumer may still need it, then only
/// what deduplication needs); `deliveries` one row per event and consumer, whose `state` is
/// `pending`, `delivered`, `dead` (a dead letter, replayable) or `expired` (a dead letter past
/// its retention); `refusals` each origin that answered the event's last attempt with a 3xx or
/// 4xx (tried last in the next); `attempts` every request made, the dead-letter attempt log.
/// `index_sync` is an outbox for the dead-letter index: a change (`put`, `remove`) the index
/// has not confirmed yet.
const SCHEMA_V1: &str = "
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

/// Schema changes after the first release, in order; `meta.schema_version` counts how many
/// an object has applied.
///
/// 1. Event ids with the content digest (`id_version` 2; older rows are 1), the status for
///    matching aliases, an event stored unclassified (`classified` 0: Didit's `body`, how it
///    was `verified`, whether it is a `test`), and where a redirect pointed.
const MIGRATIONS: &[&str] = &["
ALTER TABLE events ADD COLUMN status TEXT;
ALTER TABLE events ADD COLUMN id_version INTEGER NOT NULL DEFAULT 1;
ALTER TABLE events ADD COLUMN classified INTEGER NOT NULL DEFAULT 1;
ALTER TABLE events ADD COLUMN body TEXT;
ALTER TABLE events ADD COLUMN verified TEXT;
ALTER TABLE events ADD COLUMN test INTEGER NOT NULL DEFAULT 0;
ALTER TABLE attempts ADD COLUMN location TEXT;
CREATE INDEX IF NOT EXISTS events_unclassified ON events(seq) WHERE classified = 0;
"];

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

/// The per-subject inbox: its events, each consumer's copy, and the alarm that delivers them.
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

fn random_seed() -> u64 {
    (js_sys::Math::random() * 9_007_199_254_740_992.0) as u64
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
        parts.push(format!("not sent; waiting until {until_ms}"));
    }
    parts.join("; ")
}

/// Why the alarm's delivery loop stopped before everything due was attempted.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Stopped {
    /// Nothing due is left.
    Done,
    /// A budget of this run ran out; the next alarm goes on at once.
    Budget,
}

impl Inbox {
    fn sql(&self) -> SqlStorage {
        self.state.storage().sql()
    }

    /// Creates the schema, or brings an older one up to date.
    fn migrate(sql: &SqlStorage) -> Result<()> {
        #[derive(Deserialize)]
        struct Version {
            v: i64,
        }
        sql.exec(SCHEMA_V1, None)?;
        let version: Vec<Version> = sql
            .exec(
                "SELECT CAST(value AS INTEGER) AS v FROM meta WHERE key = 'schema_version'",
                None,
            )?
            .to_array()?;
        let applied = version
            .first()
            .map_or(0, |v| usize::try_from(v.v).unwrap_or(0));
        for (index, migration) in MIGRATIONS.iter().enumerate().skip(applied) {
            sql.exec(migration, None)?;
            sql.exec(
                "INSERT INTO meta (key, value) VALUES ('schema_version', ?) \
                 ON CONFLICT(key) DO UPDATE SET value = excluded.value",
                vec![(index + 1).to_string().into()],
            )?;
        }
        Ok(())
    }

    /// Makes sure an alarm will come no later than `at_ms`.
    async fn wake_by(&self, at_ms: i64) -> Result<()> {
        let storage = self.state.storage();
        match storage.get_alarm().await? {
            Some(current) if current <= at_ms => Ok(()),
            _ => storage.set_alarm(alarm_at(at_ms)).await,
        }
    }

    /// Claims the id; stores the event (and, when it is classified, one delivery per consumer)
    /// if it is new.
    async fn claim(&self, mut request: Request) -> Result<Response> {
        let text = request.text().await?;
        let claim: Claim<'_> = serde_json::from_str(&text)?;
        let sql = self.sql();
        // No `.await` from here to the inserts: this is the atomic duplicate check. An alias
        // (Didit's `event_id`) only makes a duplicate of the same type and status; events
        // stored by older releases are also found by the id those releases gave them.
        let existing: Vec<ExistingId> = sql
            .exec(
                "SELECT id FROM events WHERE id = ?1 OR (id = ?2 AND id_version = 1) \
                 OR (?3 IS NOT NULL AND alias = ?3 AND webhook_type = ?4 AND (status IS ?5 OR id_version = 1)) \
                 ORDER BY seq LIMIT 1",
                vec![
                    claim.id.as_ref().into(),
                    claim.legacy_id.as_ref().into(),
                    claim.alias.as_deref().into(),
                    claim.webhook_type.as_ref().into(),
                    claim.status.as_deref().into(),
                ],
            )?
            .to_array()?;
        if let Some(original) = existing.into_iter().next() {
            // Heals the case where an earlier claim stored the event but failed to set the
            // alarm (Didit then retries, and lands here).
            self.wake_by(now_ms()).await?;
            return respond::receipt(&Receipt::Duplicate { id: original.id });
        }
        let now = now_ms();
        sql.exec(
            "INSERT OR IGNORE INTO meta (key, value) VALUES ('subject', ?)",
            vec![claim.inbox.as_ref().into()],
        )?;
        match &claim.content {
            Content::Classified {
                risk_level,
                consumers,
                cloud_event,
            } => {
                sql.exec(
                    "INSERT INTO events (id, id_version, alias, received_at_ms, webhook_type, status, risk_level, \
                     created_at, cloud_event) VALUES (?, 2, ?, ?, ?, ?, ?, ?, ?)",
                    vec![
                        claim.id.as_ref().into(),
                        claim.alias.as_deref().into(),
                        now.into(),
                        claim.webhook_type.as_ref().into(),
                        claim.status.as_deref().into(),
                        risk_level.as_str().into(),
                        claim.created_at.into(),
                        // An event no consumer takes is remembered for deduplication only.
                        (!consumers.is_empty()).then(|| cloud_event.get()).into(),
                    ],
                )?;
                self.insert_deliveries(&claim.id, consumers, now)?;
            }
            Content::Unclassified {
                verified,
                test,
                received_at,
                body,
            } => {
                sql.exec(
                    "INSERT INTO events (id, id_version, alias, received_at_ms, webhook_type, status, risk_level, \
                     created_at, classified, body, verified, test) VALUES (?, 2, ?, ?, ?, ?, ?, ?, 0, ?, ?, ?)",
                    vec![
                        claim.id.as_ref().into(),
                        claim.alias.as_deref().into(),
                        received_at.saturating_mul(1000).into(),
                        claim.webhook_type.as_ref().into(),
                        claim.status.as_deref().into(),
                        Level::Unknown.as_str().into(),
                        claim.created_at.into(),
                        body.get().into(),
                        serde_json::to_string(verified)?.into(),
                        i64::from(*test).into(),
                    ],
                )?;
                console_log!(
                    "{} stored unclassified; it waits for valid delivery settings",
                    claim.id
                );
            }
        }
        self.wake_by(now).await?;
        respond::receipt(&Receipt::Accepted {
            id: claim.id.into_owned(),
        })
    }

    fn insert_deliveries(&self, id: &str, consumers: &[String], now: i64) -> Result<()> {
        for consumer in consumers {
            self.sql().exec(
                "INSERT INTO deliveries (event_seq, consumer, next_attempt_at_ms) \
                 VALUES ((SELECT seq FROM events WHERE id = ?), ?, ?)",
                vec![id.into(), consumer.as_str().into(), now.into()],
            )?;
        }
        if consumers.is_empty() {
            console_log!("{id} is taken by no consumer");
        }
        Ok(())
    }

    /// Classifies events stored while delivery settings were broken, oldest first; each then
    /// goes out like any other, in the order Didit created it.
    async fn classify_stored(
        &self,
        config: &Config,
        delivery: &DeliveryConfig,
        budget: &mut SubrequestBudget,
    ) -> Result<Stopped> {
        #[derive(Deserialize)]
        struct Stored {
            seq: i64,
            id: String,
            received_at_ms: i64,
            body: Option<String>,
            verified: Option<String>,
            test: i64,
        }
        let stored: Vec<Stored> = self
            .sql()
            .exec(
                "SELECT seq, id, received_at_ms, body, verified, test FROM events \
                 WHERE classified = 0 ORDER BY seq LIMIT ?",
                vec![(CLASSIFICATIONS_PER_ALARM as i64 + 1).into()],
            )?
            .to_array()?;
        let publishes = matches!(config.stream, Feature::On(_));
        for (index, event) in stored.iter().enumerate() {
            if index == CLASSIFICATIONS_PER_ALARM || (publishes && !budget.take(2)) {
                return Ok(Stopped::Budget);
            }
            let verified: Verified = serde_json::from_str(event.verified.as_deref().unwrap_or(""))?;
            let body = event.body.as_deref().unwrap_or("");
            let classified = Identified::recall(
                body.as_bytes(),
                verified,
                event.test != 0,
                event.received_at_ms.div_euclid(1000),
            )
            .and_then(|identified| identified.classify(&delivery.policy()))
            .map_err(|rejection| {
                worker::Error::from(format!("{} cannot be classified: {rejection}", event.id))
            })?;
            let now = now_ms();
            self.sql().exec(
                "UPDATE events SET classified = 1, body = NULL, verified = NULL, risk_level = ?, cloud_event = ? \
                 WHERE seq = ?",
                vec![
                    classified.risk_level.as_str().into(),
                    (!classified.consumers.is_empty())
                        .then(|| classified.cloud_event.get())
                        .into(),
                    event.seq.into(),
                ],
            )?;
            self.insert_deliveries(&event.id, &classified.consumers, now)?;
            console_log!("{} classified after the fact", event.id);
            if publishes {
                stream::publish(&self.env, &classified.status_update).await;
            }
        }
        Ok(Stopped::Done)
    }

    /// Origins that answered this copy's last attempt with a 3xx or 4xx.
    fn rejected_by(&self, head: &Head) -> Result<Vec<String>> {
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

    /// Replaces the copy's rejections with this attempt's.
    fn record_rejections(&self, head: &Head, rejections: &[(String, u16)]) -> Result<()> {
        self.sql().exec(
            "DELETE FROM refusals WHERE event_seq = ? AND consumer = ?",
            vec![head.event_seq.into(), head.consumer.as_str().into()],
        )?;
        for (origin, status) in rejections {
            self.sql().exec(
                "INSERT OR REPLACE INTO refusals (event_seq, consumer, origin, status, at_ms) VALUES (?, ?, ?, ?, ?)",
                vec![
                    head.event_seq.into(),
                    head.consumer.as_str().into(),
                    origin.as_str().into(),
                    i64::from(*status).into(),
                    now_ms().into(),
                ],
            )?;
        }
        Ok(())
    }

    fn log_attempts(&self, head: &Head, log: &[LogEntry]) -> Result<()> {
        for entry in log {
            self.sql().exec(
                "INSERT INTO attempts (event_seq, consumer, at_ms, origin, status, error, location) \
                 VALUES (?, ?, ?, ?, ?, ?, ?)",
                vec![
                    head.event_seq.into(),
                    head.consumer.as_str().into(),
                    entry.at_ms.into(),
                    entry.origin.as_deref().into(),
                    entry.status.map(i64::from).into(),
                    entry.error.into(),
                    entry.location.as_deref().into(),
                ],
            )?;
        }
        Ok(())
    }

    fn heads(&self, after_dead_letter: AfterDeadLetter) -> Result<Vec<Head>> {
        self.sql()
            .exec(&heads_query(after_dead_letter), None)?
            .to_array()
    }

    /// Sets the alarm for the next thing to do: the earliest next attempt among the consumers'
    /// first pending events, a payload or dead letter to expire, a record to forget, an event
    /// to classify, or a change the dead-letter index has not taken yet. (Two queries: the
    /// platform's SQLite allows few terms in one compound SELECT.)
    async fn reschedule(&self, delivery: &DeliveryConfig) -> Result<()> {
        let heads = heads_query(delivery.after_dead_letter);
        let now = now_ms();
        let deliveries: Vec<Wake> = self
            .sql()
            .exec(
                &format!(
                    "SELECT MIN(at) AS at FROM (SELECT next_attempt_at_ms AS at FROM ({heads}) \
                     UNION ALL SELECT MIN(dead_at_ms) + ? FROM deliveries WHERE state = 'dead' \
                     UNION ALL SELECT ? FROM deliveries WHERE index_sync IS NOT NULL)"
                ),
                vec![
                    secs_to_ms(delivery.retention.dead_letter_secs).into(),
                    (now + INDEX_RETRY_MS).into(),
                ],
            )?
            .to_array()?;
        let events: Vec<Wake> = self
            .sql()
            .exec(
                "SELECT MIN(at) AS at FROM (SELECT MIN(forget_at_ms) AS at FROM events \
                 UNION ALL SELECT MIN(payload_expires_at_ms) FROM events \
                 UNION ALL SELECT ? FROM events WHERE classified = 0)",
                vec![now.into()],
            )?
            .to_array()?;
        let next = deliveries
            .into_iter()
            .chain(events)
            .filter_map(|wake| wake.at)
            .min();
        let storage = self.state.storage();
        match next {
            Some(at) => storage.set_alarm(alarm_at(at)).await,
            None => storage.delete_alarm().await,
        }
    }

    /// Recomputes when an event's payload and record expire, from where each consumer's copy
    /// stands (the core decides; nothing expires while a copy is pending).
    fn settle(&self, event_seq: i64, delivery: &DeliveryConfig) -> Result<()> {
        #[derive(Deserialize)]
        struct Copy {
            state: Option<String>,
            delivered_at_ms: Option<i64>,
            dead_at_ms: Option<i64>,
            dead_reason: Option<String>,
            received_at_ms: i64,
            created_at: i64,
        }
        let copies: Vec<Copy> = self
            .sql()
            .exec(
                "SELECT d.state, d.delivered_at_ms, d.dead_at_ms, d.dead_reason, e.received_at_ms, e.created_at \
                 FROM events e LEFT JOIN deliveries d ON e.seq = d.event_seq WHERE e.seq = ?",
                vec![event_seq.into()],
            )?
            .to_array()?;
        let Some((received_at_ms, created_at)) =
            copies.first().map(|c| (c.received_at_ms, c.created_at))
        else {
            return Ok(());
        };
        let progress = copies.iter().filter_map(|copy| {
            Some(match copy.state.as_deref()? {
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
            })
        });
        let (payload_at, record_at) =
            match expiry(received_at_ms, created_at, progress, &delivery.retention) {
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

    /// Gives events that no consumer takes their expiry: only their id is kept, for
    /// deduplication, until it is forgotten.
    fn settle_unrouted(&self, delivery: &DeliveryConfig) -> Result<()> {
        #[derive(Deserialize)]
        struct Unrouted {
            seq: i64,
        }
        let unrouted: Vec<Unrouted> = self
            .sql()
            .exec(
                "SELECT seq FROM events e WHERE classified = 1 AND forget_at_ms IS NULL \
                 AND NOT EXISTS (SELECT 1 FROM deliveries d WHERE d.event_seq = e.seq)",
                None,
            )?
            .to_array()?;
        for event in unrouted {
            self.settle(event.seq, delivery)?;
        }
        Ok(())
    }

    /// Dead letters past their retention, payloads past theirs, records past the dedup TTL.
    fn expire(&self, now: i64, delivery: &DeliveryConfig) -> Result<()> {
        let sql = self.sql();
        sql.exec(
            "UPDATE deliveries SET state = 'expired', index_sync = 'remove' WHERE state = 'dead' AND dead_at_ms + ? <= ?",
            vec![secs_to_ms(delivery.retention.dead_letter_secs).into(), now.into()],
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
    async fn sync_index(&self, delivery: &DeliveryConfig) -> Result<()> {
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
                        .saturating_add(secs_to_ms(delivery.retention.dead_letter_secs)),
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
                "SELECT at_ms, origin, status, error, location FROM attempts WHERE event_seq = ? AND consumer = ? \
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

    /// One alarm run. Errors are the caller's to absorb.
    async fn run_alarm(&self) -> Result<()> {
        faults::alarm_run(&self.state, &self.env)?;
        let config = settings::config(&self.env);
        let Some(delivery) = settings::delivery(&config) else {
            console_error!(
                "inbox waits for valid delivery settings ({}); nothing is sent or forgotten meanwhile",
                config.problems.settings().join(", ")
            );
            return self
                .state
                .storage()
                .set_alarm(alarm_at(now_ms() + MISCONFIGURED_RETRY_MS))
                .await;
        };
        let started = now_ms();
        let mut budget = SubrequestBudget::new(delivery.subrequest_limit);
        // Kept for the dead-letter index, which must hear of every dead letter.
        let index_reserve = 1;
        budget.take(index_reserve);
        let mut stopped = self.classify_stored(&config, delivery, &mut budget).await?;
        self.settle_unrouted(delivery)?;
        self.expire(started, delivery)?;
        let mut deliveries = DELIVERIES_PER_ALARM;
        let mut attempts = 0;
        'rounds: while stopped == Stopped::Done {
            let due: Vec<Head> = self
                .heads(delivery.after_dead_letter)?
                .into_iter()
                .filter(|h| h.next_attempt_at_ms <= now_ms())
                .collect();
            if due.is_empty() {
                break;
            }
            for head in due {
                if deliveries == 0
                    || now_ms() - started > ALARM_TIME_BUDGET_MS
                    || !budget.allows(SUBREQUESTS_PER_TRY)
                {
                    stopped = Stopped::Budget;
                    break 'rounds;
                }
                deliveries -= 1;
                attempts += 1;
                self.attempt(&head, delivery, &mut budget).await?;
            }
        }
        self.sync_index(delivery).await?;
        self.expire(now_ms(), delivery)?;
        // The reserve counts as spent: the index may have been called.
        console_log!(
            "{}",
            serde_json::json!({
                "event": "inbox_alarm",
                "attempts": attempts,
                "subrequests": budget.used(),
                "subrequest_limit": budget.limit(),
                "handed_over": stopped == Stopped::Budget,
            })
        );
        if stopped == Stopped::Budget {
            // More is due than one run may do: the next run starts at once, with fresh budgets.
            return self.state.storage().set_alarm(alarm_at(now_ms())).await;
        }
        self.reschedule(delivery).await
    }

    /// One attempt to hand a consumer its first pending event: the core plans it, this sends.
    async fn attempt(
        &self,
        head: &Head,
        delivery: &DeliveryConfig,
        budget: &mut SubrequestBudget,
    ) -> Result<()> {
        let level = head.risk_level.parse().unwrap_or(Level::Unknown);
        // A fresh draw per attempt spreads traffic over origins of equal priority by weight.
        let candidates = origins_for(
            &delivery.origins,
            &head.consumer,
            &head.webhook_type,
            level,
            random_seed(),
        );
        let health = health::snapshot(&self.env, budget).await;
        let rejected = self.rejected_by(head)?;
        let mut plan = match head.cloud_event.as_deref() {
            Some(_) => Plan::new(
                candidates,
                &rejected,
                |name| health.get(name).copied(),
                now_ms(),
            ),
            None => Plan::without_payload(now_ms()),
        };
        let cloud_event = head.cloud_event.as_deref().unwrap_or_default();
        let mut rejections = Vec::new();
        while plan.remaining() > 0 {
            if !budget.take(1) {
                plan.stop(now_ms());
                break;
            }
            let Some(target) = plan.next_origin() else {
                break;
            };
            let (result, retry_after) = origin::deliver(
                target,
                delivery.signing_secrets_for(target),
                &head.id,
                cloud_event,
            )
            .await;
            let at = now_ms();
            if let Some(up) = result.health_signal() {
                let last_seen = health.get(&target.name).copied();
                if !report_changes_nothing(last_seen, up, at) && budget.take(1) {
                    health::report(&self.env, &target.name, up, retry_after, at).await;
                }
            }
            if result.is_rejection() {
                if let Some(status) = result.status() {
                    rejections.push((target.name.clone(), status));
                }
            }
            if let AttemptResult::Redirect { status, .. } = &result {
                console_log!(
                    "{} answered {} with a redirect {status}",
                    target.name,
                    head.id
                );
            }
            plan.record(target, result, at);
        }
        let (verdict, log) = plan.finish();
        self.log_attempts(head, &log)?;
        self.record_rejections(head, &rejections)?;
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
        match before.after_attempt(&verdict, now, &delivery.retry_schedule, random_seed()) {
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
                self.settle(head.event_seq, delivery)?;
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
                self.settle(head.event_seq, delivery)?;
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

    /// Puts dead letters back in line with a fresh schedule, forgetting past rejections (the
    /// operator replays because the origin was fixed).
    async fn replay(&self, mut request: Request) -> Result<Response> {
        #[derive(Deserialize)]
        struct Dead {
            event_seq: i64,
            consumer: String,
            id: String,
        }
        let ask: ReplayRequest = request.json().await?;
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
            // Pending again: nothing of the event may expire.
            self.sql().exec(
                "UPDATE events SET payload_expires_at_ms = NULL, forget_at_ms = NULL WHERE seq = ?",
                vec![copy.event_seq.into()],
            )?;
            console_log!("replaying {} for consumer {}", copy.id, copy.consumer);
        }
        // The listing should not show what was just replayed; if the index is unreachable (or
        // the delivery settings are broken) the alarm pushes the change later.
        let config = settings::config(&self.env);
        if let Some(delivery) = settings::delivery(&config) {
            self.sync_index(delivery).await?;
        }
        self.wake_by(now).await?;
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

    /// Absorbs a failed alarm run: logs it and re-arms with a backoff, so pending work always
    /// has an alarm. Only a failure to set the alarm itself is left to the platform's retries.
    async fn after_failed_run(&self, error: worker::Error) -> Result<()> {
        #[derive(Deserialize)]
        struct Failures {
            n: i64,
        }
        let sql = self.sql();
        let failures = sql
            .exec(
                "INSERT INTO meta (key, value) VALUES ('alarm_failures', '1') \
                 ON CONFLICT(key) DO UPDATE SET value = CAST(value AS INTEGER) + 1 \
                 RETURNING CAST(value AS INTEGER) AS n",
                None,
            )
            .and_then(|cursor| cursor.to_array::<Failures>())
            .ok()
            .and_then(|rows| rows.first().map(|r| r.n))
            .unwrap_or(1);
        let failures = u32::try_from(failures).unwrap_or(u32::MAX);
        let wait = alarm_backoff_ms(failures, faults::alarm_backoff_base_ms(&self.env));
        console_error!(
            "inbox alarm run failed ({failures} in a row), next run in {wait} ms: {error}"
        );
        let wait = i64::try_from(wait).unwrap_or(i64::MAX);
        self.state
            .storage()
            .set_alarm(alarm_at(now_ms().saturating_add(wait)))
            .await
    }
}

impl DurableObject for Inbox {
    fn new(state: State, env: Env) -> Self {
        if let Err(error) = Self::migrate(&state.storage().sql()) {
            console_error!("inbox schema could not be brought up to date: {error}");
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
        match self.run_alarm().await {
            Ok(()) => {
                // Only the backoff's count; if it stays, the next failure waits a little longer.
                if let Err(error) = self
                    .sql()
                    .exec("DELETE FROM meta WHERE key = 'alarm_failures'", None)
                {
                    console_error!("inbox could not reset its alarm failure count: {error}");
                }
            }
            Err(error) => self.after_failed_run(error).await?,
        }
        Response::ok("done")
    }
}
