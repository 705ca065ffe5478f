//! Single values the adapter reads when the machine asks for them, not loaded with it: an
//! event's payload (only to send it), an unclassified event's stored body (only to classify
//! it) and a copy's latest attempts (only to list a dead letter). Loading leaves them out so
//! that restoring an inbox costs what deduplication and ordering need, not its payloads.

use didit_edge_core::inbox::run::StoredBody;
use didit_edge_core::inbox::Seq;
use didit_edge_core::time::UnixMs;
use worker::{Result, SqlStorage};

use super::{Later, Tables};
use crate::dead_letters::LoggedAttempt;
use crate::rows::{self, Columns};

/// The CloudEvent of an event, while it is stored.
pub(in crate::inbox) fn payload(sql: &SqlStorage, seq: Seq) -> Result<Option<String>> {
    let payload = rows::first(
        &sql.exec(
            "SELECT cloud_event FROM events WHERE seq = ?",
            vec![seq.0.into()],
        )?,
        Columns::opt_text,
    )?;
    Ok(payload.flatten())
}

/// Reads an unclassified event's body.
pub(in crate::inbox) fn stored_body(sql: &SqlStorage, seq: Seq) -> Result<StoredBody> {
    let stored = rows::first(
        &sql.exec(
            "SELECT body, verified, test, received_at_ms FROM events WHERE seq = ?",
            vec![seq.0.into()],
        )?,
        |row| {
            Ok(StoredBody {
                body: row.opt_text()?.unwrap_or_default(),
                verified: didit_edge_core::json::from_str(&row.opt_text()?.unwrap_or_default())?,
                test: row.int()? != 0,
                received_at: UnixMs(row.int()?),
            })
        },
    )?;
    stored.ok_or_else(|| worker::Error::from(format!("event {} is not stored", seq.0)))
}

/// The latest `limit` attempts of one copy, oldest first.
pub(in crate::inbox) fn attempt_log(
    sql: &SqlStorage,
    seq: Seq,
    consumer: &str,
    limit: usize,
) -> Result<Vec<LoggedAttempt>> {
    if !Tables::of(sql)?.has(Later::Attempts) {
        return Ok(Vec::new());
    }
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
