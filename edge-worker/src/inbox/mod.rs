//! One Durable Object per subject, holding the core's inbox machine: this adapter loads it
//! from SQLite, feeds it claims, replays and erasures with the time, writes the changes it
//! makes before answering or awaiting anything, and in each run performs the steps the core's
//! run conductor (`didit_edge_core::inbox::run::Run`) hands out: reading a stored body or
//! payload, reading origin health, POSTing to an origin, reporting health, publishing a
//! status, telling the dead-letter index. It decides none of them.
//!
//! A run starts right after a claim is answered (in `waitUntil`), so a new event's first
//! attempt does not wait for an alarm, or from the alarm, which stays the backstop; the core's
//! run gate (`didit_edge_core::inbox::gate`) says which, and that no two runs overlap.
//!
//! The object is single-threaded and SQLite calls are synchronous, so a claim's duplicate
//! check and its insert run with no `.await` between them: any number of concurrent identical
//! deliveries produce exactly one `accepted`. The runtime holds the reply until the write is
//! durable (output gate), so Didit's 200 always means the event is stored.
//!
//! The alarm never ends in an error: the platform retries a failing alarm only a few times and
//! then drops it, which would leave pending events with no alarm at all. A failed run is
//! logged and the inbox re-arms itself with a backoff.

mod store;

use std::cell::{Cell, RefCell};
use std::rc::Rc;

use didit_edge_core::budget::{alarm_backoff_ms, SubrequestBudget};
use didit_edge_core::inbox::gate::{self, AfterRun, OnAlarm, RunGate, Ticket};
use didit_edge_core::inbox::run::{self, Begin, Finished, Run, RunError, Step, LISTED_ATTEMPTS};
use didit_edge_core::inbox::{
    subject_kind, Change, Claim, ClaimContent, Classification, IndexChange, IndexEntry, LogRecord,
    ReplayFilter,
};
use didit_edge_core::time::{UnixMs, UnixSecs};
use worker::{
    console_error, console_log, durable_object, DurableObject, Env, Request, Response, Result,
    State,
};

use crate::claim::{self, Content};
use crate::clock::{alarm_at, now_ms};
use crate::dead_letters::{self, Changes, DeadLetter, DeadLetterKey};
use crate::fields::{InboxErasure, LookupCall, Replays};
use crate::objects::{self, InboxCall};
use crate::{faults, health, http, origin, settings, stream};

/// A replay request from the edge: every dead letter of this inbox, or one event's, or one
/// consumer's (written as `crate::fields` says).
pub(crate) struct ReplayRequest {
    /// Only this event (its id or Didit's `event_id`).
    pub id: Option<String>,
    /// Only this consumer's copies.
    pub consumer: Option<String>,
}

/// What a replay put back in line (also the admin API's answer to a replay of one event).
pub(crate) use didit_edge_core::admin::Replayed;

/// Reconciliation's question: does the inbox hold the transition to `status`?
/// Written as `crate::fields` says.
pub(crate) struct KnowsRequest {
    /// The `webhook_type`.
    pub webhook_type: String,
    /// The status Didit's API reports.
    pub status: String,
}

fn random_seed() -> u64 {
    (js_sys::Math::random() * 9_007_199_254_740_992.0) as u64
}

/// The core's machine this object holds and drives (the object itself is the `Inbox` class
/// `wrangler.toml` binds, so the two cannot share the name).
type Machine = didit_edge_core::inbox::Inbox;

/// The per-subject inbox: its events, each consumer's copy, and the runs that deliver them.
// `fetch` and `alarm` only: each handler the macro exports is a future the upload carries.
#[durable_object(alarm)]
pub struct Inbox {
    /// Shared with the run a claim starts, which goes on after the claim's answer.
    object: Rc<Object>,
}

/// What the object holds in memory.
struct Object {
    state: State,
    env: Env,
    /// The machine, loaded from storage on first use; dropped when a write fails, so that it
    /// is loaded again from what storage really holds.
    machine: RefCell<Option<Machine>>,
    /// The alarm as this object last set or read it (`None`: not known yet), so a claim does
    /// not read it from storage every time.
    alarm: Cell<Option<Option<i64>>>,
    /// Whether a count of failed runs may be stored (unknown after a restart).
    failures_recorded: Cell<bool>,
    /// One run at a time, whether a claim or the alarm started it.
    gate: RefCell<RunGate>,
    /// The machine let go of everything ([`Change::Vacate`]): storage is to be released.
    vacated: Cell<bool>,
    /// Storage was released: the schema is created again before the next write.
    released: Cell<bool>,
}

impl Object {
    fn sql(&self) -> worker::SqlStorage {
        self.state.storage().sql()
    }

    /// Runs `step` on the machine and writes the changes it makes, all with no `.await`.
    fn step<T>(&self, step: impl FnOnce(&mut Machine) -> T) -> Result<T> {
        let mut step = Some(step);
        let mut result = None;
        self.step_dyn(&mut |machine| result = step.take().map(|step| step(machine)))?;
        result.ok_or_else(|| "inbox step did not run".into())
    }

    /// `step`'s body, behind `dyn` so that loading, writing and logging are compiled once
    /// rather than once per step (the upload pays for every copy: docs/performance.md).
    fn step_dyn(&self, step: &mut dyn FnMut(&mut Machine)) -> Result<()> {
        let sql = self.sql();
        if self.released.get() {
            store::migrate(&sql)?;
            self.released.set(false);
        }
        let mut slot = self.machine.borrow_mut();
        if slot.is_none() {
            *slot = Some(store::load(&sql)?);
        }
        let Some(machine) = slot.as_mut() else {
            return Err("inbox machine missing".into());
        };
        step(machine);
        let changes: Vec<_> = machine.drain_changes().collect();
        let written = store::apply(&sql, &changes, machine.subject());
        if changes.contains(&Change::Vacate) {
            self.vacated.set(true);
        }
        if let Err(error) = written {
            *slot = None;
            return Err(error);
        }
        let subject_kind = subject_kind(machine.subject());
        for transition in machine.drain_transitions() {
            let record = LogRecord {
                transition: &transition,
                subject_kind,
            };
            console_log!("{}", record.to_line());
        }
        Ok(())
    }

    /// Reads the machine without changing it.
    fn peek<T>(&self, read: impl FnOnce(&Machine) -> T) -> Result<T> {
        self.step(|machine| read(machine))
    }

    /// Makes sure an alarm will come no later than `at_ms`.
    async fn wake_by(&self, at_ms: i64) -> Result<()> {
        let storage = self.state.storage();
        let current = match self.alarm.get() {
            Some(known) => known,
            None => storage.get_alarm().await?,
        };
        match current {
            Some(current) if current <= at_ms => Ok(()),
            _ => self.set_alarm(Some(at_ms)).await,
        }
    }

    /// Sets (or, with `None`, deletes) the alarm, remembering it; an alarm already known to
    /// be so is not written again (each write is a billed row).
    async fn set_alarm(&self, at_ms: Option<i64>) -> Result<()> {
        if self.alarm.get() == Some(at_ms) {
            return Ok(());
        }
        self.alarm.set(None);
        let storage = self.state.storage();
        match at_ms {
            Some(at) => storage.set_alarm(alarm_at(at)).await?,
            None => storage.delete_alarm().await?,
        }
        self.alarm.set(Some(at_ms));
        Ok(())
    }

    /// Claims the id; stores the event if it is new. Answers with the run to start once the
    /// answer is on its way, if the gate admitted one.
    async fn claim(&self, mut request: Request) -> Result<(Response, Option<Ticket>)> {
        let text = request.text().await?;
        let claim: claim::Claim<'_> = didit_edge_core::json::from_str(&text)?;
        let content = match claim.content {
            Content::Classified {
                risk_level,
                consumers,
                cloud_event,
            } => ClaimContent::Classified(Classification {
                risk_level,
                consumers,
                payload: cloud_event.get().into(),
            }),
            Content::Unclassified {
                verified,
                test,
                received_at: _,
                body,
            } => ClaimContent::Unclassified {
                body: body.get().into(),
                verified,
                test,
            },
        };
        let machine_claim = Claim {
            id: claim.id.into_owned(),
            legacy_id: claim.legacy_id.into_owned(),
            subject: claim.inbox.into_owned(),
            alias: claim.alias.map(|a| a.into_owned()),
            webhook_type: claim.webhook_type.into_owned(),
            status: claim.status.map(|s| s.into_owned()),
            created_at: UnixSecs(claim.created_at),
            content,
            source: claim.source,
            verified: claim.verified,
        };
        let now = UnixMs(now_ms());
        let config = settings::config(&self.env);
        let settings = settings::delivery(&config);
        let (receipt, next_due) = self.step(|machine| {
            let receipt = machine.handle_claim(machine_claim, now);
            (receipt, gate::next_due(machine, settings, now))
        })?;
        // A duplicate asks too: it heals a claim that stored the event but failed to set the
        // alarm (Didit then retries, and lands here).
        let after = self.gate.borrow_mut().after_claim(next_due, now);
        if let Some(by) = after.alarm_by {
            if let Err(error) = self.wake_by(by.0).await {
                if let Some(ticket) = after.run {
                    self.gate.borrow_mut().finished(ticket, true, now);
                }
                return Err(error);
            }
        }
        Ok((http::receipt(&receipt)?, after.run))
    }

    /// Puts dead letters back in line with a fresh schedule.
    async fn replay(&self, mut request: Request) -> Result<Response> {
        let ask: ReplayRequest = objects::message(&mut request).await?;
        let now = now_ms();
        let replayed = self.step(|machine| {
            machine.handle_replay(
                ReplayFilter {
                    id: ask.id.as_deref(),
                    consumer: ask.consumer.as_deref(),
                },
                UnixMs(now),
            )
        })?;
        // The listing should not show what was just replayed; if the index is unreachable (or
        // the delivery settings are broken) the alarm tells it later.
        if !replayed.is_empty() {
            self.sync_index().await?;
        }
        self.wake_by(now).await?;
        let replayed = Replayed {
            replayed: replayed
                .into_iter()
                .map(|key| DeadLetterKey {
                    id: key.id,
                    consumer: key.consumer,
                })
                .collect(),
        };
        http::json(200, serde_json::to_string(&Replays(replayed.replayed))?)
    }

    /// Erases the subject's data, then tells the dead-letter index (or leaves that to the
    /// alarm, which retries it).
    async fn erase(&self) -> Result<Response> {
        let now = now_ms();
        let erasure = self.step(|machine| machine.handle_erase(UnixMs(now)))?;
        if erasure.dead_letters > 0 {
            self.sync_index().await?;
        }
        self.wake_by(now).await?;
        http::json(200, serde_json::to_string(&InboxErasure(erasure))?)
    }

    /// The admin API's lookup: the timelines of the subject's events, changing nothing. An
    /// object that holds nothing (most often one the lookup itself created) releases its
    /// storage again, so looking up an unknown subject leaves nothing billed behind.
    async fn lookup(&self, mut request: Request) -> Result<Response> {
        let LookupCall(ask) = objects::message(&mut request).await?;
        // Loading first: storage released by an earlier lookup has its schema again to be read.
        let empty = self.peek(Machine::holds_nothing)?;
        let facts = store::lookup_facts(&self.sql())?;
        let found = self.peek(|machine| machine.lookup(&ask, &facts))?;
        if empty {
            self.vacated.set(true);
            self.release_if_vacated().await?;
        }
        let answer = match found {
            Ok(lookup) => serde_json::to_string(&lookup)?,
            Err(miss) => miss.as_str().into(),
        };
        http::json(200, answer)
    }

    /// Whether the inbox holds the transition to a status Didit's API reports now.
    async fn knows(&self, mut request: Request) -> Result<Response> {
        let ask: KnowsRequest = objects::message(&mut request).await?;
        let now = UnixMs(now_ms()).secs();
        let known =
            self.peek(|machine| machine.knows_transition(&ask.webhook_type, &ask.status, now))?;
        http::json(200, serde_json::to_string(&known)?)
    }

    /// Tells the dead-letter index what it has not heard yet (after a replay or an erasure;
    /// the alarm run does it through its own step). A failure leaves it for later.
    async fn sync_index(&self) -> Result<()> {
        let changes = self.peek(Machine::poll_index)?;
        if changes.is_empty() {
            return Ok(());
        }
        let subject = self.peek(|machine| machine.subject().unwrap_or_default().to_string())?;
        let pushed = self.push_index(&subject, &changes, LISTED_ATTEMPTS).await?;
        let now = UnixMs(now_ms());
        self.step(|machine| match pushed {
            true => machine.handle_index_synced(&changes),
            false => machine.handle_index_failed(now),
        })
    }

    /// Sends index changes, each listing with its latest attempts; `false` when the index
    /// could not be reached.
    async fn push_index(
        &self,
        subject: &str,
        pending: &[IndexChange],
        listed_attempts: usize,
    ) -> Result<bool> {
        let mut changes = Changes::default();
        for IndexChange { seq, key, change } in pending {
            match change {
                IndexEntry::Put {
                    webhook_type,
                    reason,
                    received_at,
                    dead_at,
                } => changes.put.push(DeadLetter {
                    id: key.id.clone(),
                    consumer: key.consumer.clone(),
                    subject: subject.to_string(),
                    webhook_type: webhook_type.clone(),
                    reason: reason.as_str().into(),
                    received_at_ms: received_at.0,
                    dead_at_ms: dead_at.0,
                    replayable_until_ms: None,
                    attempts: store::attempt_log(
                        &self.sql(),
                        *seq,
                        &key.consumer,
                        listed_attempts,
                        self.peek(|machine| {
                            machine
                                .history(*seq, &key.consumer)
                                .map(|history| history.latest.clone())
                                .unwrap_or_default()
                        })?,
                    )?,
                }),
                IndexEntry::Remove => changes.remove.push(DeadLetterKey {
                    id: key.id.clone(),
                    consumer: key.consumer.clone(),
                }),
            }
        }
        match dead_letters::push(&self.env, &changes).await {
            Ok(()) => Ok(true),
            Err(error) => {
                console_error!("dead-letter index unreachable, will retry: {error}");
                Ok(false)
            }
        }
    }

    /// Runs under `ticket` until the gate is free: each run, then another if work arrived
    /// while it went. A failed run is absorbed ([`Self::after_failed_run`]); only a failure to
    /// set its backoff alarm is returned.
    async fn runs(&self, mut ticket: Ticket) -> Result<()> {
        loop {
            let (failed, backoff) = match self.run(ticket).await {
                Ok(()) => {
                    self.forget_failures();
                    (false, Ok(()))
                }
                Err(error) => (true, self.after_failed_run(error).await),
            };
            match self
                .gate
                .borrow_mut()
                .finished(ticket, failed, UnixMs(now_ms()))
            {
                AfterRun::Again(next) => ticket = next,
                AfterRun::Idle => return backoff,
            }
        }
    }

    /// The run a claim started, after its answer: nothing awaits it, so a failure to set the
    /// backoff alarm is logged (the claim's backstop alarm is still set).
    async fn runs_after_claim(self: Rc<Self>, ticket: Ticket) {
        if let Err(error) = self.runs(ticket).await {
            console_error!("inbox could not set its alarm after a failed run: {error}");
        }
    }

    /// Releases the object's storage once the machine has let go of everything
    /// ([`Change::Vacate`]); an object that served its subject then costs nothing to keep.
    async fn release_if_vacated(&self) -> Result<()> {
        if !self.vacated.replace(false) {
            return Ok(());
        }
        self.state.storage().delete_all().await?;
        self.released.set(true);
        // Whether the alarm went with the data is the platform's to say: read it again.
        self.alarm.set(None);
        self.failures_recorded.set(false);
        Ok(())
    }

    /// Resets the count of failed runs once one succeeds.
    fn forget_failures(&self) {
        if !self.failures_recorded.get() {
            return;
        }
        // Only the backoff's count; if it stays, the next failure waits a little longer.
        match store::set_meta_number(&self.sql(), "alarm_failures", None) {
            Ok(()) => self.failures_recorded.set(false),
            Err(error) => console_error!("inbox could not reset its run failure count: {error}"),
        }
    }

    /// One run: the core's [`Run`] decides, this performs each step it asks for and hands
    /// back what came of it, with the time. It stops before any step once the gate no longer
    /// holds its ticket (taken over). Errors are the caller's to absorb.
    async fn run(&self, ticket: Ticket) -> Result<()> {
        faults::alarm_run(
            &self.env,
            || store::meta_number(&self.sql(), "fault_alarm_runs"),
            |runs| store::set_meta_number(&self.sql(), "fault_alarm_runs", Some(runs)),
        )?;
        let unreadable = self.peek(|machine| store::unreadable_alerts(machine, now_ms()))?;
        store::alert_unreadable(&self.env, &self.sql(), unreadable).await;
        let config = settings::config(&self.env);
        let settings = settings::delivery(&config);
        let stream_on = config.stream.on().is_some();
        let mut run = match run::begin(settings, stream_on, UnixMs(now_ms()), random_seed()) {
            Begin::Run(run) => run,
            Begin::SettingsBroken { retry_at } => {
                console_error!(
                    "inbox waits for valid delivery settings ({}); nothing is sent or forgotten meanwhile",
                    config.problems.settings().join(", ")
                );
                return self.set_alarm(Some(retry_at.0)).await;
            }
        };
        let finished = loop {
            if !self.gate.borrow().holds(ticket) {
                return Ok(());
            }
            let step = self.step(|machine| run.poll(machine, UnixMs(now_ms())))?;
            self.release_if_vacated().await?;
            if let Some(finished) = self.perform(&mut run, step).await? {
                break finished;
            }
        };
        if let Some(handover) = finished.handed_over {
            // Logged when a run hands over, which is when its budget mattered.
            // Numbers only, so written by hand rather than as a `json!` tree (a map build and
            // its serializer: docs/performance.md); keys in the order `json!` wrote them.
            console_log!(
                "{{\"event\":\"inbox_alarm\",\"handed_over\":true,\"subrequest_limit\":{},\"subrequests\":{},\"work\":{}}}",
                handover.subrequest_limit,
                handover.subrequests,
                handover.work,
            );
        }
        self.set_alarm(finished.wake_at.map(|at| at.0)).await
    }

    /// Performs one step of the run and hands back what came of it, with the time it came;
    /// `Some` when the run is over.
    async fn perform(&self, run: &mut Run<'_>, step: Step<'_>) -> Result<Option<Finished>> {
        match step {
            Step::ReadBody(seq) => {
                let stored = Some(store::stored_body(&self.sql(), seq)?);
                self.step(|machine| run.handle_body(machine, stored, UnixMs(now_ms())))?
                    .map_err(run_failed)?;
            }
            Step::ReadHealth { may_fetch } => {
                let mut allowance = SubrequestBudget::new(u32::from(may_fetch));
                let snapshot = health::snapshot(&self.env, &mut allowance).await;
                run.handle_health(&snapshot, allowance.used())
                    .map_err(run_failed)?;
            }
            Step::ReadPayload(seq) => {
                let payload = store::payload(&self.sql(), seq)?;
                run.handle_payload(payload, UnixMs(now_ms()))
                    .map_err(run_failed)?;
            }
            Step::Post {
                origin: target,
                signing,
                id,
            } => {
                let sent_at = now_ms();
                let (result, retry_after) =
                    origin::deliver(target, signing, &id, run.payload()).await;
                let now = UnixMs(now_ms());
                let latency = u64::try_from(now.0.saturating_sub(sent_at)).unwrap_or(0);
                health::count_attempt(&target.name, &result, latency, now);
                run.handle_answer(result, retry_after, now)
                    .map_err(run_failed)?;
            }
            Step::AskGate {
                origin,
                limits,
                turn,
            } => {
                let answer = crate::origin_gate::ask(&self.env, &origin.name, limits, turn).await;
                let first_trouble = run
                    .handle_gate(answer.as_ref().ok().copied(), UnixMs(now_ms()))
                    .map_err(run_failed)?;
                if let (true, Err(error)) = (first_trouble, &answer) {
                    // Once a run: the copy waits and is asked about again, never sent.
                    console_error!(
                        "origin {}: its gate could not be asked, its copies wait: {error}",
                        origin.name
                    );
                }
            }
            Step::ReleaseGate { origin, lease } => {
                crate::origin_gate::release(&self.env, &origin.name, lease).await;
            }
            Step::ReportHealth(report) => health::report(&self.env, &report).await,
            Step::Publish(update) => stream::publish(&self.env, &update).await,
            Step::PushIndex {
                subject,
                changes,
                listed_attempts,
            } => {
                let pushed = self.push_index(&subject, &changes, listed_attempts).await?;
                self.step(|machine| run.handle_index_pushed(machine, pushed, UnixMs(now_ms())))?
                    .map_err(run_failed)?;
            }
            Step::Done(finished) => return Ok(Some(finished)),
        }
        Ok(None)
    }

    /// Absorbs a failed run: logs it and re-arms with a backoff, so pending work always has an
    /// alarm. Only a failure to set the alarm itself is left to the platform's retries.
    async fn after_failed_run(&self, error: worker::Error) -> Result<()> {
        let sql = self.sql();
        let failures = store::meta_number(&sql, "alarm_failures").unwrap_or(0) + 1;
        self.failures_recorded.set(true);
        if let Err(error) = store::set_meta_number(&sql, "alarm_failures", Some(failures)) {
            console_error!("inbox could not count its failed alarm run: {error}");
        }
        let failures = u32::try_from(failures).unwrap_or(u32::MAX);
        let wait = alarm_backoff_ms(failures, faults::alarm_backoff_base_ms(&self.env));
        console_error!("inbox run failed ({failures} in a row), next run in {wait} ms: {error}");
        let wait = i64::try_from(wait).unwrap_or(i64::MAX);
        self.set_alarm(Some(now_ms().saturating_add(wait))).await
    }
}

/// A run that cannot go on fails, and the inbox backs off ([`Inbox::after_failed_run`]).
fn run_failed(error: RunError) -> worker::Error {
    worker::Error::from(error.to_string())
}

impl DurableObject for Inbox {
    fn new(state: State, env: Env) -> Self {
        let storage = store::migrate(&state.storage().sql()).unwrap_or_else(|error| {
            console_error!("inbox schema could not be brought up to date: {error}");
            store::Storage::Existing
        });
        // A fresh object has nothing to load, no alarm and no failures: it asks storage none
        // of that (most objects get one event, so this is most of their work).
        let fresh = storage == store::Storage::Fresh;
        let object = Object {
            state,
            env,
            machine: RefCell::new(fresh.then(Machine::new)),
            alarm: Cell::new(fresh.then_some(None)),
            failures_recorded: Cell::new(!fresh),
            gate: RefCell::new(RunGate::default()),
            vacated: Cell::new(false),
            released: Cell::new(false),
        };
        Self {
            object: Rc::new(object),
        }
    }

    async fn fetch(&self, request: Request) -> Result<Response> {
        let object = &self.object;
        match InboxCall::of_path(&request.path()) {
            Some(InboxCall::Claim) => {
                let (answer, run) = object.claim(request).await?;
                if let Some(ticket) = run {
                    let run = Rc::clone(object).runs_after_claim(ticket);
                    object.state.wait_until(run);
                }
                Ok(answer)
            }
            Some(InboxCall::Replay) => object.replay(request).await,
            Some(InboxCall::Erase) => object.erase().await,
            Some(InboxCall::Knows) => object.knows(request).await,
            Some(InboxCall::Lookup) => object.lookup(request).await,
            None => objects::no_such_call(),
        }
    }

    async fn alarm(&self) -> Result<Response> {
        let object = &self.object;
        // The alarm that woke this object is spent: until a run sets the next one, none is set.
        object.alarm.set(Some(None));
        let now = UnixMs(now_ms());
        let on_alarm = object.gate.borrow_mut().on_alarm(now);
        match on_alarm {
            OnAlarm::Busy { alarm_at } => object.set_alarm(Some(alarm_at.0)).await?,
            OnAlarm::Run(ticket) => object.runs(ticket).await?,
            OnAlarm::TakeOver(ticket) => {
                console_error!(
                    "inbox run never ended; the alarm takes over (a copy it was sending may be sent again)"
                );
                object.runs(ticket).await?;
            }
        }
        Response::ok("done")
    }
}
