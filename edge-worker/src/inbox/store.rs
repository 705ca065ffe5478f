//! How an inbox is kept in its Durable Object's SQLite: the schema, loading the core's
//! machine from it, and writing each [`Change`] the machine makes. Nothing here decides
//! anything; the state names below are the one place they are spelled as text.

use didit_edge_core::attempt::{DeadReason, LogEntry};
use didit_edge_core::delivery::CopyState;
use didit_edge_core::inbox::{
    Change, CopyRecord, EventRecord, IdVersion, Inbox, IndexSync, Rejected, Seq, StoredContent,
};
use didit_edge_core::risk::Level;
use didit_edge_core::time::{UnixMs, UnixSecs};
use didit_edge_core::verify::Verified;
use worker::{Result, SqlStorage, SqlStorageValue};

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
];

/// The schema as it stands after every migration, for an object that has never stored
/// anything: one statement list instead of the first schema and each change to it.
const SCHEMA_CURRENT: &str = "
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE events (
    seq INTEGER PRIMARY KEY AUTOINCREMENT, id TEXT NOT NULL UNIQUE, alias TEXT,
    received_at_ms INTEGER NOT NULL, webhook_type TEXT NOT NULL, risk_level TEXT NOT NULL,
    created_at INTEGER NOT NULL, cloud_event TEXT, payload_expires_at_ms INTEGER, forget_at_ms INTEGER,
    status TEXT, id_version INTEGER NOT NULL DEFAULT 1, classified INTEGER NOT NULL DEFAULT 1,
    body TEXT, verified TEXT, test INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX events_alias ON events(alias) WHERE alias IS NOT NULL;
CREATE TABLE deliveries (
    event_seq INTEGER NOT NULL, consumer TEXT NOT NULL, state TEXT NOT NULL DEFAULT 'pending',
    failures INTEGER NOT NULL DEFAULT 0, next_attempt_at_ms INTEGER, delivered_at_ms INTEGER,
    dead_at_ms INTEGER, dead_reason TEXT, origin TEXT, last_error TEXT, index_sync TEXT,
    PRIMARY KEY (event_seq, consumer)
);
CREATE TABLE refusals (
    event_seq INTEGER NOT NULL, consumer TEXT NOT NULL, origin TEXT NOT NULL,
    status INTEGER NOT NULL, at_ms INTEGER NOT NULL, PRIMARY KEY (event_seq, consumer, origin)
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

fn copy_state(row: &CopyRow) -> CopyState {
    let reason = || {
        row.dead_reason
            .as_deref()
            .and_then(|r| r.parse().ok())
            .unwrap_or(DeadReason::RetriesExhausted)
    };
    let at = |ms: Option<i64>| UnixMs(ms.unwrap_or_default());
    match row.state.as_str() {
        "delivered" => CopyState::Delivered {
            at: at(row.delivered_at_ms),
        },
        "dead" => CopyState::Dead {
            at: at(row.dead_at_ms),
            reason: reason(),
        },
        "expired" => CopyState::Expired {
            at: at(row.dead_at_ms),
            reason: reason(),
        },
        _ => CopyState::Pending {
            failures: u32::try_from(row.failures).unwrap_or(u32::MAX),
            next_attempt_at: at(row.next_attempt_at_ms),
        },
    }
}

fn index_sync(text: Option<&str>) -> Option<IndexSync> {
    match text? {
        "put" => Some(IndexSync::Put),
        _ => Some(IndexSync::Remove),
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
    let events = events.into_iter().map(|row| EventRecord {
        seq: Seq(row.seq),
        id: row.id,
        id_version: match row.id_version {
            3 => IdVersion::Reconciled,
            2 => IdVersion::ContentDigest,
            _ => IdVersion::Legacy,
        },
        alias: row.alias,
        webhook_type: row.webhook_type,
        status: row.status,
        created_at: UnixSecs(row.created_at),
        received_at: UnixMs(row.received_at_ms),
        risk_level: (row.classified != 0).then(|| row.risk_level.parse().unwrap_or(Level::Unknown)),
        has_payload: row.has_payload != 0,
    });
    let copies = copies.into_iter().map(|row| {
        let rejected_by = rejections
            .iter()
            .filter(|r| r.event_seq == row.event_seq && r.consumer == row.consumer)
            .map(|r| Rejected {
                origin: r.origin.clone(),
                status: u16::try_from(r.status).unwrap_or(0),
            })
            .collect();
        let copy = CopyRecord {
            state: copy_state(&row),
            delivered_to: row.origin.clone(),
            rejected_by,
            index: index_sync(row.index_sync.as_deref()),
        };
        (Seq(row.event_seq), row.consumer, copy)
    });
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
    Ok(Inbox::restore(subject, events, copies)
        .with_attached_aliases(attached)
        .with_erasure(erased_at.map(UnixMs)))
}

/// A copy's row, as (state, failures, next attempt, delivered at, dead at, reason).
fn copy_columns(state: &CopyState) -> [SqlStorageValue; 6] {
    let none = || SqlStorageValue::Null;
    match *state {
        CopyState::Pending {
            failures,
            next_attempt_at,
        } => [
            "pending".into(),
            i64::from(failures).into(),
            next_attempt_at.0.into(),
            none(),
            none(),
            none(),
        ],
        CopyState::Delivered { at } => [
            "delivered".into(),
            0i64.into(),
            none(),
            at.0.into(),
            none(),
            none(),
        ],
        CopyState::Dead { at, reason } | CopyState::Expired { at, reason } => [
            if matches!(state, CopyState::Dead { .. }) {
                "dead".into()
            } else {
                "expired".into()
            },
            0i64.into(),
            none(),
            none(),
            at.0.into(),
            reason.as_str().into(),
        ],
    }
}

fn put_copy(sql: &SqlStorage, seq: Seq, consumer: &str, copy: &CopyRecord) -> Result<()> {
    let mut values: Vec<SqlStorageValue> = vec![seq.0.into(), consumer.into()];
    values.extend(copy_columns(&copy.state));
    values.push(copy.delivered_to.as_deref().into());
    values.push(
        copy.index
            .map(|sync| match sync {
                IndexSync::Put => "put",
                IndexSync::Remove => "remove",
            })
            .into(),
    );
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
            "INSERT OR REPLACE INTO refusals (event_seq, consumer, origin, status, at_ms) VALUES (?, ?, ?, ?, 0)",
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
                    id_version_number(event.id_version).into(),
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

/// How the `id_version` column writes each derivation (1 is what rows from before the column
/// default to).
fn id_version_number(version: IdVersion) -> i64 {
    match version {
        IdVersion::Legacy => 1,
        IdVersion::ContentDigest => 2,
        IdVersion::Reconciled => 3,
    }
}
