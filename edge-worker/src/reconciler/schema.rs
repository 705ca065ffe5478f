//! The reconciler's tables, and the migrations that bring an older object's up to date.

use worker::Result;

use crate::rows::{self, Columns};

/// The schema as it stands, for an object that never stored anything.
const SCHEMA_CURRENT: &str = "
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE sweep_state (id INTEGER PRIMARY KEY CHECK (id = 1), state TEXT NOT NULL);
CREATE TABLE seen (
    session_id TEXT PRIMARY KEY, status TEXT NOT NULL, gap_since INTEGER,
    checked_at INTEGER NOT NULL, created_at INTEGER NOT NULL,
    tries INTEGER NOT NULL DEFAULT 0, failure TEXT, failure_status INTEGER, retry_at INTEGER
);
CREATE INDEX seen_by_creation ON seen (created_at);
CREATE INDEX seen_set_aside ON seen (tries) WHERE tries > 0;
CREATE TABLE erased (key TEXT PRIMARY KEY, at INTEGER NOT NULL);
";

/// The first release's schema (no-ops where it exists) and the changes since, in order;
/// `meta.schema_version` counts those applied.
///
/// 1. Set-aside gaps (their tries, failure and next try), erasure marks, and `meta`.
const SCHEMA_V1: &str = "
CREATE TABLE IF NOT EXISTS sweep_state (id INTEGER PRIMARY KEY CHECK (id = 1), state TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS seen (
    session_id TEXT PRIMARY KEY, status TEXT NOT NULL, gap_since INTEGER,
    checked_at INTEGER NOT NULL, created_at INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS seen_by_creation ON seen (created_at);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
";
const MIGRATIONS: &[&str] = &["
ALTER TABLE seen ADD COLUMN tries INTEGER NOT NULL DEFAULT 0;
ALTER TABLE seen ADD COLUMN failure TEXT;
ALTER TABLE seen ADD COLUMN failure_status INTEGER;
ALTER TABLE seen ADD COLUMN retry_at INTEGER;
CREATE INDEX IF NOT EXISTS seen_set_aside ON seen (tries) WHERE tries > 0;
CREATE TABLE IF NOT EXISTS erased (key TEXT PRIMARY KEY, at INTEGER NOT NULL);
"];

/// Creates the schema, or brings an older one up to date.
pub(super) fn migrate(sql: &worker::SqlStorage) -> Result<()> {
    let existing = rows::first(
        &sql.exec(
            "SELECT COUNT(*) FROM sqlite_master WHERE type = 'table' AND name = 'seen'",
            None,
        )?,
        Columns::int,
    )?;
    let set_version = |version: usize| {
        sql.exec(
            "INSERT INTO meta (key, value) VALUES ('schema_version', ?) \
             ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            vec![version.to_string().into()],
        )
        .map(drop)
    };
    if existing.unwrap_or(0) == 0 {
        sql.exec(SCHEMA_CURRENT, None)?;
        return set_version(MIGRATIONS.len());
    }
    sql.exec(SCHEMA_V1, None)?;
    let applied = rows::first(
        &sql.exec(
            "SELECT CAST(value AS INTEGER) FROM meta WHERE key = 'schema_version'",
            None,
        )?,
        Columns::int,
    )?
    .unwrap_or(0);
    for (index, migration) in MIGRATIONS
        .iter()
        .enumerate()
        .skip(usize::try_from(applied).unwrap_or(0))
    {
        sql.exec(migration, None)?;
        set_version(index + 1)?;
    }
    Ok(())
}
