//! Loading the core's machine from storage, strictly: one reader per table, each row (and
//! each entry of an event's list of copies) turned into the core's record or, when it holds a
//! value this release does not know, into an [`Unreadable`] that the machine leaves alone.
//! Payloads, stored bodies and attempt logs are not loaded ([`super::read`]); the later tables
//! are read only if the object has them.

use didit_edge_core::delivery::CopyState;
use didit_edge_core::inbox::{
    flag_from_number, level_from_str, subject_kind, BadValue, CopyRecord, EventRecord, History,
    IdVersion, Inbox, IndexSync, Rejected, RowKey, Seq, StoredState, Unreadable,
};
use didit_edge_core::time::{UnixMs, UnixSecs};
use worker::{console_error, Result, SqlStorage};

use super::alerts::event_id;
use super::meta::meta_text;
use super::write::StoredCopy;
use super::{Later, Tables};
use crate::rows::{self, Columns};

/// Loads the machine from storage: the subject, every event (without payloads) and copy.
pub(in crate::inbox) fn load(sql: &SqlStorage) -> Result<Inbox> {
    let tables = Tables::of(sql)?;
    let subject = subject(sql)?;
    let events = EventRow::load_all(sql)?;
    let rejections = match tables.has(Later::Refusals) {
        true => RejectionRow::load_all(sql)?,
        false => Vec::new(),
    };
    let mut unreadable = Vec::new();
    let copies = copy_rows(&events, &mut unreadable);
    let events = event_records(events, &mut unreadable);
    let refused = refusals(rejections, &mut unreadable);
    let restored = copy_records(copies, &refused, &mut unreadable);
    let attached = match tables.has(Later::Aliases) {
        true => attached_aliases(sql)?,
        false => Vec::new(),
    };
    let erased_at = meta_text(sql, "erased_at_ms")?.and_then(|at| at.parse::<i64>().ok());
    let inbox = Inbox::restore(subject, events, restored)
        .with_attached_aliases(attached)
        .with_erasure(erased_at.map(UnixMs))
        .with_unreadable(unreadable);
    log_unreadable(&inbox);
    Ok(inbox)
}

/// The subject's name, once a claim has named it (every event row keeps it).
fn subject(sql: &SqlStorage) -> Result<Option<String>> {
    rows::first(
        &sql.exec(
            "SELECT subject FROM events WHERE subject IS NOT NULL LIMIT 1",
            None,
        )?,
        Columns::text,
    )
}

/// Didit's `event_id`s attached to events after their claims (`aliases`).
fn attached_aliases(sql: &SqlStorage) -> Result<Vec<(Seq, String)>> {
    rows::all(
        &sql.exec("SELECT event_seq, alias FROM aliases", None)?,
        |row| Ok((Seq(row.int()?), row.text()?)),
    )
}

/// Every entry of every event's list of copies; a list that is not one makes its event
/// unreadable.
fn copy_rows(events: &[EventRow], unreadable: &mut Vec<Unreadable>) -> Vec<CopyRow> {
    let mut copies = Vec::new();
    for event in events {
        match didit_edge_core::json::from_str::<Vec<StoredCopy>>(&event.copies) {
            Ok(stored) => copies.extend(stored.into_iter().map(|copy| CopyRow {
                event_seq: event.seq,
                copy,
            })),
            Err(_) => unreadable.push(Unreadable {
                row: RowKey::Event(Seq(event.seq)),
                value: BadValue::new(
                    "copies",
                    didit_edge_core::inbox::UnknownValue::Malformed,
                    Some(&event.copies),
                ),
            }),
        }
    }
    copies
}

/// Every event's record; the first unknown value of each row that has one goes to
/// `unreadable`.
fn event_records(rows: Vec<EventRow>, unreadable: &mut Vec<Unreadable>) -> Vec<EventRecord> {
    rows.into_iter()
        .map(|row| {
            let (record, bad) = row.record();
            unreadable.extend(bad.map(|value| Unreadable {
                row: RowKey::Event(record.seq),
                value,
            }));
            record
        })
        .collect()
}

/// Every readable refusal, by event and consumer; the others go to `unreadable`.
fn refusals(
    rows: Vec<RejectionRow>,
    unreadable: &mut Vec<Unreadable>,
) -> Vec<(i64, String, Rejected)> {
    let mut refused: Vec<(i64, String, Rejected)> = Vec::new();
    for row in rows {
        match row.read() {
            Ok(rejected) => refused.push((row.event_seq, row.consumer, rejected)),
            Err(bad) => unreadable.push(bad),
        }
    }
    refused
}

/// Every readable copy with the origins that refused it; the others go to `unreadable`.
fn copy_records(
    rows: Vec<CopyRow>,
    refused: &[(i64, String, Rejected)],
    unreadable: &mut Vec<Unreadable>,
) -> Vec<(Seq, String, CopyRecord)> {
    let mut restored = Vec::new();
    for row in rows {
        let (state, index) = match row.read() {
            Ok(read) => read,
            Err(value) => {
                unreadable.push(Unreadable {
                    row: row.key(),
                    value,
                });
                continue;
            }
        };
        let rejected_by = refused
            .iter()
            .filter(|(seq, consumer, _)| *seq == row.event_seq && *consumer == row.copy.consumer)
            .map(|(_, _, rejected)| rejected.clone())
            .collect();
        let key = row.key();
        let latest = match History::log_from_fields(row.copy.log) {
            Ok(latest) => latest,
            Err(value) => {
                unreadable.push(Unreadable {
                    row: key,
                    value: BadValue::new("copies", value, None::<&str>),
                });
                continue;
            }
        };
        let history = History {
            attempts: row.copy.attempts,
            requests: row.copy.requests,
            latest,
            replays: row.copy.replays,
            replayed_at: row.copy.replayed_at_ms.map(UnixMs),
        };
        let copy = CopyRecord {
            state,
            delivered_to: row.copy.origin,
            rejected_by,
            index,
            history,
        };
        restored.push((Seq(row.event_seq), row.copy.consumer, copy));
    }
    restored
}

/// Logs each row the machine was handed as unreadable (`"event":"storage_unreadable"`).
fn log_unreadable(inbox: &Inbox) {
    for unreadable in inbox.unreadable() {
        console_error!(
            "{}",
            unreadable.to_line(
                event_id(inbox, unreadable.row.seq()),
                subject_kind(inbox.subject())
            )
        );
    }
}

/// One row of `events` as stored, before any of its values is read.
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
    copies: String,
}

/// One entry of an event's list of copies (a consumer's copy) as stored, before any of its
/// values is read.
struct CopyRow {
    event_seq: i64,
    copy: StoredCopy,
}

/// One row of `refusals` (an origin that refused a copy) as stored.
struct RejectionRow {
    event_seq: i64,
    consumer: String,
    origin: String,
    status: i64,
}

impl EventRow {
    /// Every row of `events`, as stored.
    fn load_all(sql: &SqlStorage) -> Result<Vec<Self>> {
        rows::all(
            &sql.exec(
                "SELECT seq, id, id_version, alias, webhook_type, status, created_at, received_at_ms, \
                 risk_level, classified, cloud_event IS NOT NULL, copies FROM events",
                None,
            )?,
            |row| {
                Ok(Self {
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
                    copies: row.text()?,
                })
            },
        )
    }

    /// The event's record, and the first value of its row this release does not know. An
    /// unreadable row's record is only what deduplication looks up (its id, aliases, type,
    /// status and times): the machine holds the event and never classifies, sends or forgets
    /// it. Its id derivation, if unknown, is taken as the broadest (legacy: its id and Didit's
    /// `event_id` for any status find it).
    fn record(self) -> (EventRecord, Option<BadValue>) {
        let id_version = IdVersion::from_number(self.id_version)
            .map_err(|unknown| BadValue::new("id_version", unknown, Some(self.id_version)));
        let risk_level = match flag_from_number(self.classified) {
            Ok(true) => level_from_str(&self.risk_level)
                .map(Some)
                .map_err(|unknown| BadValue::new("risk_level", unknown, Some(&self.risk_level))),
            Ok(false) => Ok(None),
            Err(unknown) => Err(BadValue::new("classified", unknown, Some(self.classified))),
        };
        let bad = id_version
            .as_ref()
            .err()
            .or(risk_level.as_ref().err())
            .cloned();
        let record = EventRecord {
            seq: Seq(self.seq),
            id: self.id,
            id_version: id_version.unwrap_or(IdVersion::Legacy),
            alias: self.alias,
            webhook_type: self.webhook_type,
            status: self.status,
            created_at: UnixSecs(self.created_at),
            received_at: UnixMs(self.received_at_ms),
            risk_level: risk_level.unwrap_or(None),
            has_payload: self.has_payload != 0,
        };
        (record, bad)
    }
}

impl CopyRow {
    fn key(&self) -> RowKey {
        RowKey::Copy {
            seq: Seq(self.event_seq),
            consumer: self.copy.consumer.clone(),
        }
    }

    /// The copy's state and its index outbox entry, or the first value this release does not
    /// know.
    fn read(&self) -> std::result::Result<(CopyState, Option<IndexSync>), BadValue> {
        let copy = &self.copy;
        let state = StoredState {
            state: &copy.state,
            failures: copy.failures,
            next_attempt_at_ms: copy.next_attempt_at_ms,
            delivered_at_ms: copy.delivered_at_ms,
            dead_at_ms: copy.dead_at_ms,
            dead_reason: copy.dead_reason.as_deref(),
        }
        .read()?;
        let index = match copy.index_sync.as_deref() {
            None => None,
            Some(text) => Some(
                text.parse()
                    .map_err(|unknown| BadValue::new("index_sync", unknown, Some(text)))?,
            ),
        };
        Ok((state, index))
    }
}

impl RejectionRow {
    /// Every row of `refusals`, as stored.
    fn load_all(sql: &SqlStorage) -> Result<Vec<Self>> {
        rows::all(
            &sql.exec(
                "SELECT event_seq, consumer, origin, status FROM refusals",
                None,
            )?,
            |row| {
                Ok(Self {
                    event_seq: row.int()?,
                    consumer: row.text()?,
                    origin: row.text()?,
                    status: row.int()?,
                })
            },
        )
    }

    fn read(&self) -> std::result::Result<Rejected, Unreadable> {
        let status = u16::try_from(self.status).map_err(|_| Unreadable {
            row: RowKey::Refusal {
                seq: Seq(self.event_seq),
                consumer: self.consumer.clone(),
                origin: self.origin.clone(),
            },
            value: BadValue::new(
                "status",
                didit_edge_core::inbox::UnknownValue::OutOfRange,
                Some(self.status),
            ),
        })?;
        Ok(Rejected {
            origin: self.origin.clone(),
            status,
        })
    }
}
