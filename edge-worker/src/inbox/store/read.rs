//! Single values the adapter reads when the machine asks for them, not loaded with it: an
//! event's payload (only to send it), an unclassified event's stored body (only to classify
//! it), an older release's attempt log (only to list a dead letter) and what a lookup shows
//! beside the machine. Loading leaves them out so
//! that restoring an inbox costs what deduplication and ordering need, not its payloads.

use didit_edge_core::inbox::run::StoredBody;
use didit_edge_core::inbox::{LookupFacts, Seq};
use didit_edge_core::time::UnixMs;
use didit_edge_core::verify::Verified;
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

/// The latest `limit` requests of one copy, oldest first: those an older release logged in
/// the `attempts` table (if the object has one), then `recent`, the copy's own history.
pub(in crate::inbox) fn attempt_log(
    sql: &SqlStorage,
    seq: Seq,
    consumer: &str,
    limit: usize,
    recent: Vec<LoggedAttempt>,
) -> Result<Vec<LoggedAttempt>> {
    let mut log = match Tables::of(sql)?.has(Later::Attempts) {
        true => {
            let mut legacy = rows::all(
                &sql.exec(
                    "SELECT at_ms, origin, status, error, location FROM attempts \
                     WHERE event_seq = ? AND consumer = ? ORDER BY rowid DESC LIMIT ?",
                    vec![
                        seq.0.into(),
                        consumer.into(),
                        i64::try_from(limit).unwrap_or(i64::MAX).into(),
                    ],
                )?,
                logged_attempt,
            )?;
            legacy.reverse();
            legacy
        }
        false => Vec::new(),
    };
    log.extend(recent);
    let excess = log.len().saturating_sub(limit);
    log.drain(..excess);
    Ok(log)
}

/// What a lookup shows beside the machine: which signature verified each event (a value that
/// does not read is left out: it decides nothing), and the requests older releases logged.
pub(in crate::inbox) fn lookup_facts(sql: &SqlStorage) -> Result<LookupFacts> {
    let mut facts = LookupFacts::default();
    let verified = rows::all(
        &sql.exec(
            "SELECT seq, verified FROM events WHERE verified IS NOT NULL",
            None,
        )?,
        |row| Ok((Seq(row.int()?), row.text()?)),
    )?;
    for (seq, text) in verified {
        if let Ok(verified) = didit_edge_core::json::from_str::<Verified>(&text) {
            facts.verified.push((seq, verified));
        }
    }
    if Tables::of(sql)?.has(Later::Attempts) {
        facts.legacy_attempts = rows::all(
            &sql.exec(
                "SELECT event_seq, consumer, at_ms, origin, status, error, location FROM attempts \
                 ORDER BY rowid",
                None,
            )?,
            |row| Ok((Seq(row.int()?), row.text()?, logged_attempt(row)?)),
        )?;
    }
    Ok(facts)
}

/// One row of the `attempts` table, from its `at_ms` column on.
fn logged_attempt(row: &mut Columns) -> Result<LoggedAttempt> {
    Ok(LoggedAttempt {
        at_ms: row.int()?,
        origin: row.opt_text()?,
        status: row.opt_int()?.and_then(|status| u16::try_from(status).ok()),
        error: row.opt_text()?,
        location: row.opt_text()?,
        latency_ms: None,
    })
}
