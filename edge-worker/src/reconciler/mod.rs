//! Reconciliation with Didit's API ([`didit_edge_core::reconcile`]): one global Durable Object
//! that keeps the sweep's state, what it found of each session and which erased subjects to
//! leave alone, and does each step's IO.
//!
//! The cron trigger asks it to run (only when `DIDIT_API_KEY` is set: otherwise nothing is
//! called); a run that used up its budget continues from the object's alarm. Every decision
//! (what to list, what is a gap, when to set one aside, when to wait, what the event is) is
//! the core's. Every step's IO is bounded by the core's `STEP_TIMEOUT_SECS`, which is what lets
//! a run stop before its lease ends. An erasure that arrives while a run waits on a step is
//! handed to that run as soon as the step's answer is back.
//!
//! Its parts: [`schema`] (the tables and their migrations), [`store`] (the sweep's state, the
//! `seen` rows and erasure marks), [`run`] (the run driver: the core's steps, each one's IO),
//! [`api`] (Didit's API), [`inboxes`] (asking an inbox, injecting an event) and [`admin`] (what
//! the admin API asks: an erasure, the status).

mod admin;
mod inboxes;
mod run;
mod schema;
mod store;

use std::cell::RefCell;

use didit_edge_core::admin::ReconciliationStatus;
use didit_edge_core::identity::Subject;
use didit_edge_core::time::UnixMs;
use worker::{console_error, durable_object, DurableObject, Env, Request, Response, Result, State};

use crate::clock::now_ms;
use crate::objects::{self, ReconcilerCall, GLOBAL};
use crate::{http, settings};
use schema::migrate;

/// The reconciler ([`GLOBAL`]).
// `fetch` and `alarm` only: each handler the macro exports is a future the upload carries.
#[durable_object(alarm)]
pub struct Reconciler {
    state: State,
    env: Env,
    /// Erasure keys learned while a run waits on a step, for that run to hear of.
    erased_meanwhile: RefCell<Vec<String>>,
    /// The sweep's state as last read or written, so that a step that left it as it was
    /// writes nothing (each write is a billed row, and a run saves after every step).
    stored_state: RefCell<Option<String>>,
}

/// An operator's erasure, for the reconciler to forget (`ReconcilerCall::Forget`).
/// Written as `crate::fields` says.
pub(crate) struct ForgetRequest {
    /// The subject's kind.
    pub subject_kind: String,
    /// Its id.
    pub subject_id: String,
}

/// What the reconciler forgot of an erased subject (written as `crate::fields` says).
pub(crate) struct Forgotten {
    /// Sessions it remembered (0 or 1).
    pub sessions: usize,
}

fn now() -> UnixMs {
    UnixMs(now_ms())
}

impl DurableObject for Reconciler {
    fn new(state: State, env: Env) -> Self {
        if let Err(error) = migrate(&state.storage().sql()) {
            console_error!("reconciler schema could not be brought up to date: {error}");
        }
        Self {
            state,
            env,
            erased_meanwhile: RefCell::new(Vec::new()),
            stored_state: RefCell::new(None),
        }
    }

    async fn fetch(&self, request: Request) -> Result<Response> {
        match ReconcilerCall::of_path(&request.path()) {
            Some(ReconcilerCall::Run) => http::json(200, self.run().await?),
            Some(ReconcilerCall::Forget) => self.forget(request).await,
            Some(ReconcilerCall::Status) => {
                let config = settings::config(&self.env);
                let status = match config.reconcile.on() {
                    Some(reconcile) => self.status(reconcile)?,
                    None => ReconciliationStatus::Off,
                };
                http::json(200, serde_json::to_string(&status)?)
            }
            None => objects::no_such_call(),
        }
    }

    async fn alarm(&self) -> Result<Response> {
        if let Err(error) = self.run().await {
            console_error!("reconciliation run failed: {error}");
        }
        Response::ok("done")
    }
}

/// The cron trigger's part: ask the reconciler to run, when reconciliation is on. With
/// `DIDIT_API_KEY` unset nothing is called.
pub(crate) async fn tick(env: &Env) {
    if settings::config(env).reconcile.on().is_none() {
        return;
    }
    let answer = objects::post(
        env,
        ReconcilerCall::BINDING,
        GLOBAL,
        ReconcilerCall::Run.path(),
        String::new(),
    )
    .await;
    if let Err(error) = answer {
        console_error!("the reconciler could not be reached: {error}");
    }
}

/// `GET /admin/reconciliation`'s body: off (no object is called), or the reconciler's status
/// as the object wrote it. Passed on as text: reading it only to write it again would compile
/// the whole view's deserializer into the upload.
pub(crate) async fn status_json(env: &Env) -> Result<String> {
    if settings::config(env).reconcile.on().is_none() {
        return Ok(serde_json::to_string(&ReconciliationStatus::Off)?);
    }
    objects::post(
        env,
        ReconcilerCall::BINDING,
        GLOBAL,
        ReconcilerCall::Status.path(),
        String::new(),
    )
    .await?
    .text()
    .await
}

/// Tells the reconciler an operator erased `subject` (when reconciliation is on): how many
/// sessions it forgot. Off, nothing is called; the subject's inbox keeps its own erasure
/// mark, which a later switch-on finds.
pub(crate) async fn forget(env: &Env, subject: &Subject<'_>) -> Result<Option<Forgotten>> {
    if settings::config(env).reconcile.on().is_none() {
        return Ok(None);
    }
    let ask = ForgetRequest {
        subject_kind: subject.kind.as_str().into(),
        subject_id: subject.id.to_string(),
    };
    objects::ask(
        env,
        ReconcilerCall::BINDING,
        GLOBAL,
        ReconcilerCall::Forget.path(),
        &ask,
    )
    .await
    .map(Some)
}
