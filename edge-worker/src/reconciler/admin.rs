//! What the admin API asks of the reconciler: to forget an erased subject, and where
//! reconciliation stands.

use didit_edge_core::admin::{
    rfc3339, GapView, ReconciliationStatus, Reconciling, RunView, SettingsView, SweepView,
    LISTED_GAPS,
};
use didit_edge_core::config::ReconcileConfig;
use didit_edge_core::identity::{Subject, SubjectKind};
use didit_edge_core::reconcile::memory::gap_reference;
use didit_edge_core::reconcile::{erasure, erasure_key};
use didit_edge_core::rejection::Rejection;
use didit_edge_core::time::{to_rfc3339_micros, UnixSecs};
use worker::{Request, Response, Result};

use super::{now, ForgetRequest, Forgotten, Reconciler};
use crate::rows::{self, Columns};
use crate::{http, objects};

impl Reconciler {
    /// An operator erased a subject: its session is forgotten and marked to be left alone,
    /// and a run under way hears of it at its next step.
    pub(super) async fn forget(&self, mut request: Request) -> Result<Response> {
        let ask: ForgetRequest = objects::message(&mut request).await?;
        let Some(kind) = SubjectKind::from_name(&ask.subject_kind) else {
            return http::rejection(&Rejection::InvalidSubject {
                reason: "unknown subject kind",
            });
        };
        let subject = Subject {
            kind,
            id: ask.subject_id.as_str().into(),
        };
        let mut forgotten = Forgotten { sessions: 0 };
        if let Some(changes) = erasure(&subject, now().secs()) {
            forgotten.sessions = usize::try_from(
                rows::first(
                    &self.sql().exec(
                        "SELECT COUNT(*) FROM seen WHERE session_id = ?",
                        vec![ask.subject_id.as_str().into()],
                    )?,
                    Columns::int,
                )?
                .unwrap_or(0),
            )
            .unwrap_or(0);
            for change in changes {
                self.apply(change)?;
            }
            self.erased_meanwhile
                .borrow_mut()
                .push(erasure_key(&subject));
        }
        http::json(200, serde_json::to_string(&forgotten)?)
    }

    /// Where reconciliation stands, for `GET /admin/reconciliation`.
    pub(super) fn status(&self, reconcile: &ReconcileConfig) -> Result<ReconciliationStatus> {
        let state = self.load()?;
        let count = |query: &str| -> Result<i64> {
            Ok(rows::first(&self.sql().exec(query, None)?, Columns::int)?.unwrap_or(0))
        };
        let gaps = rows::all(
            &self.sql().exec(
                "SELECT session_id, status, tries, failure, failure_status, retry_at FROM seen \
                 WHERE tries > 0 ORDER BY retry_at IS NOT NULL, retry_at LIMIT ?",
                vec![i64::from(LISTED_GAPS).into()],
            )?,
            |row| {
                let session_id = row.text()?;
                Ok(GapView {
                    gap: gap_reference(&session_id),
                    session_id,
                    status: row.text()?,
                    tries: row.int()?,
                    failure: row.opt_text()?.unwrap_or_default(),
                    http_status: row.opt_int()?,
                    next_try_at: row.opt_int()?.map(|at| rfc3339(UnixSecs(at))),
                })
            },
        )?;
        let settings = &reconcile.settings;
        Ok(ReconciliationStatus::On(Box::new(Reconciling {
            settings: SettingsView::of(settings),
            activated_at: state.switched_on().map(to_rfc3339_micros),
            checkpoint: state.checkpoint.map(rfc3339),
            sweep: state.sweep.as_ref().map(SweepView::of),
            last_run: state.last_run.as_ref().map(RunView::of),
            next_run_at: state
                .switched_on()
                .map(|_| rfc3339(state.next_run_at(settings))),
            api_failures_in_a_row: state.failures,
            sessions_remembered: count("SELECT COUNT(*) FROM seen")?,
            gaps_waiting: count("SELECT COUNT(*) FROM seen WHERE gap_since IS NOT NULL")?,
            gaps_set_aside: count("SELECT COUNT(*) FROM seen WHERE tries > 0")?,
            gaps_given_up: count("SELECT COUNT(*) FROM seen WHERE tries > 0 AND retry_at IS NULL")?,
            set_aside: gaps,
            erased_subjects: count("SELECT COUNT(*) FROM erased")?,
        })))
    }
}
