//! How an inbox is kept in its Durable Object's SQLite: the schema, loading the core's
//! machine from it, and writing each [`Change`] the machine makes. The text of every stored
//! value is spelled in the core (`didit_edge_core::inbox::record`), which also reads it back.
//!
//! Loading is strict: a stored value this release does not know (a corrupted state, an id
//! derivation from a future release) is never read as some default. The row is handed to the
//! machine as [`Unreadable`], which leaves it as it is and never sends its copy, and it is
//! logged (`"event":"storage_unreadable"`) and alerted once ([`alert_unreadable`]).

use didit_edge_core::alert::{not_yet_raised, Alert};
use didit_edge_core::attempt::LogEntry;
use didit_edge_core::delivery::CopyState;
use didit_edge_core::inbox::{
    flag_from_number, level_from_str, subject_kind, BadValue, Change, CopyRecord, EventRecord,
    IdVersion, Inbox, IndexSync, Rejected, RowKey, Seq, StoredContent, StoredState, Unreadable,
};
use didit_edge_core::risk::Level;
use didit_edge_core::time::{UnixMs, UnixSecs};
use didit_edge_core::verify::Verified;
use worker::{console_error, Env, Result, SqlStorage, SqlStorageValue};

use crate::dead_letters::LoggedAttempt;
use crate::rows::{self, Columns};

/// The schema the first release created; [`MIGRATIONS`] brings it up to date.
///
/// `events` holds each event once (its payload while a consumer may still need it, then only
/// what deduplication needs); `deliveries` one row per event and consumer; `refusals` the
/// origins that answered a copy's last attempt with a 3xx or 4xx; `attempts` every request
/// made, the dead-letter attempt log.
const SCHEMA_V1: &str = "
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS events (
    seq INTEGER PRIMARY KEY AUTOINCREMENT, id TEXT NOT NULL UNIQUE, alias TEXT,
    received_at_ms INTEGER NOT NULL, webhook_type TEXT NOT NULL, risk_level TEXT NOT NULL,
    created_at INTEGER NOT NULL, cloud_event TEXT, payload_expires_at_ms INTEGER, forget_at_ms INTEGER
);
CREATE INDEX IF NOT EXISTS events_alias ON events(alias) WHERE alias IS NOT NULL;
CREATE TABLE IF NOT EXISTS deliveries (
    event_seq INTEGER NOT NULL, consumer TEXT NOT NULL, state TEXT NOT NULL DEFAULT 'pending',
    failures INTEGER NOT NULL DEFAULT 0, next_attempt_at_ms INTEGER, delivered_at_ms INTEGER,
    dead_at_ms INTEGER, dead_reason TEXT, origin TEXT, last_error TEXT, index_sync TEXT,
    PRIMARY KEY (event_seq, consumer)
);
CREATE TABLE IF NOT EXISTS refusals (
    event_seq INTEGER NOT NULL, consumer TEXT NOT NULL, origin TEXT NOT NULL,
    status INTEGER NOT NULL, at_ms INTEGER NOT NULL, PRIMARY KEY (event_seq, consumer, origin)
);
CREATE TABLE IF NOT EXISTS attempts (
    event_seq INTEGER NOT NULL, consumer TEXT NOT NULL, at_ms INTEGER NOT NULL,
    origin TEXT, status INTEGER, error TEXT
);
CREATE INDEX IF NOT EXISTS attempts_event ON attempts(event_seq, consumer);
";

/// Schema changes after the first release, in order; `meta.schema_version` counts how many an
/// object has applied.
///
/// 1. Event ids with the content digest (`id_version` 2; older rows are 1), the status for
///    matching aliases, events stored unclassified (`classified` 0, with Didit's `body`, how it
///    was `verified`, whether it is a `test`), and where a redirect pointed.
/// 2. Didit `event_id`s attached to an event after its claim (a resend matched to it).
/// 3. Columns nothing reads any more go: the first release's retention times
///    (`payload_expires_at_ms`, `forget_at_ms`; retention is computed from the settings in
///    force), a copy's `last_error` (the attempt log says it) and a refusal's `at_ms` (always
///    written as 0).
const MIGRATIONS: &[&str] = &[
    "
ALTER TABLE events ADD COLUMN status TEXT;
ALTER TABLE events ADD COLUMN id_version INTEGER NOT NULL DEFAULT 1;
ALTER TABLE events ADD COLUMN classified INTEGER NOT NULL DEFAULT 1;
ALTER TABLE events ADD COLUMN body TEXT;
ALTER TABLE events ADD COLUMN verified TEXT;
ALTER TABLE events ADD COLUMN test INTEGER NOT NULL DEFAULT 0;
ALTER TABLE attempts ADD COLUMN location TEXT;
",
    "
CREATE TABLE IF NOT EXISTS aliases (
    event_seq INTEGER NOT NULL, alias TEXT NOT NULL, PRIMARY KEY (event_seq, alias)
);
",
    "
ALTER TABLE events DROP COLUMN payload_expires_at_ms;
ALTER TABLE events DROP COLUMN forget_at_ms;
ALTER TABLE deliveries DROP COLUMN last_error;
ALTER TABLE refusals DROP COLUMN at_ms;
",
];

/// The schema as it stands after every migration, for an object that has never stored
/// anything: one statement list instead of the first schema and each change to it.
const SCHEMA_CURRENT: &str = "
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE events (
    seq INTEGER PRIMARY KEY AUTOINCREMENT, id TEXT NOT NULL UNIQUE, alias TEXT,
    received_at_ms INTEGER NOT NULL, webhook_type TEXT NOT NULL, risk_level TEXT NOT NULL,
    created_at INTEGER NOT NULL, cloud_event TEXT, status TEXT,
    id_version INTEGER NOT NULL DEFAULT 1, classified INTEGER NOT NULL DEFAULT 1,
    body TEXT, verified TEXT, test INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX events_alias ON events(alias) WHERE alias IS NOT NULL;
CREATE TABLE deliveries (
    event_seq INTEGER NOT NULL, consumer TEXT NOT NULL, state TEXT NOT NULL DEFAULT 'pending',
    failures INTEGER NOT NULL DEFAULT 0, next_attempt_at_ms INTEGER, delivered_at_ms INTEGER,
    dead_at_ms INTEGER, dead_reason TEXT, origin TEXT, index_sync TEXT,
    PRIMARY KEY (event_seq, consumer)
);
CREATE TABLE refusals (
    event_seq INTEGER NOT NULL, consumer TEXT NOT NULL, origin TEXT NOT NULL,
    status INTEGER NOT NULL, PRIMARY KEY (event_seq, consumer, origin)
);
CREATE TABLE attempts (
    event_seq INTEGER NOT NULL, consumer TEXT NOT NULL, at_ms INTEGER NOT NULL,
    origin TEXT, status INTEGER, error TEXT, location TEXT
);
CREATE INDEX attempts_event ON attempts(event_seq, consumer);
CREATE TABLE aliases (
    event_seq INTEGER NOT NULL, alias TEXT NOT NULL, PRIMARY KEY (event_seq, alias)
);
";

/// Whether an object's storage held anything before.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Storage {
    /// Never used: the current schema was just created, and there is nothing to load.
    Fresh,
    /// Created before (by this release or an older one, now brought up to date).
    Existing,
}

/// Creates the schema, or brings an older one up to date.
pub(super) fn migrate(sql: &SqlStorage) -> Result<Storage> {
    let existing = rows::first(
        &sql.exec(
            "SELECT COUNT(*) FROM sqlite_master WHERE type = 'table' AND name = 'events'",
            None,
        )?,
        Columns::int,
    )?;
    if existing.unwrap_or(0) == 0 {
        sql.exec(SCHEMA_CURRENT, None)?;
        set_meta(sql, "schema_version", &MIGRATIONS.len().to_string())?;
        return Ok(Storage::Fresh);
    }
    // Created by an older release: the first schema is there (these are no-ops), and the
    // changes since are applied in order.
    sql.exec(SCHEMA_V1, None)?;
    let applied = usize::try_from(meta_number(sql, "schema_version")?).unwrap_or(0);
    for (index, migration) in MIGRATIONS.iter().enumerate().skip(applied) {
        sql.exec(migration, None)?;
        set_meta(sql, "schema_version", &(index + 1).to_string())?;
    }
    Ok(Storage::Existing)
}

fn set_meta(sql: &SqlStorage, key: &str, value: &str) -> Result<()> {
    sql.exec(
        "INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET value = excluded.value",
        vec![key.into(), value.into()],
    )?;
    Ok(())
}

/// A number kept in `meta` (0 when absent).
pub(super) fn meta_number(sql: &SqlStorage, key: &str) -> Result<i64> {
    let number = rows::first(
        &sql.exec(
            "SELECT CAST(value AS INTEGER) FROM meta WHERE key = ?",
            vec![key.into()],
        )?,
        Columns::int,
    )?;
    Ok(number.unwrap_or(0))
}

/// Sets a number kept in `meta`; `None` removes it.
pub(super) fn set_meta_number(sql: &SqlStorage, key: &str, value: Option<i64>) -> Result<()> {
    match value {
        Some(n) => set_meta(sql, key, &n.to_string()),
        None => sql
            .exec("DELETE FROM meta WHERE key = ?", vec![key.into()])
            .map(drop),
    }
}

struct EventRow {
    seq: i64,
    id: String,
    id_version: i64,
    alias: Option<String>,
    webhook_type: String,
    status: Option<String>,
    created_at: i64,
    received_at_ms: i64,
    risk_level: String,
    classified: i64,
    has_payload: i64,
}

struct CopyRow {
    event_seq: i64,
    consumer: String,
    state: String,
    failures: i64,
    next_attempt_at_ms: Option<i64>,
    delivered_at_ms: Option<i64>,
    dead_at_ms: Option<i64>,
    dead_reason: Option<String>,
    origin: Option<String>,
    index_sync: Option<String>,
}

struct RejectionRow {
    event_seq: i64,
    consumer: String,
    origin: String,
    status: i64,
}

impl EventRow {
    /// The event's record, and the first value of its row this release does not know. An
    /// unreadable row's record is only what deduplication looks up (its id, aliases, type,
    /// status and times): the machine holds the event and never classifies, sends or forgets
    /// it. Its id derivation, if unknown, is taken as the broadest (legacy: its id and Didit's
    /// `event_id` for any status find it).
    fn record(self) -> (EventRecord, Option<BadValue>) {
        let id_version = IdVersion::from_number(self.id_version)
            .map_err(|unknown| BadValue::new("id_version", unknown, Some(self.id_version)));
        let risk_level = match flag_from_number(self.classified) {
            Ok(true) => level_from_str(&self.risk_level)
                .map(Some)
                .map_err(|unknown| BadValue::new("risk_level", unknown, Some(&self.risk_level))),
            Ok(false) => Ok(None),
            Err(unknown) => Err(BadValue::new("classified", unknown, Some(self.classified))),
        };
        let bad = id_version
            .as_ref()
            .err()
            .or(risk_level.as_ref().err())
            .cloned();
        let record = EventRecord {
            seq: Seq(self.seq),
            id: self.id,
            id_version: id_version.unwrap_or(IdVersion::Legacy),
            alias: self.alias,
            webhook_type: self.webhook_type,
            status: self.status,
            created_at: UnixSecs(self.created_at),
            received_at: UnixMs(self.received_at_ms),
            risk_level: risk_level.unwrap_or(None),
            has_payload: self.has_payload != 0,
        };
        (record, bad)
    }
}

impl CopyRow {
    fn key(&self) -> RowKey {
        RowKey::Copy {
            seq: Seq(self.event_seq),
            consumer: self.consumer.clone(),
        }
    }

    /// The copy's state and its index outbox entry, or the first value this release does not
    /// know.
    fn read(&self) -> std::result::Result<(CopyState, Option<IndexSync>), BadValue> {
        let state = StoredState {
            state: &self.state,
            failures: self.failures,
            next_attempt_at_ms: self.next_attempt_at_ms,
            delivered_at_ms: self.delivered_at_ms,
            dead_at_ms: self.dead_at_ms,
            dead_reason: self.dead_reason.as_deref(),
        }
        .read()?;
        let index = match self.index_sync.as_deref() {
            None => None,
            Some(text) => Some(
                text.parse()
                    .map_err(|unknown| BadValue::new("index_sync", unknown, Some(text)))?,
            ),
        };
        Ok((state, index))
    }
}

impl RejectionRow {
    fn read(&self) -> std::result::Result<Rejected, Unreadable> {
        let status = u16::try_from(self.status).map_err(|_| Unreadable {
            row: RowKey::Refusal {
                seq: Seq(self.event_seq),
                consumer: self.consumer.clone(),
                origin: self.origin.clone(),
            },
            value: BadValue::new(
                "status",
                didit_edge_core::inbox::UnknownValue::OutOfRange,
                Some(self.status),
            ),
        })?;
        Ok(Rejected {
            origin: self.origin.clone(),
            status,
        })
    }
}

/// Loads the machine from storage: the subject, every event (without payloads) and copy.
pub(super) fn load(sql: &SqlStorage) -> Result<Inbox> {
    let subject = rows::first(
        &sql.exec("SELECT value FROM meta WHERE key = 'subject'", None)?,
        Columns::text,
    )?;
    let events = rows::all(
        &sql.exec(
            "SELECT seq, id, id_version, alias, webhook_type, status, created_at, received_at_ms, \
             risk_level, classified, cloud_event IS NOT NULL FROM events",
            None,
        )?,
        |row| {
            Ok(EventRow {
                seq: row.int()?,
                id: row.text()?,
                id_version: row.int()?,
                alias: row.opt_text()?,
                webhook_type: row.text()?,
                status: row.opt_text()?,
                created_at: row.int()?,
                received_at_ms: row.int()?,
                risk_level: row.text()?,
                classified: row.int()?,
                has_payload: row.int()?,
            })
        },
    )?;
    let copies = rows::all(
        &sql.exec(
            "SELECT event_seq, consumer, state, failures, next_attempt_at_ms, delivered_at_ms, \
             dead_at_ms, dead_reason, origin, index_sync FROM deliveries",
            None,
        )?,
        |row| {
            Ok(CopyRow {
                event_seq: row.int()?,
                consumer: row.text()?,
                state: row.text()?,
                failures: row.int()?,
                next_attempt_at_ms: row.opt_int()?,
                delivered_at_ms: row.opt_int()?,
                dead_at_ms: row.opt_int()?,
                dead_reason: row.opt_text()?,
                origin: row.opt_text()?,
                index_sync: row.opt_text()?,
            })
        },
    )?;
    let rejections = rows::all(
        &sql.exec(
            "SELECT event_seq, consumer, origin, status FROM refusals",
            None,
        )?,
        |row| {
            Ok(RejectionRow {
                event_seq: row.int()?,
                consumer: row.text()?,
                origin: row.text()?,
                status: row.int()?,
            })
        },
    )?;
    let mut unreadable = Vec::new();
    let events: Vec<EventRecord> = events
        .into_iter()
        .map(|row| {
            let (record, bad) = row.record();
            unreadable.extend(bad.map(|value| Unreadable {
                row: RowKey::Event(record.seq),
                value,
            }));
            record
        })
        .collect();
    let mut refused: Vec<(i64, String, Rejected)> = Vec::new();
    for row in rejections {
        match row.read() {
            Ok(rejected) => refused.push((row.event_seq, row.consumer, rejected)),
            Err(bad) => unreadable.push(bad),
        }
    }
    let mut restored = Vec::new();
    for row in copies {
        let (state, index) = match row.read() {
            Ok(read) => read,
            Err(value) => {
                unreadable.push(Unreadable {
                    row: row.key(),
                    value,
                });
                continue;
            }
        };
        let rejected_by = refused
            .iter()
            .filter(|(seq, consumer, _)| *seq == row.event_seq && *consumer == row.consumer)
            .map(|(_, _, rejected)| rejected.clone())
            .collect();
        let copy = CopyRecord {
            state,
            delivered_to: row.origin,
            rejected_by,
            index,
        };
        restored.push((Seq(row.event_seq), row.consumer, copy));
    }
    let attached = rows::all(
        &sql.exec("SELECT event_seq, alias FROM aliases", None)?,
        |row| Ok((Seq(row.int()?), row.text()?)),
    )?;
    let erased_at = rows::first(
        &sql.exec(
            "SELECT CAST(value AS INTEGER) FROM meta WHERE key = 'erased_at_ms'",
            None,
        )?,
        Columns::int,
    )?;
    let inbox = Inbox::restore(subject, events, restored)
        .with_attached_aliases(attached)
        .with_erasure(erased_at.map(UnixMs))
        .with_unreadable(unreadable);
    for unreadable in inbox.unreadable() {
        console_error!(
            "{}",
            unreadable.to_line(
                event_id(&inbox, unreadable.row.seq()),
                subject_kind(inbox.subject())
            )
        );
    }
    Ok(inbox)
}

fn event_id(inbox: &Inbox, seq: Seq) -> Option<&str> {
    inbox
        .events()
        .find(|(record, _)| record.seq == seq)
        .map(|(record, _)| record.id.as_str())
}

/// The alerts for the rows `inbox` cannot read, found at `now_ms`.
pub(super) fn unreadable_alerts(inbox: &Inbox, now_ms: i64) -> Vec<Alert> {
    let kind = subject_kind(inbox.subject());
    inbox
        .unreadable()
        .iter()
        .map(|unreadable| {
            let event_id = event_id(inbox, unreadable.row.seq());
            Alert::storage_unreadable(unreadable, event_id, kind, now_ms)
        })
        .collect()
}

/// Where an inbox remembers which unreadable rows it has alerted about (their alert ids).
const ALERTED: &str = "unreadable_alerted";

/// Raises the `alerts` (about unreadable rows) this inbox has not raised before, so that an
/// operator hears of each row and value once, not on every run. What was raised is remembered
/// in `meta` (only while some row is unreadable). A failure is logged and left to the next run:
/// an alert that cannot go out must not stop the delivery of everything else.
pub(super) async fn alert_unreadable(env: &Env, sql: &SqlStorage, alerts: Vec<Alert>) {
    if alerts.is_empty() {
        return;
    }
    let read = sql
        .exec("SELECT value FROM meta WHERE key = ?", vec![ALERTED.into()])
        .and_then(|cursor| rows::first(&cursor, Columns::text));
    let raised = match read {
        Ok(raised) => raised.unwrap_or_default(),
        Err(error) => return console_error!("inbox could not read the alerts it raised: {error}"),
    };
    let (new, ids) = not_yet_raised(alerts, &raised);
    if let Err(error) = crate::alerts::enqueue(env, &new).await {
        return console_error!(
            "inbox could not raise its unreadable-row alerts, will retry: {error}"
        );
    }
    if ids != raised {
        if let Err(error) = set_meta(sql, ALERTED, &ids) {
            console_error!("inbox could not remember the alerts it raised: {error}");
        }
    }
}

fn put_copy(sql: &SqlStorage, seq: Seq, consumer: &str, copy: &CopyRecord) -> Result<()> {
    let stored = StoredState::of(copy.state);
    let values: Vec<SqlStorageValue> = vec![
        seq.0.into(),
        consumer.into(),
        stored.state.into(),
        stored.failures.into(),
        stored.next_attempt_at_ms.into(),
        stored.delivered_at_ms.into(),
        stored.dead_at_ms.into(),
        stored.dead_reason.into(),
        copy.delivered_to.as_deref().into(),
        copy.index.map(IndexSync::as_str).into(),
    ];
    sql.exec(
        "INSERT INTO deliveries (event_seq, consumer, state, failures, next_attempt_at_ms, delivered_at_ms, \
         dead_at_ms, dead_reason, origin, index_sync) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) \
         ON CONFLICT (event_seq, consumer) DO UPDATE SET state = excluded.state, failures = excluded.failures, \
         next_attempt_at_ms = excluded.next_attempt_at_ms, delivered_at_ms = excluded.delivered_at_ms, \
         dead_at_ms = excluded.dead_at_ms, dead_reason = excluded.dead_reason, origin = excluded.origin, \
         index_sync = excluded.index_sync",
        values,
    )?;
    Ok(())
}

fn set_rejections(
    sql: &SqlStorage,
    seq: Seq,
    consumer: &str,
    rejected_by: &[Rejected],
) -> Result<()> {
    sql.exec(
        "DELETE FROM refusals WHERE event_seq = ? AND consumer = ?",
        vec![seq.0.into(), consumer.into()],
    )?;
    for rejected in rejected_by {
        sql.exec(
            "INSERT OR REPLACE INTO refusals (event_seq, consumer, origin, status) VALUES (?, ?, ?, ?)",
            vec![
                seq.0.into(),
                consumer.into(),
                rejected.origin.as_str().into(),
                i64::from(rejected.status).into(),
            ],
        )?;
    }
    Ok(())
}

/// Writes one change. Its statements run with no `.await` between them, so the runtime
/// commits them together.
pub(super) fn apply(sql: &SqlStorage, change: &Change) -> Result<()> {
    match change {
        Change::Subject(subject) => {
            sql.exec(
                "INSERT OR IGNORE INTO meta (key, value) VALUES ('subject', ?)",
                vec![subject.as_str().into()],
            )?;
        }
        Change::ForgetSubject => {
            sql.exec("DELETE FROM meta WHERE key = 'subject'", None)?;
        }
        Change::InsertEvent {
            event,
            content,
            copies,
        } => {
            let (classified, payload, body, verified, test) = match content {
                StoredContent::Classified { payload } => (1, payload.as_deref(), None, None, false),
                StoredContent::Unclassified {
                    body,
                    verified,
                    test,
                } => (
                    0,
                    None,
                    Some(body.as_str()),
                    Some(serde_json::to_string(verified)?),
                    *test,
                ),
            };
            sql.exec(
                "INSERT INTO events (seq, id, id_version, alias, received_at_ms, webhook_type, status, risk_level, \
                 created_at, classified, cloud_event, body, verified, test) \
                 VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                vec![
                    event.seq.0.into(),
                    event.id.as_str().into(),
                    event.id_version.number().into(),
                    event.alias.as_deref().into(),
                    event.received_at.0.into(),
                    event.webhook_type.as_str().into(),
                    event.status.as_deref().into(),
                    event.risk_level.unwrap_or(Level::Unknown).as_str().into(),
                    event.created_at.0.into(),
                    i64::from(classified).into(),
                    payload.into(),
                    body.into(),
                    verified.into(),
                    i64::from(test).into(),
                ],
            )?;
            for (consumer, copy) in copies {
                put_copy(sql, event.seq, consumer, copy)?;
            }
        }
        Change::Classify {
            seq,
            risk_level,
            payload,
            copies,
        } => {
            sql.exec(
                "UPDATE events SET classified = 1, body = NULL, verified = NULL, risk_level = ?, cloud_event = ? \
                 WHERE seq = ?",
                vec![risk_level.as_str().into(), payload.as_deref().into(), seq.0.into()],
            )?;
            for (consumer, copy) in copies {
                put_copy(sql, *seq, consumer, copy)?;
            }
        }
        Change::PutCopy {
            seq,
            consumer,
            copy,
        } => put_copy(sql, *seq, consumer, copy)?,
        Change::SetRejections {
            seq,
            consumer,
            rejected_by,
        } => set_rejections(sql, *seq, consumer, rejected_by)?,
        Change::AppendAttempts {
            seq,
            consumer,
            entries,
        } => {
            for entry in entries {
                append_attempt(sql, *seq, consumer, entry)?;
            }
        }
        Change::DropPayload(seq) => {
            sql.exec(
                "UPDATE events SET cloud_event = NULL WHERE seq = ?",
                vec![seq.0.into()],
            )?;
        }
        Change::ForgetEvent(seq) => {
            for table in ["deliveries", "refusals", "attempts", "aliases"] {
                sql.exec(
                    &format!("DELETE FROM {table} WHERE event_seq = ?"),
                    vec![seq.0.into()],
                )?;
            }
            sql.exec("DELETE FROM events WHERE seq = ?", vec![seq.0.into()])?;
        }
        Change::AttachAlias { seq, alias } => {
            sql.exec(
                "INSERT OR IGNORE INTO aliases (event_seq, alias) VALUES (?, ?)",
                vec![seq.0.into(), alias.as_str().into()],
            )?;
        }
        Change::MarkErased(at) => set_meta(sql, "erased_at_ms", &at.0.to_string())?,
        Change::ForgetErasure => {
            sql.exec("DELETE FROM meta WHERE key = 'erased_at_ms'", None)?;
        }
    }
    Ok(())
}

fn append_attempt(sql: &SqlStorage, seq: Seq, consumer: &str, entry: &LogEntry) -> Result<()> {
    sql.exec(
        "INSERT INTO attempts (event_seq, consumer, at_ms, origin, status, error, location) \
         VALUES (?, ?, ?, ?, ?, ?, ?)",
        vec![
            seq.0.into(),
            consumer.into(),
            entry.at_ms.into(),
            entry.origin.as_deref().into(),
            entry.status.map(i64::from).into(),
            entry.error.into(),
            entry.location.as_deref().into(),
        ],
    )?;
    Ok(())
}

/// The CloudEvent of an event, while it is stored.
pub(super) fn payload(sql: &SqlStorage, seq: Seq) -> Result<Option<String>> {
    let payload = rows::first(
        &sql.exec(
            "SELECT cloud_event FROM events WHERE seq = ?",
            vec![seq.0.into()],
        )?,
        Columns::opt_text,
    )?;
    Ok(payload.flatten())
}

/// What an unclassified event was stored with: Didit's body, how it was verified, the test
/// flag, and when it was received.
pub(super) struct StoredBody {
    /// Didit's body.
    pub body: String,
    /// How it was authenticated.
    pub verified: Verified,
    /// A console test delivery.
    pub test: bool,
    /// When the edge received it.
    pub received_at: UnixMs,
}

/// Reads an unclassified event's body.
pub(super) fn stored_body(sql: &SqlStorage, seq: Seq) -> Result<StoredBody> {
    let stored = rows::first(
        &sql.exec(
            "SELECT body, verified, test, received_at_ms FROM events WHERE seq = ?",
            vec![seq.0.into()],
        )?,
        |row| {
            Ok(StoredBody {
                body: row.opt_text()?.unwrap_or_default(),
                verified: serde_json::from_str(&row.opt_text()?.unwrap_or_default())?,
                test: row.int()? != 0,
                received_at: UnixMs(row.int()?),
            })
        },
    )?;
    stored.ok_or_else(|| worker::Error::from(format!("event {} is not stored", seq.0)))
}

/// The latest `limit` attempts of one copy, oldest first.
pub(super) fn attempt_log(
    sql: &SqlStorage,
    seq: Seq,
    consumer: &str,
    limit: usize,
) -> Result<Vec<LoggedAttempt>> {
    let mut log = rows::all(
        &sql.exec(
            "SELECT at_ms, origin, status, error, location FROM attempts WHERE event_seq = ? AND consumer = ? \
             ORDER BY rowid DESC LIMIT ?",
            vec![
                seq.0.into(),
                consumer.into(),
                i64::try_from(limit).unwrap_or(i64::MAX).into(),
            ],
        )?,
        |row| {
            Ok(LoggedAttempt {
                at_ms: row.int()?,
                origin: row.opt_text()?,
                status: row.opt_int()?.and_then(|status| u16::try_from(status).ok()),
                error: row.opt_text()?,
                location: row.opt_text()?,
            })
        },
    )?;
    log.reverse();
    Ok(log)
}
