//! What the reconciler stores: the sweep's state (progress and lease), what it found of each
//! session (`seen`), and the erasure marks; each written as the core's [`Change`]s say.

use didit_edge_core::reconcile::{self, Change, Failure, Seen, SetAside, LOOKUP_CHUNK};
use didit_edge_core::time::UnixSecs;
use worker::{console_error, Result};

use super::Reconciler;
use crate::rows::{self, Columns};

/// What [`Reconciler::recall`] found.
#[derive(Default)]
pub(super) struct Recalled {
    pub(super) seen: Vec<(String, Seen)>,
    pub(super) marked: Vec<String>,
}

/// A `seen` row (after its `session_id`): what is remembered, or `None` for a row this
/// release cannot read, which is logged and left as stored (its session is asked about as
/// if unknown; nothing is guessed).
fn seen_of(row: &mut Columns) -> Result<Option<Seen>> {
    let (status, gap_since, checked_at) = (row.text()?, row.opt_int()?, row.int()?);
    let (tries, failure, failure_status, retry_at) =
        (row.int()?, row.opt_text()?, row.opt_int()?, row.opt_int()?);
    let set_aside = match (tries, failure) {
        (0, _) => None,
        (tries, code) => {
            let status = failure_status.and_then(|s| u16::try_from(s).ok());
            let Some(failure) = code
                .as_deref()
                .and_then(|code| Failure::from_stored(code, status))
            else {
                console_error!(
                    "reconciler: a remembered gap has a failure this release does not know ({}); it is left as stored",
                    code.as_deref().unwrap_or("none")
                );
                return Ok(None);
            };
            Some(SetAside {
                tries: u32::try_from(tries).unwrap_or(u32::MAX),
                failure,
                retry_at: retry_at.map(UnixSecs),
            })
        }
    };
    Ok(Some(Seen {
        status,
        gap_since: gap_since.map(UnixSecs),
        checked_at: UnixSecs(checked_at),
        set_aside,
    }))
}

impl Reconciler {
    pub(super) fn sql(&self) -> worker::SqlStorage {
        self.state.storage().sql()
    }

    pub(super) fn load(&self) -> Result<reconcile::State> {
        let stored = rows::first(
            &self
                .sql()
                .exec("SELECT state FROM sweep_state WHERE id = 1", None)?,
            Columns::text,
        )?;
        let state = match &stored {
            Some(text) => didit_edge_core::json::from_str(text)?,
            None => reconcile::State::default(),
        };
        *self.stored_state.borrow_mut() = stored;
        Ok(state)
    }

    pub(super) fn save(&self, state: &reconcile::State) -> Result<()> {
        let text = serde_json::to_string(state)?;
        if self.stored_state.borrow().as_deref() == Some(text.as_str()) {
            return Ok(());
        }
        self.stored_state.borrow_mut().take();
        self.sql().exec(
            "INSERT INTO sweep_state (id, state) VALUES (1, ?) \
             ON CONFLICT (id) DO UPDATE SET state = excluded.state",
            vec![text.clone().into()],
        )?;
        *self.stored_state.borrow_mut() = Some(text);
        Ok(())
    }

    pub(super) fn apply(&self, change: Change) -> Result<()> {
        let sql = self.sql();
        match change {
            Change::Remember {
                session_id,
                created_at,
                seen,
            } => {
                let set_aside = seen.set_aside;
                // Each indexed column an update sets is one more row written, and a session in
                // the lookback is confirmed every RECONCILE_RECHECK_SECS: a session's creation
                // time never changes, so the update leaves `created_at` (and its index) alone.
                sql.exec(
                    "INSERT INTO seen (session_id, status, gap_since, checked_at, created_at, tries, \
                     failure, failure_status, retry_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) \
                     ON CONFLICT (session_id) DO UPDATE SET status = excluded.status, \
                     gap_since = excluded.gap_since, checked_at = excluded.checked_at, \
                     tries = excluded.tries, failure = excluded.failure, \
                     failure_status = excluded.failure_status, retry_at = excluded.retry_at",
                    vec![
                        session_id.into(),
                        seen.status.into(),
                        seen.gap_since.map(|at| at.0).into(),
                        seen.checked_at.0.into(),
                        created_at.0.into(),
                        i64::from(set_aside.map_or(0, |s| s.tries)).into(),
                        set_aside.map(|s| s.failure.code()).into(),
                        set_aside
                            .and_then(|s| s.failure.status())
                            .map(i64::from)
                            .into(),
                        set_aside.and_then(|s| s.retry_at).map(|at| at.0).into(),
                    ],
                )?
            }
            Change::Forget { session_id } => sql.exec(
                "DELETE FROM seen WHERE session_id = ?",
                vec![session_id.into()],
            )?,
            Change::ForgetCreatedBefore(at) => {
                sql.exec("DELETE FROM seen WHERE created_at < ?", vec![at.0.into()])?
            }
            Change::MarkErased { key, at } => sql.exec(
                "INSERT INTO erased (key, at) VALUES (?, ?) \
                 ON CONFLICT (key) DO UPDATE SET at = MAX(at, excluded.at)",
                vec![key.into(), at.0.into()],
            )?,
            Change::ForgetErasedBefore(at) => {
                sql.exec("DELETE FROM erased WHERE at < ?", vec![at.0.into()])?
            }
        };
        Ok(())
    }

    /// What is remembered of these sessions, and which of these erasure keys are marked.
    pub(super) fn recall(
        &self,
        session_ids: &[String],
        erasure_keys: &[String],
    ) -> Result<Recalled> {
        let seen = self.select_in(
            "SELECT session_id, status, gap_since, checked_at, tries, failure, failure_status, \
             retry_at FROM seen WHERE session_id IN",
            session_ids,
            |row| Ok((row.text()?, seen_of(row)?)),
        )?;
        Ok(Recalled {
            seen: seen
                .into_iter()
                .filter_map(|(id, seen)| Some((id, seen?)))
                .collect(),
            marked: self.select_in("SELECT key FROM erased WHERE key IN", erasure_keys, |row| {
                row.text()
            })?,
        })
    }

    /// The rows `query` (ending in `IN`) selects for `keys`, read by `read`, in chunks of the
    /// core's [`LOOKUP_CHUNK`].
    fn select_in<T>(
        &self,
        query: &str,
        keys: &[String],
        mut read: impl FnMut(&mut Columns) -> Result<T>,
    ) -> Result<Vec<T>> {
        let mut found = Vec::new();
        for chunk in keys.chunks(LOOKUP_CHUNK) {
            let marks = vec!["?"; chunk.len()].join(", ");
            let bound: Vec<worker::SqlStorageValue> =
                chunk.iter().map(|key| key.as_str().into()).collect();
            let cursor = self.sql().exec(&format!("{query} ({marks})"), bound)?;
            found.extend(rows::all(&cursor, &mut read)?);
        }
        Ok(found)
    }

    /// Writes the run's changes and its state (progress and lease), with no `.await` between.
    pub(super) fn store_progress(&self, run: &mut reconcile::Run) -> Result<()> {
        let changes: Vec<Change> = run.drain_changes().collect();
        for change in changes {
            self.apply(change)?;
        }
        self.save(run.state())
    }
}
