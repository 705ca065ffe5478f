//! The inbox's `meta` table: single values kept by key (the schema version, the subject, the
//! erasure mark, the alarm's failure count, the alerts raised). The helpers here are the
//! ones more than one part of the store needs; the keys the core's changes write are written
//! with the rest of those changes ([`super::write`]).

use worker::{Result, SqlStorage};

use crate::rows::{self, Columns};

pub(super) fn set_meta(sql: &SqlStorage, key: &str, value: &str) -> Result<()> {
    sql.exec(
        "INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET value = excluded.value",
        vec![key.into(), value.into()],
    )?;
    Ok(())
}

/// A number kept in `meta` (0 when absent).
pub(in crate::inbox) fn meta_number(sql: &SqlStorage, key: &str) -> Result<i64> {
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
pub(in crate::inbox) fn set_meta_number(
    sql: &SqlStorage,
    key: &str,
    value: Option<i64>,
) -> Result<()> {
    match value {
        Some(n) => set_meta(sql, key, &n.to_string()),
        None => sql
            .exec("DELETE FROM meta WHERE key = ?", vec![key.into()])
            .map(drop),
    }
}
