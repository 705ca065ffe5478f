//! Writing the core's [`Change`]s: [`apply`] dispatches each to one writer, and the writers
//! are grouped by the table they write (a change that spans tables, like forgetting an event,
//! sits with the table it is about). Every writer runs its statements with no `.await` between
//! them, so the runtime commits a change as one write.

use didit_edge_core::attempt::LogEntry;
use didit_edge_core::inbox::{
    Change, CopyRecord, EventRecord, IndexSync, Rejected, Seq, StoredContent, StoredState,
};
use didit_edge_core::risk::Level;
use didit_edge_core::time::UnixMs;
use worker::{Result, SqlStorage, SqlStorageValue};

use super::meta::set_meta;

/// Writes one change. Its statements run with no `.await` between them, so the runtime
/// commits them together.
pub(in crate::inbox) fn apply(sql: &SqlStorage, change: &Change) -> Result<()> {
    match change {
        Change::Subject(subject) => set_subject(sql, subject),
        Change::ForgetSubject => forget_subject(sql),
        Change::MarkErased(at) => mark_erased(sql, *at),
        Change::ForgetErasure => forget_erasure(sql),
        Change::InsertEvent {
            event,
            content,
            copies,
        } => insert_event(sql, event, content, copies),
        Change::Classify {
            seq,
            risk_level,
            payload,
            copies,
        } => classify(sql, *seq, *risk_level, payload.as_deref(), copies),
        Change::DropPayload(seq) => drop_payload(sql, *seq),
        Change::ForgetEvent(seq) => forget_event(sql, *seq),
        Change::AttachAlias { seq, alias } => attach_alias(sql, *seq, alias),
        Change::PutCopy {
            seq,
            consumer,
            copy,
        } => put_copy(sql, *seq, consumer, copy),
        Change::SetRejections {
            seq,
            consumer,
            rejected_by,
        } => set_rejections(sql, *seq, consumer, rejected_by),
        Change::AppendAttempts {
            seq,
            consumer,
            entries,
        } => append_attempts(sql, *seq, consumer, entries),
    }
}

// `meta`: the subject's name and the erasure mark.

fn set_subject(sql: &SqlStorage, subject: &str) -> Result<()> {
    sql.exec(
        "INSERT OR IGNORE INTO meta (key, value) VALUES ('subject', ?)",
        vec![subject.into()],
    )?;
    Ok(())
}

fn forget_subject(sql: &SqlStorage) -> Result<()> {
    sql.exec("DELETE FROM meta WHERE key = 'subject'", None)?;
    Ok(())
}

fn mark_erased(sql: &SqlStorage, at: UnixMs) -> Result<()> {
    set_meta(sql, "erased_at_ms", &at.0.to_string())
}

fn forget_erasure(sql: &SqlStorage) -> Result<()> {
    sql.exec("DELETE FROM meta WHERE key = 'erased_at_ms'", None)?;
    Ok(())
}

// `events` (and `aliases`): an event's row from its claim until it is forgotten.

/// A new event's row, then its copies.
fn insert_event(
    sql: &SqlStorage,
    event: &EventRecord,
    content: &StoredContent,
    copies: &[(String, CopyRecord)],
) -> Result<()> {
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
    Ok(())
}

/// A stored event's classification (its body goes), then its copies.
fn classify(
    sql: &SqlStorage,
    seq: Seq,
    risk_level: Level,
    payload: Option<&str>,
    copies: &[(String, CopyRecord)],
) -> Result<()> {
    sql.exec(
        "UPDATE events SET classified = 1, body = NULL, verified = NULL, risk_level = ?, cloud_event = ? \
         WHERE seq = ?",
        vec![risk_level.as_str().into(), payload.into(), seq.0.into()],
    )?;
    for (consumer, copy) in copies {
        put_copy(sql, seq, consumer, copy)?;
    }
    Ok(())
}

fn drop_payload(sql: &SqlStorage, seq: Seq) -> Result<()> {
    sql.exec(
        "UPDATE events SET cloud_event = NULL WHERE seq = ?",
        vec![seq.0.into()],
    )?;
    Ok(())
}

/// Everything of an event: the rows that name it in every table, then its own.
fn forget_event(sql: &SqlStorage, seq: Seq) -> Result<()> {
    for table in ["deliveries", "refusals", "attempts", "aliases"] {
        sql.exec(
            &format!("DELETE FROM {table} WHERE event_seq = ?"),
            vec![seq.0.into()],
        )?;
    }
    sql.exec("DELETE FROM events WHERE seq = ?", vec![seq.0.into()])?;
    Ok(())
}

fn attach_alias(sql: &SqlStorage, seq: Seq, alias: &str) -> Result<()> {
    sql.exec(
        "INSERT OR IGNORE INTO aliases (event_seq, alias) VALUES (?, ?)",
        vec![seq.0.into(), alias.into()],
    )?;
    Ok(())
}

// `deliveries`, `refusals` and `attempts`: one consumer's copy.

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

fn append_attempts(sql: &SqlStorage, seq: Seq, consumer: &str, entries: &[LogEntry]) -> Result<()> {
    for entry in entries {
        append_attempt(sql, seq, consumer, entry)?;
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
