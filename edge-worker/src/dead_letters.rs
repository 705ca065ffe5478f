//! Dead letters of every subject in one list: an index Durable Object that the inboxes keep up
//! to date.
//!
//! Each inbox stays the source of truth for its events (state, payload, attempt log); the index
//! holds a summary of each dead letter, taken when it died, and the name of the inbox to send a
//! replay to. Inboxes push changes from an outbox column (`deliveries.index_sync`), so an index
//! that is briefly unreachable only delays the listing; nothing is lost or listed twice.

use didit_edge_core::alert::Alert;
use didit_edge_core::dead_letter_index::{self, Pushed};
use didit_edge_core::time::UnixMs;
use worker::{
    console_error, durable_object, DurableObject, Env, Request, Response, Result, SqlStorageValue,
    State,
};

use crate::objects::{self, DeadLettersCall, GLOBAL};
use crate::rows::{self, Columns};
use crate::{alerts, http};

/// A dead letter as listed (and as inboxes push it), the key that names one, and one attempt
/// of its log: the admin API's shapes, from the core.
pub(crate) use didit_edge_core::admin::{DeadLetter, DeadLetterKey, DeadLetterPage, LoggedAttempt};

/// Changes pushed by one inbox (written as `crate::fields` says).
#[derive(Default)]
pub(crate) struct Changes {
    /// New or renewed dead letters.
    pub put: Vec<DeadLetter>,
    /// Dead letters that were replayed or whose retention ended.
    pub remove: Vec<DeadLetterKey>,
}

/// Where to send replays, and how many dead letters there are in all.
/// Written as `crate::fields` says.
pub(crate) struct Inboxes {
    /// Distinct inboxes holding matching dead letters.
    pub inboxes: Vec<String>,
    /// Matching dead letters, all inboxes counted.
    pub total: u64,
}

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS letters (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT NOT NULL,
    consumer TEXT NOT NULL,
    subject TEXT NOT NULL,
    webhook_type TEXT NOT NULL,
    reason TEXT NOT NULL,
    received_at_ms INTEGER NOT NULL,
    dead_at_ms INTEGER NOT NULL,
    replayable_until_ms INTEGER NOT NULL,
    attempts TEXT NOT NULL,
    UNIQUE (id, consumer)
);
CREATE INDEX IF NOT EXISTS letters_subject ON letters(subject);
";

/// The list of every subject's dead letters, kept up to date by the inboxes.
// `fetch` only: each handler the macro exports is a future the upload carries.
#[durable_object(fetch)]
pub struct DeadLetters {
    state: State,
    env: Env,
}

struct Row {
    seq: i64,
    id: String,
    consumer: String,
    subject: String,
    webhook_type: String,
    reason: String,
    received_at_ms: i64,
    dead_at_ms: i64,
    attempts: String,
}

impl DeadLetters {
    fn sql(&self) -> worker::SqlStorage {
        self.state.storage().sql()
    }

    /// Until when a dead letter that died at `dead_at_ms` stays replayable
    /// ([`dead_letter_index::replayable_until`]).
    fn replayable_until_ms(&self, dead_at_ms: i64) -> i64 {
        let config = crate::settings::config(&self.env);
        let retention = crate::settings::delivery(&config).map(|delivery| &delivery.retention);
        dead_letter_index::replayable_until(retention, UnixMs(dead_at_ms)).0
    }

    /// The alerts for what `changes` lists ([`dead_letter_index::new_dead_letter`]).
    fn new_dead_letters(&self, changes: &Changes) -> Result<Vec<Alert>> {
        let mut alerts = Vec::new();
        for entry in &changes.put {
            let listed = rows::first(
                &self.sql().exec(
                    "SELECT dead_at_ms FROM letters WHERE id = ? AND consumer = ?",
                    vec![entry.id.as_str().into(), entry.consumer.as_str().into()],
                )?,
                Columns::int,
            )?;
            let pushed = Pushed {
                event_id: &entry.id,
                consumer: &entry.consumer,
                subject: &entry.subject,
                webhook_type: &entry.webhook_type,
                reason: &entry.reason,
                dead_at: UnixMs(entry.dead_at_ms),
            };
            let Some(new) = dead_letter_index::new_dead_letter(&pushed, listed.map(UnixMs)) else {
                continue;
            };
            if let Some(reason) = &new.unknown_reason {
                console_error!(
                    "dead letter {} has an unknown reason {reason:?}, alerted as retries_exhausted",
                    entry.id
                );
            }
            alerts.push(new.alert);
        }
        Ok(alerts)
    }

    fn apply(&self, changes: &Changes) -> Result<()> {
        let sql = self.sql();
        for entry in &changes.put {
            sql.exec(
                "INSERT INTO letters (id, consumer, subject, webhook_type, reason, received_at_ms, dead_at_ms, replayable_until_ms, attempts) \
                 VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) \
                 ON CONFLICT (id, consumer) DO UPDATE SET reason = excluded.reason, dead_at_ms = excluded.dead_at_ms, \
                 replayable_until_ms = excluded.replayable_until_ms, attempts = excluded.attempts",
                vec![
                    entry.id.as_str().into(),
                    entry.consumer.as_str().into(),
                    entry.subject.as_str().into(),
                    entry.webhook_type.as_str().into(),
                    entry.reason.as_str().into(),
                    entry.received_at_ms.into(),
                    entry.dead_at_ms.into(),
                    // Unused: computed when listed (the column is kept for older rows).
                    entry.dead_at_ms.into(),
                    serde_json::to_string(&entry.attempts)?.into(),
                ],
            )?;
        }
        for key in &changes.remove {
            sql.exec(
                "DELETE FROM letters WHERE id = ? AND consumer = ?",
                vec![key.id.as_str().into(), key.consumer.as_str().into()],
            )?;
        }
        Ok(())
    }

    /// `WHERE` clause and values for the optional filters.
    fn filter(id: Option<String>, consumer: Option<String>) -> (String, Vec<SqlStorageValue>) {
        let mut clause = String::from("1 = 1");
        let mut values = Vec::new();
        if let Some(id) = id {
            clause.push_str(" AND id = ?");
            values.push(id.into());
        }
        if let Some(consumer) = consumer {
            clause.push_str(" AND consumer = ?");
            values.push(consumer.into());
        }
        (clause, values)
    }

    fn count(&self, clause: &str, values: Vec<SqlStorageValue>) -> Result<u64> {
        let count = rows::first(
            &self.sql().exec(
                &format!("SELECT COUNT(*) FROM letters WHERE {clause}"),
                values,
            )?,
            Columns::int,
        )?;
        Ok(count.map_or(0, |n| u64::try_from(n).unwrap_or(0)))
    }

    fn page(&self, query: &Query) -> Result<DeadLetterPage> {
        let (clause, values) = Self::filter(None, query.consumer.clone());
        let total = self.count(&clause, values.clone())?;
        let mut paged = values;
        paged.push(query.after.into());
        paged.push(i64::from(query.limit).into());
        let rows = rows::all(
            &self.sql().exec(
                &format!(
                    "SELECT seq, id, consumer, subject, webhook_type, reason, received_at_ms, dead_at_ms, attempts \
                     FROM letters WHERE {clause} AND seq > ? ORDER BY seq LIMIT ?"
                ),
                paged,
            )?,
            |row| {
                Ok(Row {
                    seq: row.int()?,
                    id: row.text()?,
                    consumer: row.text()?,
                    subject: row.text()?,
                    webhook_type: row.text()?,
                    reason: row.text()?,
                    received_at_ms: row.int()?,
                    dead_at_ms: row.int()?,
                    attempts: row.text()?,
                })
            },
        )?;
        let next =
            dead_letter_index::next_page(rows.len(), query.limit, rows.last().map(|r| r.seq))
                .and_then(|seq| u64::try_from(seq).ok());
        let dead_letters = rows
            .into_iter()
            .map(|row| DeadLetter {
                attempts: didit_edge_core::json::from_str(&row.attempts).unwrap_or_else(|error| {
                    console_error!(
                        "attempt log of {} is unreadable, listed without it: {error}",
                        row.id
                    );
                    Vec::new()
                }),
                id: row.id,
                consumer: row.consumer,
                subject: row.subject,
                webhook_type: row.webhook_type,
                reason: row.reason,
                received_at_ms: row.received_at_ms,
                dead_at_ms: row.dead_at_ms,
                replayable_until_ms: Some(self.replayable_until_ms(row.dead_at_ms)),
            })
            .collect();
        Ok(DeadLetterPage {
            dead_letters,
            next,
            total,
        })
    }

    fn inboxes(&self, query: &Query) -> Result<Inboxes> {
        let (clause, values) = Self::filter(query.id.clone(), query.consumer.clone());
        let total = self.count(&clause, values.clone())?;
        let mut limited = values;
        limited.push(i64::from(query.limit).into());
        let inboxes = rows::all(
            &self.sql().exec(
                &format!(
                    "SELECT subject FROM letters WHERE {clause} GROUP BY subject ORDER BY MIN(seq) LIMIT ?"
                ),
                limited,
            )?,
            Columns::text,
        )?;
        Ok(Inboxes { inboxes, total })
    }
}

/// A listing or lookup, as the edge sends it (written as `crate::fields` says).
pub(crate) struct Query {
    /// Only this event's dead letters.
    pub id: Option<String>,
    /// Only this consumer's.
    pub consumer: Option<String>,
    /// At most this many.
    pub limit: u32,
    /// After this cursor.
    pub after: i64,
}

impl DurableObject for DeadLetters {
    fn new(state: State, env: Env) -> Self {
        objects::create_tables(&state, "dead-letter index", SCHEMA);
        Self { state, env }
    }

    async fn fetch(&self, mut request: Request) -> Result<Response> {
        match DeadLettersCall::of_path(&request.path()) {
            Some(DeadLettersCall::Sync) => {
                let changes: Changes = objects::message(&mut request).await?;
                // Alerted before listed: if queueing fails, the inbox pushes again and the
                // dead letters are still new then.
                if alerts::wanted(&self.env) {
                    alerts::enqueue(&self.env, &self.new_dead_letters(&changes)?).await?;
                }
                self.apply(&changes)?;
                http::json(200, "{}".into())
            }
            Some(DeadLettersCall::Page) => {
                let query: Query = objects::message(&mut request).await?;
                http::json(200, serde_json::to_string(&self.page(&query)?)?)
            }
            Some(DeadLettersCall::Inboxes) => {
                let query: Query = objects::message(&mut request).await?;
                http::json(200, serde_json::to_string(&self.inboxes(&query)?)?)
            }
            None => objects::no_such_call(),
        }
    }
}

async fn call(env: &Env, call: DeadLettersCall, body: String) -> Result<objects::Answer> {
    objects::post(env, DeadLettersCall::BINDING, GLOBAL, call.path(), body).await
}

/// Pushes one inbox's changes.
pub(crate) async fn push(env: &Env, changes: &Changes) -> Result<()> {
    call(env, DeadLettersCall::Sync, serde_json::to_string(changes)?).await?;
    Ok(())
}

/// One page of the listing, as the index wrote it (`DeadLetterPage`): passed on as text, as
/// reading it only to write it again would compile its deserializer into the upload.
pub(crate) async fn page_json(
    env: &Env,
    consumer: Option<String>,
    limit: u32,
    after: u64,
) -> Result<String> {
    let query = Query {
        id: None,
        consumer,
        limit,
        after: i64::try_from(after).unwrap_or(i64::MAX),
    };
    call(env, DeadLettersCall::Page, serde_json::to_string(&query)?)
        .await?
        .text()
        .await
}

/// The inboxes holding the matching dead letters (at most `limit` of them).
pub(crate) async fn inboxes(
    env: &Env,
    id: Option<&str>,
    consumer: Option<String>,
    limit: u32,
) -> Result<Inboxes> {
    let query = Query {
        id: id.map(String::from),
        consumer,
        limit,
        after: 0,
    };
    let text = call(
        env,
        DeadLettersCall::Inboxes,
        serde_json::to_string(&query)?,
    )
    .await?
    .text()
    .await?;
    Ok(didit_edge_core::json::from_str(&text)?)
}
