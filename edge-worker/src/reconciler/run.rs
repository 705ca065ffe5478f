//! The run driver: begins a run when one is due, does the IO of each step the core's
//! [`reconcile::Run`] hands out and hands back its outcome, and stores how the run ended.

use didit_edge_core::admin::{rfc3339, RunView};
use didit_edge_core::alert::Alert;
use didit_edge_core::config::ReconcileConfig;
use didit_edge_core::reconcile::api::{MAX_DECISION_BYTES, MAX_PAGE_BYTES};
use didit_edge_core::reconcile::{self, Step, STEP_TIMEOUT_MS};
use didit_edge_core::time::{to_rfc3339, UnixSecs};
use futures_util::future::LocalBoxFuture;
use serde::Serialize;
use worker::{console_error, console_log, Env, Result};

use super::inboxes::{inject, knows};
use super::{now, Reconciler};
use crate::clock::{alarm_at, within};
use crate::didit_api::api_get;
use crate::{alerts, faults, settings};

impl Reconciler {
    /// Hands the run every erasure that arrived while it waited.
    fn hear_erasures(&self, run: &mut reconcile::Run) {
        for key in self.erased_meanwhile.borrow_mut().drain(..) {
            run.handle_erased(&key);
        }
    }

    /// Makes sure an alarm comes by `at`.
    async fn wake_at(&self, at: UnixSecs) -> Result<()> {
        let storage = self.state.storage();
        let at_ms = at.0.saturating_mul(1000);
        if storage
            .get_alarm()
            .await?
            .is_none_or(|current| current > at_ms)
        {
            storage.set_alarm(alarm_at(at_ms)).await?;
        }
        Ok(())
    }

    /// [`Self::run_once`], boxed: the cron's call and the alarm share one copy of the worker's
    /// largest state machine instead of each inlining its own.
    pub(super) fn run(&self) -> LocalBoxFuture<'_, Result<String>> {
        Box::pin(self.run_once())
    }

    /// One run, if one is due: its report (or why none ran).
    async fn run_once(&self) -> Result<String> {
        let config = settings::config(&self.env);
        let Some(reconcile) = config.reconcile.on() else {
            return Ok(r#"{"ran":false,"reason":"off"}"#.into());
        };
        let mut run = match self.begin(reconcile).await? {
            Ok(run) => run,
            Err(not_now) => return Ok(not_now),
        };
        self.drive(reconcile, &mut run).await;
        self.end(run).await
    }

    /// Begins a run with the settings in force, its lease stored; or, when none is due, makes
    /// sure the alarm comes when one is, and says why none ran (`Err`).
    async fn begin(
        &self,
        reconcile: &ReconcileConfig,
    ) -> Result<std::result::Result<reconcile::Run, String>> {
        let mut run_settings = reconcile.settings;
        run_settings.lease_secs = faults::reconcile_lease_secs(&self.env, run_settings.lease_secs);
        run_settings.gap_retry = faults::reconcile_gap_retry(&self.env, run_settings.gap_retry);
        let run = match reconcile::begin(self.load()?, run_settings, now()) {
            Ok(run) => run,
            Err(not_now) => {
                self.wake_at(not_now.until()).await?;
                return Ok(Err(format!(
                    r#"{{"ran":false,"until":"{}"}}"#,
                    to_rfc3339(not_now.until().0)
                )));
            }
        };
        // The lease is stored before the first await: no other run can start beside this one.
        self.save(run.state())?;
        self.erased_meanwhile.borrow_mut().clear();
        Ok(Ok(run))
    }

    /// Does each step's IO and hands its outcome to the run, until the run is done or its
    /// storage fails.
    async fn drive(&self, reconcile: &ReconcileConfig, run: &mut reconcile::Run) {
        loop {
            let step = run.poll(now());
            if let Err(error) = self.store_progress(run) {
                // Storage that cannot be written will not be written on the next step either.
                run.handle_storage_failure(error.to_string());
                break;
            }
            match step {
                Step::Done => break,
                Step::List { path } => {
                    let fetched = api_get(reconcile, &path, MAX_PAGE_BYTES, STEP_TIMEOUT_MS).await;
                    self.hear_erasures(run);
                    run.handle_page(fetched.answer(), now());
                }
                Step::Recall {
                    session_ids,
                    erasure_keys,
                } => match self.recall(&session_ids, &erasure_keys) {
                    Ok(recalled) => run.handle_recalled(recalled.seen, recalled.marked),
                    Err(error) => run.handle_storage_failure(error.to_string()),
                },
                Step::AskInbox {
                    inbox,
                    webhook_type,
                    status,
                } => {
                    let known = knows(&self.env, &inbox, webhook_type, status).await;
                    self.hear_erasures(run);
                    run.handle_inbox(known, now());
                }
                Step::FetchDecision { path } => {
                    let fetched =
                        api_get(reconcile, &path, MAX_DECISION_BYTES, STEP_TIMEOUT_MS).await;
                    self.hear_erasures(run);
                    run.handle_decision(fetched.answer(), now());
                }
                Step::Inject { body } => {
                    let injected = inject(&self.env, &body).await;
                    self.hear_erasures(run);
                    run.handle_injected(injected, now());
                }
                Step::Alert { alert } => {
                    let queued = queue_alert(&self.env, alert).await;
                    self.hear_erasures(run);
                    run.handle_alerted(queued, now());
                }
            }
        }
    }

    /// Stores the run's last changes and how it ended, makes sure the alarm comes for the
    /// next, and logs the run's report (which it returns).
    async fn end(&self, mut run: reconcile::Run) -> Result<String> {
        if let Err(error) = self.store_progress(&mut run) {
            console_error!("reconciliation could not store its last changes: {error}");
        }
        let (state, next) = run.finish(now());
        self.save(&state)?;
        self.wake_at(next).await?;
        let line = RunLine {
            event: "reconcile_run",
            run: state.last_run.as_ref().map(RunView::of),
            next_run_at: rfc3339(next),
        };
        let line = serde_json::to_string(&line)?;
        console_log!("{line}");
        Ok(line)
    }
}

/// The `reconcile_run` log line.
#[derive(Serialize)]
struct RunLine {
    event: &'static str,
    run: Option<RunView>,
    next_run_at: String,
}

/// Queues a give-up alert, within the step's timeout.
async fn queue_alert(env: &Env, alert: Alert) -> std::result::Result<(), ()> {
    let raised = [alert];
    match within(STEP_TIMEOUT_MS, alerts::enqueue(env, &raised)).await {
        Some(Ok(())) => Ok(()),
        Some(Err(error)) => {
            console_error!("reconciliation could not queue an alert: {error}");
            Err(())
        }
        None => Err(()),
    }
}
