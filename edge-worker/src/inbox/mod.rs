//! One Durable Object per subject, holding the core's inbox machine: this adapter loads it
//! from SQLite, feeds it claims, replays and erasures with the time, writes the changes it
//! makes before answering or awaiting anything, and on each alarm performs the steps the core's
//! run conductor (`didit_edge_core::inbox::run::Run`) hands out: reading a stored body or
//! payload, reading origin health, POSTing to an origin, reporting health, publishing a
//! status, telling the dead-letter index. It decides none of them.
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

use didit_edge_core::budget::{alarm_backoff_ms, SubrequestBudget};
use didit_edge_core::inbox::run::{self, Begin, Finished, Run, RunError, Step, LISTED_ATTEMPTS};
use didit_edge_core::inbox::{
    subject_kind, Claim, ClaimContent, Classification, IndexChange, IndexEntry, LogRecord,
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
use crate::fields::{InboxErasure, Replays};
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

/// The per-subject inbox: its events, each consumer's copy, and the alarm that delivers them.
// `fetch` and `alarm` only: each handler the macro exports is a future the upload carries.
#[durable_object(alarm)]
pub struct Inbox {
    state: State,
    env: Env,
    /// The machine, loaded from storage on first use; dropped when a write fails, so that it
    /// is loaded again from what storage really holds.
    machine: RefCell<Option<Machine>>,
    /// The alarm as this object last set or read it (`None`: not known yet), so a claim does
    /// not read it from storage every time.
    alarm: Cell<Option<Option<i64>>>,
    /// Whether a count of failed alarm runs may be stored (unknown after a restart).
    failures_recorded: Cell<bool>,
}

impl Inbox {
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
        let mut slot = self.machine.borrow_mut();
        if slot.is_none() {
            *slot = Some(store::load(&sql)?);
        }
        let Some(machine) = slot.as_mut() else {
            return Err("inbox machine missing".into());
        };
        step(machine);
        let written: Result<()> = machine
            .drain_changes()
            .collect::<Vec<_>>()
            .iter()
            .try_for_each(|change| store::apply(&sql, change));
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

    /// Sets (or, with `None`, deletes) the alarm, remembering it.
    async fn set_alarm(&self, at_ms: Option<i64>) -> Result<()> {
        self.alarm.set(None);
        let storage = self.state.storage();
        match at_ms {
            Some(at) => storage.set_alarm(alarm_at(at)).await?,
            None => storage.delete_alarm().await?,
        }
        self.alarm.set(Some(at_ms));
        Ok(())
    }

    /// Claims the id; stores the event if it is new.
    async fn claim(&self, mut request: Request) -> Result<Response> {
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
        };
        let now = now_ms();
        let receipt = self.step(|machine| machine.handle_claim(machine_claim, UnixMs(now)))?;
        // A duplicate re-arms too: it heals a claim that stored the event but failed to set
        // the alarm (Didit then retries, and lands here).
        self.wake_by(now).await?;
        http::receipt(&receipt)
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

    /// One alarm run: the core's [`Run`] decides, this performs each step it asks for and
    /// hands back what came of it, with the time. Errors are the caller's to absorb.
    async fn run_alarm(&self) -> Result<()> {
        faults::alarm_run(&self.state, &self.env)?;
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
            let step = self.step(|machine| run.poll(machine, UnixMs(now_ms())))?;
            if let Some(finished) = self.perform(&mut run, step).await? {
                break finished;
            }
        };
        if let Some(handover) = finished.handed_over {
            // Logged when a run hands over, which is when its budget mattered.
            console_log!(
                "{}",
                serde_json::json!({
                    "event": "inbox_alarm",
                    "work": handover.work,
                    "subrequests": handover.subrequests,
                    "subrequest_limit": handover.subrequest_limit,
                    "handed_over": true,
                })
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
                secrets,
                id,
            } => {
                let (result, retry_after) =
                    origin::deliver(target, secrets, &id, run.payload()).await;
                run.handle_answer(result, retry_after, UnixMs(now_ms()))
                    .map_err(run_failed)?;
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

    /// Absorbs a failed alarm run: logs it and re-arms with a backoff, so pending work always
    /// has an alarm. Only a failure to set the alarm itself is left to the platform's retries.
    async fn after_failed_run(&self, error: worker::Error) -> Result<()> {
        let sql = self.sql();
        let failures = store::meta_number(&sql, "alarm_failures").unwrap_or(0) + 1;
        self.failures_recorded.set(true);
        if let Err(error) = store::set_meta_number(&sql, "alarm_failures", Some(failures)) {
            console_error!("inbox could not count its failed alarm run: {error}");
        }
        let failures = u32::try_from(failures).unwrap_or(u32::MAX);
        let wait = alarm_backoff_ms(failures, faults::alarm_backoff_base_ms(&self.env));
        console_error!(
            "inbox alarm run failed ({failures} in a row), next run in {wait} ms: {error}"
        );
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
        Self {
            state,
            env,
            machine: RefCell::new(fresh.then(Machine::new)),
            alarm: Cell::new(fresh.then_some(None)),
            failures_recorded: Cell::new(!fresh),
        }
    }

    async fn fetch(&self, request: Request) -> Result<Response> {
        match InboxCall::of_path(&request.path()) {
            Some(InboxCall::Claim) => self.claim(request).await,
            Some(InboxCall::Replay) => self.replay(request).await,
            Some(InboxCall::Erase) => self.erase().await,
            Some(InboxCall::Knows) => self.knows(request).await,
            None => objects::no_such_call(),
        }
    }

    async fn alarm(&self) -> Result<Response> {
        // The alarm that woke this run is spent: until the run sets the next one, none is set.
        self.alarm.set(Some(None));
        match self.run_alarm().await {
            Ok(()) if self.failures_recorded.get() => {
                // Only the backoff's count; if it stays, the next failure waits a little longer.
                match store::set_meta_number(&self.sql(), "alarm_failures", None) {
                    Ok(()) => self.failures_recorded.set(false),
                    Err(error) => {
                        console_error!("inbox could not reset its alarm failure count: {error}");
                    }
                }
            }
            Ok(()) => {}
            Err(error) => self.after_failed_run(error).await?,
        }
        Response::ok("done")
    }
}
