//! Query results read by column position, from the cursor's raw arrays.
//!
//! `SqlCursor::to_array` goes through serde-wasm-bindgen: a property lookup across the JS
//! boundary for every field of every row, and a deserializer compiled into the upload for
//! every row type. Reading the raw row is a few calls per cell and one small reader per query.

use std::vec::IntoIter;

use worker::{Error, Result, SqlCursor, SqlStorageValue};

/// One row's cells, taken left to right in the order the query selects them.
pub(crate) struct Columns(IntoIter<SqlStorageValue>);

impl From<Vec<SqlStorageValue>> for Columns {
    fn from(row: Vec<SqlStorageValue>) -> Self {
        Self(row.into_iter())
    }
}

impl Columns {
    fn next(&mut self) -> Result<SqlStorageValue> {
        self.0
            .next()
            .ok_or_else(|| Error::from("a query returned fewer columns than it selects"))
    }

    /// An INTEGER column that is never NULL.
    pub(crate) fn int(&mut self) -> Result<i64> {
        self.opt_int()?
            .ok_or_else(|| Error::from("a NOT NULL integer column held NULL"))
    }

    /// An INTEGER column that may be NULL.
    pub(crate) fn opt_int(&mut self) -> Result<Option<i64>> {
        match self.next()? {
            SqlStorageValue::Null => Ok(None),
            SqlStorageValue::Integer(n) => Ok(Some(n)),
            SqlStorageValue::Boolean(b) => Ok(Some(i64::from(b))),
            other => Err(Error::from(format!(
                "an integer column held {}",
                kind(&other)
            ))),
        }
    }

    /// A TEXT column that is never NULL.
    pub(crate) fn text(&mut self) -> Result<String> {
        self.opt_text()?
            .ok_or_else(|| Error::from("a NOT NULL text column held NULL"))
    }

    /// A TEXT column that may be NULL.
    pub(crate) fn opt_text(&mut self) -> Result<Option<String>> {
        match self.next()? {
            SqlStorageValue::Null => Ok(None),
            SqlStorageValue::String(text) => Ok(Some(text)),
            other => Err(Error::from(format!("a text column held {}", kind(&other)))),
        }
    }
}

/// The SQLite type a cell held, for errors (never its value: cells can hold identity data).
fn kind(value: &SqlStorageValue) -> &'static str {
    match value {
        SqlStorageValue::Null => "NULL",
        SqlStorageValue::Boolean(_) => "a boolean",
        SqlStorageValue::Integer(_) => "an integer",
        SqlStorageValue::Float(_) => "a real",
        SqlStorageValue::String(_) => "text",
        SqlStorageValue::Blob(_) => "a blob",
    }
}

/// Every row of `cursor`, each read by `read`.
pub(crate) fn all<T>(
    cursor: &SqlCursor,
    mut read: impl FnMut(&mut Columns) -> Result<T>,
) -> Result<Vec<T>> {
    let mut rows = Vec::new();
    each(cursor, &mut |row| {
        rows.push(read(row)?);
        Ok(())
    })?;
    Ok(rows)
}

/// Hands every row of `cursor` to `read`. Behind `dyn`, so the walk over the cursor is
/// compiled once rather than once per query's row type (the upload pays for every copy).
fn each(cursor: &SqlCursor, read: &mut dyn FnMut(&mut Columns) -> Result<()>) -> Result<()> {
    for row in cursor.raw() {
        read(&mut Columns::from(row?))?;
    }
    Ok(())
}

/// The first row of `cursor`, if there is one; the cursor is not read further.
pub(crate) fn first<T>(
    cursor: &SqlCursor,
    read: impl FnOnce(&mut Columns) -> Result<T>,
) -> Result<Option<T>> {
    match cursor.raw().next() {
        Some(row) => read(&mut Columns::from(row?)).map(Some),
        None => Ok(None),
    }
}
