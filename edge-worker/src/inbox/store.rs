//! How an inbox is kept in its Durable Object's SQLite: the schema, loading the core's
//! machine from it, and writing each [`Change`] the machine makes. The text of every stored
//! value is spelled in the core (`didit_edge_core::inbox::record`), which also reads it back.
//!
//! Loading is strict: a stored value this release does not know (a corrupted state, an id
//! derivation from a future release) is never read as some default. The row is handed to the
//! machine as [`Unreadable`], which leaves it as it is and never sends its copy, and it is
//! logged (`"event":"storage_unreadable"`) and alerted once ([`alert_unreadable`]).
//!
//! Storage is billed by the row written (a thousand times a row read), and most objects hold
//! one subject's one event, so the layout is shaped by what one event costs: an object that
//! never stored anything creates one table, `events`, and an event is one row of it, its
//! copies included, and each copy its history (the requests made for it). The tables only some
//! objects need (`meta`, `refusals`, `aliases`) are created the first time one is written
//! ([`Tables`]); `attempts`, where older releases logged failed requests, exists only where an
//! older release created it.
//!
//! This file is the store's root and holds its schema: the tables, and the migrations that
//! bring an older object's storage to them, in one place next to the statement lists they
//! must add up to (`tests/test_schema.py` reads these constants from here and checks that a
//! fresh object, once it has created its later tables, and a migrated one end up with the
//! same tables). The rest is one module per seam:
//! - `meta`: single values kept by key, which several of the others read or write;
//! - `load`: the machine from storage, one reader per table;
//! - `write`: each [`Change`] as SQL, one writer per change, grouped by table;
//! - `read`: the values read only when the machine asks (payload, stored body, attempt log);
//! - `alerts`: raising, once each, the alerts about rows that could not be read.
//!
//! [`Change`]: didit_edge_core::inbox::Change
//! [`Unreadable`]: didit_edge_core::inbox::Unreadable

mod alerts;
mod load;
mod meta;
mod read;
mod write;

pub(super) use alerts::{alert_unreadable, unreadable_alerts};
pub(super) use load::load;
pub(super) use meta::{meta_number, set_meta_number};
pub(super) use read::{attempt_log, lookup_facts, payload, stored_body};
pub(super) use write::apply;

use worker::{Result, SqlStorage};

use crate::rows::{self, Columns};
use meta::set_meta;

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
/// 4. One row per event: its copies move into it (`events.copies`, the list [`write`] keeps),
///    and so does the subject's name (`events.subject`); `deliveries` goes, and so do the
///    `UNIQUE` id index, the alias index and `AUTOINCREMENT`, which nothing looks up (the
///    machine holds every record) but each event paid rows written for.
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
    "
CREATE TABLE events_v4 (
    seq INTEGER PRIMARY KEY, id TEXT NOT NULL, alias TEXT,
    received_at_ms INTEGER NOT NULL, webhook_type TEXT NOT NULL, risk_level TEXT NOT NULL,
    created_at INTEGER NOT NULL, cloud_event TEXT, status TEXT,
    id_version INTEGER NOT NULL DEFAULT 1, classified INTEGER NOT NULL DEFAULT 1,
    body TEXT, verified TEXT, test INTEGER NOT NULL DEFAULT 0,
    subject TEXT, copies TEXT NOT NULL DEFAULT '[]'
);
INSERT INTO events_v4 (seq, id, alias, received_at_ms, webhook_type, risk_level, created_at,
    cloud_event, status, id_version, classified, body, verified, test, subject, copies)
SELECT seq, id, alias, received_at_ms, webhook_type, risk_level, created_at, cloud_event, status,
    id_version, classified, body, verified, test,
    (SELECT value FROM meta WHERE key = 'subject'),
    COALESCE((SELECT json_group_array(json_object('consumer', consumer, 'state', state,
        'failures', failures, 'next_attempt_at_ms', next_attempt_at_ms,
        'delivered_at_ms', delivered_at_ms, 'dead_at_ms', dead_at_ms,
        'dead_reason', dead_reason, 'origin', origin, 'index_sync', index_sync))
        FROM deliveries WHERE deliveries.event_seq = events.seq), '[]')
FROM events;
DROP TABLE deliveries;
DROP TABLE events;
ALTER TABLE events_v4 RENAME TO events;
DELETE FROM meta WHERE key = 'subject';
",
];

/// What an object that has never stored anything creates: the one table every event needs.
const SCHEMA_CURRENT: &str = "
CREATE TABLE events (
    seq INTEGER PRIMARY KEY, id TEXT NOT NULL, alias TEXT,
    received_at_ms INTEGER NOT NULL, webhook_type TEXT NOT NULL, risk_level TEXT NOT NULL,
    created_at INTEGER NOT NULL, cloud_event TEXT, status TEXT,
    id_version INTEGER NOT NULL DEFAULT 1, classified INTEGER NOT NULL DEFAULT 1,
    body TEXT, verified TEXT, test INTEGER NOT NULL DEFAULT 0,
    subject TEXT, copies TEXT NOT NULL DEFAULT '[]'
);
";

/// Single values kept by key: the schema version, the erasure mark, the count of failed runs,
/// the unreadable rows already alerted. Created with the version it is at, so that an object
/// created by this release is never taken for one of the first release's.
const META_TABLE: &str = "
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
";
/// The origins that answered a copy's last attempt with a 3xx or 4xx.
const REFUSALS_TABLE: &str = "
CREATE TABLE IF NOT EXISTS refusals (
    event_seq INTEGER NOT NULL, consumer TEXT NOT NULL, origin TEXT NOT NULL,
    status INTEGER NOT NULL, PRIMARY KEY (event_seq, consumer, origin)
);
";
/// Every request made for a copy that was not delivered at its first try: the dead-letter
/// attempt log of releases before each copy kept its own history (`write::StoredCopy`). An
/// object that has it keeps it, read beside the copies' histories and emptied as its events
/// are forgotten; nothing creates it or writes to it any more. It is not migrated into the
/// copies: that would rewrite every row of every older inbox (rows written are what storage
/// bills) for a log that goes with its events anyway.
const ATTEMPTS_TABLE: &str = "
CREATE TABLE IF NOT EXISTS attempts (
    event_seq INTEGER NOT NULL, consumer TEXT NOT NULL, at_ms INTEGER NOT NULL,
    origin TEXT, status INTEGER, error TEXT, location TEXT
);
CREATE INDEX IF NOT EXISTS attempts_event ON attempts(event_seq, consumer);
";
/// Didit `event_id`s attached to an event after its claim.
const ALIASES_TABLE: &str = "
CREATE TABLE IF NOT EXISTS aliases (
    event_seq INTEGER NOT NULL, alias TEXT NOT NULL, PRIMARY KEY (event_seq, alias)
);
";

/// A table an object creates only when it first writes to it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Later {
    /// `meta`.
    Meta,
    /// `refusals`.
    Refusals,
    /// `attempts` (and its index): an older release's, read and emptied, never created.
    Attempts,
    /// `aliases`.
    Aliases,
}

impl Later {
    pub(super) fn name(self) -> &'static str {
        match self {
            Self::Meta => "meta",
            Self::Refusals => "refusals",
            Self::Attempts => "attempts",
            Self::Aliases => "aliases",
        }
    }

    fn schema(self) -> &'static str {
        match self {
            Self::Meta => META_TABLE,
            Self::Refusals => REFUSALS_TABLE,
            Self::Attempts => ATTEMPTS_TABLE,
            Self::Aliases => ALIASES_TABLE,
        }
    }
}

/// Which of the [`Later`] tables an object has, read from `sqlite_master` (rows read, not
/// written) by whoever is about to read or write one of them.
pub(super) struct Tables(Vec<String>);

impl Tables {
    pub(super) fn of(sql: &SqlStorage) -> Result<Self> {
        rows::all(
            &sql.exec("SELECT name FROM sqlite_master WHERE type = 'table'", None)?,
            Columns::text,
        )
        .map(Self)
    }

    /// Whether the object has `table`.
    pub(super) fn has(&self, table: Later) -> bool {
        self.has_named(table.name())
    }

    /// Whether the object has a table of that name.
    fn has_named(&self, name: &str) -> bool {
        self.0.iter().any(|table| table == name)
    }

    /// Creates `table` if the object does not have it yet (`meta` with the schema version).
    pub(super) fn ensure(&mut self, sql: &SqlStorage, table: Later) -> Result<()> {
        if self.has(table) {
            return Ok(());
        }
        sql.exec(table.schema(), None)?;
        if table == Later::Meta {
            set_meta(sql, "schema_version", &MIGRATIONS.len().to_string())?;
        }
        self.0.push(table.name().to_string());
        Ok(())
    }
}

/// Whether an object's storage held anything before.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Storage {
    /// Never used: the current schema was just created, and there is nothing to load.
    Fresh,
    /// Created before (by this release or an older one, now brought up to date).
    Existing,
}

/// Creates the schema, or brings an older one up to date. Every object an older release
/// created has `deliveries` (the first schema made it, and only migration 4 drops it), and its
/// `meta.schema_version` says which migrations it lacks; an object without `deliveries` is up
/// to date, whatever its later tables hold.
pub(super) fn migrate(sql: &SqlStorage) -> Result<Storage> {
    let tables = Tables::of(sql)?;
    if !tables.has_named("events") {
        sql.exec(SCHEMA_CURRENT, None)?;
        return Ok(Storage::Fresh);
    }
    if !tables.has_named("deliveries") {
        return Ok(Storage::Existing);
    }
    // Created by an older release: the first schema is there (these are no-ops), and the
    // changes since are applied in order.
    let applied = usize::try_from(meta_number(sql, "schema_version")?).unwrap_or(0);
    sql.exec(SCHEMA_V1, None)?;
    for (index, migration) in MIGRATIONS.iter().enumerate().skip(applied) {
        sql.exec(migration, None)?;
        set_meta(sql, "schema_version", &(index + 1).to_string())?;
    }
    Ok(Storage::Existing)
}
