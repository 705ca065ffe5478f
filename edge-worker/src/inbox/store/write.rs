//! Writing the core's [`Change`]s: [`apply`] writes one step's changes in order, each by one
//! writer, grouped by the table they write (a change that spans tables, like forgetting an
//! event, sits with the table it is about). A step's changes are written with no `.await`
//! between them, so the runtime commits them as one write.
//!
//! Each row written is billed, so changes to one event's row that follow each other (a
//! copy's outcomes, its payload dropped once every consumer has it) are written as one
//! update of that row ([`RowPatch`]).

use didit_edge_core::inbox::{
    Change, CopyRecord, EventRecord, IndexSync, Rejected, Seq, StoredContent, StoredState,
};
use didit_edge_core::risk::Level;
use serde::{Deserialize, Serialize};
use worker::{Result, SqlStorage, SqlStorageValue};

use super::meta::{delete_meta, set_meta_text};
use super::{Later, Tables};
use crate::rows::{self, Columns};

/// Writes one step's `changes`, in order; `subject` is the subject's name once they are made
/// (every event row keeps it).
pub(in crate::inbox) fn apply(
    sql: &SqlStorage,
    changes: &[Change],
    subject: Option<&str>,
) -> Result<()> {
    let mut tables: Option<Tables> = None;
    let mut patch = RowPatch::default();
    for change in changes {
        if patch.absorbs(change) {
            continue;
        }
        // A change to another row, or to no row: the patch so far is written first.
        patch.write(sql)?;
        if !patch.absorbs(change) {
            apply_one(sql, change, subject, &mut tables)?;
        }
    }
    patch.write(sql)
}

/// The object's later tables, read when a change first needs them.
fn later_tables<'t>(sql: &SqlStorage, tables: &'t mut Option<Tables>) -> Result<&'t mut Tables> {
    if tables.is_none() {
        *tables = Some(Tables::of(sql)?);
    }
    tables
        .as_mut()
        .ok_or_else(|| worker::Error::from("the object's tables were not read"))
}

fn apply_one(
    sql: &SqlStorage,
    change: &Change,
    subject: Option<&str>,
    tables: &mut Option<Tables>,
) -> Result<()> {
    match change {
        Change::Subject(subject) => set_subject(sql, Some(subject)),
        Change::ForgetSubject => set_subject(sql, None),
        Change::MarkErased(at) => set_meta_text(sql, "erased_at_ms", &at.0.to_string()),
        Change::ForgetErasure => delete_meta(sql, "erased_at_ms"),
        Change::InsertEvent {
            event,
            content,
            copies,
        } => insert_event(sql, event, content, copies, subject),
        Change::Classify {
            seq,
            risk_level,
            payload,
            copies,
        } => classify(sql, *seq, *risk_level, payload.as_deref(), copies),
        Change::ForgetEvent(seq) => forget_event(sql, *seq, later_tables(sql, tables)?),
        Change::AttachAlias { seq, alias } => {
            later_tables(sql, tables)?.ensure(sql, Later::Aliases)?;
            attach_alias(sql, *seq, alias)
        }
        Change::SetRejections {
            seq,
            consumer,
            rejected_by,
        } => {
            let tables = later_tables(sql, tables)?;
            if rejected_by.is_empty() && !tables.has(Later::Refusals) {
                return Ok(());
            }
            tables.ensure(sql, Later::Refusals)?;
            set_rejections(sql, *seq, consumer, rejected_by)
        }
        // Always absorbed by the row patch (`RowPatch::absorbs`).
        Change::PutCopy { .. } | Change::DropPayload(_) => Ok(()),
        // Storage is released whole once the step is written (`Inbox::release_if_vacated`).
        Change::Vacate => Ok(()),
    }
}

// `events`: an event's row, its copies and the subject's name, from its claim until it is
// forgotten.

/// The subject's name on every event row (`None`: forgotten, as an erasure does).
fn set_subject(sql: &SqlStorage, subject: Option<&str>) -> Result<()> {
    match subject {
        Some(subject) => sql.exec(
            "UPDATE events SET subject = ? WHERE subject IS NOT ?",
            vec![subject.into(), subject.into()],
        )?,
        None => sql.exec(
            "UPDATE events SET subject = NULL WHERE subject IS NOT NULL",
            None,
        )?,
    };
    Ok(())
}

/// A new event's row, with its copies.
fn insert_event(
    sql: &SqlStorage,
    event: &EventRecord,
    content: &StoredContent,
    copies: &[(String, CopyRecord)],
    subject: Option<&str>,
) -> Result<()> {
    let (classified, payload, body, verified, test) = match content {
        StoredContent::Classified { payload, verified } => (
            1,
            payload.as_deref(),
            None,
            verified.as_ref().map(serde_json::to_string).transpose()?,
            false,
        ),
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
    let copies = copies_text(
        copies
            .iter()
            .map(|(consumer, copy)| (consumer.as_str(), copy)),
    )?;
    sql.exec(
        "INSERT INTO events (seq, id, id_version, alias, received_at_ms, webhook_type, status, risk_level, \
         created_at, classified, cloud_event, body, verified, test, subject, copies) \
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
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
            subject.into(),
            copies.into(),
        ],
    )?;
    Ok(())
}

/// A stored event's classification (its body goes), with its copies.
fn classify(
    sql: &SqlStorage,
    seq: Seq,
    risk_level: Level,
    payload: Option<&str>,
    copies: &[(String, CopyRecord)],
) -> Result<()> {
    let copies = copies_text(
        copies
            .iter()
            .map(|(consumer, copy)| (consumer.as_str(), copy)),
    )?;
    sql.exec(
        "UPDATE events SET classified = 1, body = NULL, risk_level = ?, cloud_event = ?, \
         copies = ? WHERE seq = ?",
        vec![
            risk_level.as_str().into(),
            payload.into(),
            copies.into(),
            seq.0.into(),
        ],
    )?;
    Ok(())
}

/// Everything of an event: the rows that name it in the later tables it has, then its own.
fn forget_event(sql: &SqlStorage, seq: Seq, tables: &Tables) -> Result<()> {
    for table in [Later::Refusals, Later::Attempts, Later::Aliases] {
        if tables.has(table) {
            sql.exec(
                &format!("DELETE FROM {} WHERE event_seq = ?", table.name()),
                vec![seq.0.into()],
            )?;
        }
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

/// One consumer's copy as kept in its event's `copies` list (the names are the columns of the
/// `deliveries` table it replaced, so that migration 4 writes the same shape; the history's
/// fields came later, and an entry without them has none).
#[derive(Serialize, Deserialize)]
pub(super) struct StoredCopy {
    pub(super) consumer: String,
    pub(super) state: String,
    pub(super) failures: i64,
    pub(super) next_attempt_at_ms: Option<i64>,
    pub(super) delivered_at_ms: Option<i64>,
    pub(super) dead_at_ms: Option<i64>,
    pub(super) dead_reason: Option<String>,
    pub(super) origin: Option<String>,
    pub(super) index_sync: Option<String>,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub(super) attempts: u32,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub(super) requests: u32,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub(super) log: Vec<Option<String>>,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub(super) replays: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) replayed_at_ms: Option<i64>,
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

impl StoredCopy {
    fn of(consumer: &str, copy: &CopyRecord) -> Self {
        let stored = StoredState::of(copy.state);
        Self {
            consumer: consumer.to_string(),
            state: stored.state.to_string(),
            failures: stored.failures,
            next_attempt_at_ms: stored.next_attempt_at_ms,
            delivered_at_ms: stored.delivered_at_ms,
            dead_at_ms: stored.dead_at_ms,
            dead_reason: stored.dead_reason.map(str::to_string),
            origin: copy.delivered_to.clone(),
            index_sync: copy.index.map(IndexSync::as_str).map(str::to_string),
            attempts: copy.history.attempts,
            requests: copy.history.requests,
            log: copy.history.log_fields(),
            replays: copy.history.replays,
            replayed_at_ms: copy.history.replayed_at.map(|at| at.0),
        }
    }
}

/// An event's `copies` list.
fn copies_text<'c>(copies: impl Iterator<Item = (&'c str, &'c CopyRecord)>) -> Result<String> {
    let stored: Vec<StoredCopy> = copies
        .map(|(consumer, copy)| StoredCopy::of(consumer, copy))
        .collect();
    Ok(serde_json::to_string(&stored)?)
}

/// Changes to one event's row that follow each other in a step, written as one update: its
/// copies' new states, and whether its payload goes.
#[derive(Default)]
struct RowPatch<'c> {
    seq: Option<Seq>,
    copies: Vec<(&'c str, &'c CopyRecord)>,
    drop_payload: bool,
}

impl<'c> RowPatch<'c> {
    /// Takes `change` if it is a change to the row being patched (or starts a patch); a change
    /// it does not take must be written after the patch.
    fn absorbs(&mut self, change: &'c Change) -> bool {
        let seq = match change {
            Change::PutCopy { seq, .. } | Change::DropPayload(seq) => *seq,
            _ => return false,
        };
        if self.seq.is_some_and(|patched| patched != seq) {
            return false;
        }
        self.seq = Some(seq);
        match change {
            Change::PutCopy { consumer, copy, .. } => {
                self.copies.retain(|(other, _)| *other != consumer.as_str());
                self.copies.push((consumer.as_str(), copy));
            }
            _ => self.drop_payload = true,
        }
        true
    }

    /// Writes the patch, if any, and starts afresh. The copies it does not change are kept as
    /// stored, whatever they hold (an entry this release cannot read is never rewritten).
    fn write(&mut self, sql: &SqlStorage) -> Result<()> {
        let patch = core::mem::take(self);
        let Some(seq) = patch.seq else {
            return Ok(());
        };
        let copies: SqlStorageValue = match patch.copies.is_empty() {
            true => None::<String>.into(),
            false => {
                let stored = rows::first(
                    &sql.exec(
                        "SELECT copies FROM events WHERE seq = ?",
                        vec![seq.0.into()],
                    )?,
                    Columns::text,
                )?;
                let Some(stored) = stored else {
                    return Ok(());
                };
                patched_copies(&stored, &patch.copies)?.into()
            }
        };
        sql.exec(
            "UPDATE events SET copies = COALESCE(?, copies), \
             cloud_event = CASE WHEN ? THEN NULL ELSE cloud_event END WHERE seq = ?",
            vec![copies, i64::from(patch.drop_payload).into(), seq.0.into()],
        )?;
        Ok(())
    }
}

/// An event's `copies` list with `changed` put in place of their consumers' entries. Every
/// other entry is written back value for value, whatever it holds (a state this release does
/// not know stays as it was).
fn patched_copies(stored: &str, changed: &[(&str, &CopyRecord)]) -> Result<String> {
    let mut entries: Vec<StoredCopy> = didit_edge_core::json::from_str(stored)?;
    entries.retain(|entry| {
        changed
            .iter()
            .all(|(consumer, _)| *consumer != entry.consumer)
    });
    entries.extend(
        changed
            .iter()
            .map(|(consumer, copy)| StoredCopy::of(consumer, copy)),
    );
    Ok(serde_json::to_string(&entries)?)
}

// `refusals`: one consumer's copy. (`attempts`, which older releases appended each failed
// request to, is only read and forgotten now: each copy keeps its history in its entry.)

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
