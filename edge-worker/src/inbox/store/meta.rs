//! Single values kept by key in `meta`, a table an object creates the first time it keeps
//! one ([`Later::Meta`]); until then every value reads as absent.

use worker::{Result, SqlStorage};

use super::{Later, Tables};
use crate::rows::{self, Columns};

/// Sets `key` (the table must exist: see [`set_meta_text`]).
pub(super) fn set_meta(sql: &SqlStorage, key: &str, value: &str) -> Result<()> {
    sql.exec(
        "INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET value = excluded.value",
        vec![key.into(), value.into()],
    )?;
    Ok(())
}

/// Sets `key`, creating `meta` if the object has none yet.
pub(super) fn set_meta_text(sql: &SqlStorage, key: &str, value: &str) -> Result<()> {
    Tables::of(sql)?.ensure(sql, Later::Meta)?;
    set_meta(sql, key, value)
}

/// Removes `key`, if the object keeps it.
pub(super) fn delete_meta(sql: &SqlStorage, key: &str) -> Result<()> {
    if Tables::of(sql)?.has(Later::Meta) {
        sql.exec("DELETE FROM meta WHERE key = ?", vec![key.into()])?;
    }
    Ok(())
}

/// The text kept under `key`, if any.
pub(super) fn meta_text(sql: &SqlStorage, key: &str) -> Result<Option<String>> {
    if !Tables::of(sql)?.has(Later::Meta) {
        return Ok(None);
    }
    rows::first(
        &sql.exec("SELECT value FROM meta WHERE key = ?", vec![key.into()])?,
        Columns::text,
    )
}

/// The number kept under `key`; 0 if none is.
pub(in crate::inbox) fn meta_number(sql: &SqlStorage, key: &str) -> Result<i64> {
    if !Tables::of(sql)?.has(Later::Meta) {
        return Ok(0);
    }
    let number = rows::first(
        &sql.exec(
            "SELECT CAST(value AS INTEGER) FROM meta WHERE key = ?",
            vec![key.into()],
        )?,
        Columns::int,
    )?;
    Ok(number.unwrap_or(0))
}

/// Keeps `value` under `key`, or (with `None`) forgets it.
pub(in crate::inbox) fn set_meta_number(
    sql: &SqlStorage,
    key: &str,
    value: Option<i64>,
) -> Result<()> {
    match value {
        Some(n) => set_meta_text(sql, key, &n.to_string()),
        None => delete_meta(sql, key),
    }
}
