//! One alarm run of an inbox, as a conductor in the way of [`crate::reconcile::Run`] and
//! quinn-proto's `Connection`: [`Run::poll`] hands out the next IO step (read a stored body or
//! payload, read the origins' health, POST to an origin, report health, publish a status,
//! tell the dead-letter index) and each `handle_*` takes what came of it, with the time it
//! came. Every budget, limit and rule of the run lives here; the Durable Object performs the
//! steps and reports the results, and the simulation drives this same conductor.
//!
//! The inbox machine is not held across steps: each call takes `&mut Inbox`, because between
//! any two steps the object may take a claim, a replay, an erasure or a reconciled result,
//! and the run must see them. In particular, before every POST the run checks that the copy
//! it is delivering is still pending: an erasure that lands while an origin is being tried
//! stops the attempt before the next origin gets the erased subject's data.

use alloc::collections::{BTreeMap, VecDeque};
use alloc::string::{String, ToString};
use alloc::vec::Vec;
use core::fmt;

use super::{DueCopy, Inbox, IndexChange, Outcome, Rejected, Seq, Standing, Work};
use crate::attempt::{AttemptResult, Plan};
use crate::budget::{SubrequestBudget, MISCONFIGURED_RETRY_MS};
use crate::config::{DeliveryConfig, OriginSigning};
use crate::health::{report_changes_nothing, BreakerState, Report};
use crate::intake::Identified;
use crate::origin::Origin;
use crate::origin_gate::{Answer, GateLimits, Lease, GATE_RETRY_MS, GRANT_FRESH_MS};
use crate::rejection::Rejection;
use crate::route::{origins_for, SplitMix64};
use crate::stream::{StatusUpdate, CHANNELS_PER_UPDATE};
use crate::time::UnixMs;
use crate::verify::Verified;

/// Most units of work (deliveries, classifications) one run does before handing over to a
/// fresh run, keeping each run short and bounded.
pub const WORK_PER_RUN: usize = 25;
/// No new work starts after a run has gone on this long: with slow origins, attempts of up to
/// four origin timeouts each could otherwise outlast an alarm's 15 minute wall-clock limit.
pub const RUN_TIME_BUDGET_MS: i64 = 60_000;
/// Subrequests one origin costs an attempt: the POST, and a health report if the outcome
/// moves the origin's breaker.
pub const SUBREQUESTS_PER_ORIGIN: u32 = 2;
/// Subrequests kept back in every run for the dead-letter index, which must hear of every
/// dead letter.
pub const INDEX_RESERVE: u32 = 1;
/// Subrequests a limited origin costs an attempt on top of [`SUBREQUESTS_PER_ORIGIN`]: asking
/// its gate, and releasing the lease. An unlimited origin never costs them.
pub const GATE_SUBREQUESTS: u32 = 2;
/// Most attempts a dead letter's listing shows (the latest); the inbox keeps them all.
pub const LISTED_ATTEMPTS: usize = 100;

/// What an unclassified event was stored with.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredBody {
    /// Didit's body.
    pub body: String,
    /// How it was authenticated.
    pub verified: Verified,
    /// A console test delivery.
    pub test: bool,
    /// When the edge received it.
    pub received_at: UnixMs,
}

/// Why a run stops going on at once and hands over to the next.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Handover {
    /// Units of work done.
    pub work: usize,
    /// Subrequests used.
    pub subrequests: u32,
    /// The run's subrequest limit.
    pub subrequest_limit: u32,
}

/// How a run ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Finished {
    /// When the next run is due (`None`: nothing left to do, no alarm).
    pub wake_at: Option<UnixMs>,
    /// Set when the run stopped for a budget with work still due: the next run starts at
    /// once, with fresh budgets (logged, since that is when a budget mattered).
    pub handed_over: Option<Handover>,
}

/// The next thing the run needs done.
#[derive(Debug)]
pub enum Step<'c> {
    /// Read this unclassified event's stored body and hand it to [`Run::handle_body`].
    ReadBody(Seq),
    /// Read the origins' breakers and hand them to [`Run::handle_health`]. Reading them anew
    /// (rather than from a recent copy) costs one subrequest, allowed only if `may_fetch`.
    ReadHealth {
        /// Whether the budget allows one subrequest for it.
        may_fetch: bool,
    },
    /// Read the stored payload of this event and hand it to [`Run::handle_payload`].
    ReadPayload(Seq),
    /// POST the payload ([`Run::payload`]) to `origin`, in the origin's format and signed as
    /// `signing` says, under the event id `id`, and hand the answer to [`Run::handle_answer`].
    Post {
        /// Where.
        origin: &'c Origin,
        /// What the origin receives and the keys that sign it.
        signing: OriginSigning<'c>,
        /// The event id: the `webhook-id` (and a drop-in body's `event_id`).
        id: String,
    },
    /// Ask `origin`'s gate for a turn under `limits`, presenting `turn`, and hand the answer
    /// to [`Run::handle_gate`]. Only an origin with limits is ever asked about.
    AskGate {
        /// The limited origin (its gate is named by its name).
        origin: &'c Origin,
        /// What its gate applies.
        limits: GateLimits,
        /// The copy's due time: the turn this gate told it, if that is why it waited (its
        /// reservation), and otherwise a time the gate does not know.
        turn: UnixMs,
    },
    /// Give a lease back to `origin`'s gate (no answer needed: a release that fails is only
    /// logged, and the lease expires on its own).
    ReleaseGate {
        /// The limited origin.
        origin: &'c Origin,
        /// The lease's id.
        lease: u64,
    },
    /// Tell the shared breakers (no answer needed: a report that fails is only logged).
    ReportHealth(Report),
    /// Publish a status (no answer needed: a publish that fails is only logged).
    Publish(StatusUpdate),
    /// Tell the dead-letter index these changes, each listed with at most
    /// `listed_attempts` of its latest attempts, and hand the result to
    /// [`Run::handle_index_pushed`].
    PushIndex {
        /// The inbox's subject.
        subject: String,
        /// What to list and unlist.
        changes: Vec<IndexChange>,
        /// How many attempts each listing shows.
        listed_attempts: usize,
    },
    /// The run is over: set the alarm as said.
    Done(Finished),
}

/// How [`begin`] starts.
#[derive(Debug)]
pub enum Begin<'c> {
    /// A run (boxed: it carries the attempt in progress).
    Run(alloc::boxed::Box<Run<'c>>),
    /// The delivery settings are broken: nothing is sent or forgotten (retention is
    /// suspended, since it depends on them); look again at `retry_at`, soon enough to notice
    /// a fix, rare enough not to spin.
    SettingsBroken {
        /// When to look again.
        retry_at: UnixMs,
    },
}

/// A run that cannot go on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RunError {
    /// A stored event could not be classified from its body. The run fails, the inbox backs
    /// off and tries again: nothing is lost, and a release that classifies it takes it on.
    Unclassifiable {
        /// The event.
        seq: Seq,
        /// Why.
        rejection: Rejection,
    },
    /// A step's answer came when the run was not waiting for it (an adapter's bug).
    OutOfStep,
}

impl fmt::Display for RunError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Unclassifiable { seq, rejection } => {
                write!(f, "event {} cannot be classified: {rejection}", seq.0)
            }
            Self::OutOfStep => f.write_str("an answer came for a step the run did not ask for"),
        }
    }
}

impl core::error::Error for RunError {}

/// Starts a run at `now` with the delivery settings in force (`None`: broken) and whether the
/// status stream is on. `seed` feeds the run's random draws (origin weights, retry jitter).
pub fn begin(
    settings: Option<&DeliveryConfig>,
    stream_on: bool,
    now: UnixMs,
    seed: u64,
) -> Begin<'_> {
    let Some(settings) = settings else {
        return Begin::SettingsBroken {
            retry_at: now.plus_ms(MISCONFIGURED_RETRY_MS),
        };
    };
    let mut budget = SubrequestBudget::new(settings.subrequest_limit);
    budget.take(INDEX_RESERVE);
    Begin::Run(alloc::boxed::Box::new(Run {
        settings,
        stream_on,
        started: now,
        budget,
        work_done: 0,
        handed_over: false,
        random: SplitMix64(seed),
        phase: Phase::Start,
        queued: VecDeque::new(),
        payload: String::new(),
        gate_trouble: false,
    }))
}

/// Where a run stands.
#[derive(Debug)]
enum Phase<'c> {
    /// Nothing done yet: retention first.
    Start,
    /// Between units of work.
    Next,
    /// Waiting for an unclassified event's body.
    Classifying(Seq),
    /// In a delivery attempt.
    Attempting(alloc::boxed::Box<Attempt<'c>>),
    /// Waiting for the dead-letter index.
    Indexing(Vec<IndexChange>),
    /// Over.
    Done,
}

/// One delivery attempt in progress.
#[derive(Debug)]
struct Attempt<'c> {
    delivery: DueCopy,
    candidates: Vec<&'c Origin>,
    /// The breaker states of the candidates, as last read.
    health: BTreeMap<String, BreakerState>,
    stage: Stage<'c>,
    rejected_by: Vec<Rejected>,
}

#[derive(Debug)]
enum Stage<'c> {
    /// Waiting for the breakers.
    Health,
    /// Waiting for the payload.
    Payload,
    /// Sending, origin by origin.
    Sending {
        plan: Plan<'c>,
        /// The origin being sent to (its gate asked, its turn granted, or the POST asked
        /// for), until its answer comes.
        in_flight: Option<Flight<'c>>,
    },
}

/// The origin an attempt is at, and where its turn stands.
#[derive(Clone, Copy, Debug)]
struct Flight<'c> {
    origin: &'c Origin,
    turn: Turn,
}

/// Where a request stands with its origin's gate.
#[derive(Clone, Copy, Debug)]
enum Turn {
    /// The gate was asked at `asked_at`; its answer is awaited.
    Asking {
        asked_at: UnixMs,
        limits: GateLimits,
    },
    /// The gate granted `lease` to the ask made at `asked_at`; the POST is next.
    Granted { lease: Lease, asked_at: UnixMs },
    /// The POST was asked for (under `lease`, for a limited origin); its answer is awaited.
    Posted { lease: Option<Lease> },
}

/// One alarm run; see the module's documentation.
#[derive(Debug)]
pub struct Run<'c> {
    settings: &'c DeliveryConfig,
    stream_on: bool,
    started: UnixMs,
    budget: SubrequestBudget,
    work_done: usize,
    handed_over: bool,
    /// The run's draws.
    random: SplitMix64,
    phase: Phase<'c>,
    /// Fire-and-forget steps to hand out before going on.
    queued: VecDeque<Step<'c>>,
    /// The payload of the attempt in progress.
    payload: String,
    /// A gate could not be asked during this run (logged once a run).
    gate_trouble: bool,
}

impl<'c> Run<'c> {
    /// The next step at `now`.
    pub fn poll(&mut self, inbox: &mut Inbox, now: UnixMs) -> Step<'c> {
        if let Some(step) = self.queued.pop_front() {
            return step;
        }
        let policy = self.settings.inbox_policy();
        loop {
            match &mut self.phase {
                Phase::Start => {
                    inbox.handle_timeout(&policy, self.started);
                    self.phase = Phase::Next;
                }
                Phase::Next => match self.next_work(inbox, now) {
                    Some(step) => return step,
                    None => {
                        let changes = inbox.poll_index();
                        if changes.is_empty() {
                            return self.finish(inbox, now);
                        }
                        self.phase = Phase::Indexing(changes.clone());
                        return Step::PushIndex {
                            subject: inbox.subject().unwrap_or_default().to_string(),
                            changes,
                            listed_attempts: LISTED_ATTEMPTS,
                        };
                    }
                },
                Phase::Classifying(seq) => return Step::ReadBody(*seq),
                Phase::Attempting(attempt) => match &mut attempt.stage {
                    Stage::Health => {
                        return Step::ReadHealth {
                            may_fetch: self.budget.allows(1),
                        }
                    }
                    Stage::Payload => return Step::ReadPayload(attempt.delivery.seq),
                    Stage::Sending { plan, in_flight } => {
                        // Asked again before the answer: the same step is still owed.
                        match *in_flight {
                            Some(Flight {
                                origin,
                                turn: Turn::Posted { .. },
                            }) => {
                                return Step::Post {
                                    origin,
                                    signing: self.settings.signing_for(origin),
                                    id: attempt.delivery.id.clone(),
                                }
                            }
                            Some(Flight {
                                origin,
                                turn: Turn::Asking { limits, .. },
                            }) => {
                                return Step::AskGate {
                                    origin,
                                    limits,
                                    turn: attempt.delivery.due_at,
                                }
                            }
                            _ => {}
                        }
                        let standing = inbox.standing(&attempt.delivery, &policy);
                        if !matches!(standing, Standing::Next) {
                            // A turn granted and not used goes back at once.
                            if let Some(Flight {
                                origin,
                                turn: Turn::Granted { lease, .. },
                            }) = in_flight.take()
                            {
                                self.queued.push_back(Step::ReleaseGate {
                                    origin,
                                    lease: lease.id,
                                });
                            }
                        }
                        match standing {
                            Standing::Next => {}
                            // Settled while an origin was tried (an erasure): no origin gets
                            // it any more, and nothing is recorded.
                            Standing::Settled => {
                                self.payload = String::new();
                                self.phase = Phase::Next;
                                continue;
                            }
                            // An earlier event came first meanwhile: it goes first.
                            Standing::Overtaken => plan.stop(now.0),
                        }
                        if let Some(Flight {
                            origin,
                            turn: Turn::Granted { lease, asked_at },
                        }) = *in_flight
                        {
                            // The request starts within GRANT_FRESH_MS of its ask, or not at
                            // all: the rate the gate keeps is then the rate the origin sees,
                            // and the request ends before its lease can expire.
                            if now.0.saturating_sub(asked_at.0) <= GRANT_FRESH_MS as i64 {
                                *in_flight = Some(Flight {
                                    origin,
                                    turn: Turn::Posted { lease: Some(lease) },
                                });
                                plan.sending(now.0);
                                return Step::Post {
                                    origin,
                                    signing: self.settings.signing_for(origin),
                                    id: attempt.delivery.id.clone(),
                                };
                            }
                            *in_flight = None;
                            plan.busy(now.plus_ms(GATE_RETRY_MS).0);
                            self.queued.push_back(Step::ReleaseGate {
                                origin,
                                lease: lease.id,
                            });
                        }
                        // A limited origin also costs asking its gate and releasing the lease.
                        let cost = plan.peek().map_or(0, |next| {
                            1 + if next.limits().is_some() {
                                GATE_SUBREQUESTS
                            } else {
                                0
                            }
                        });
                        if cost > 0 && !self.budget.take(cost) {
                            plan.stop(now.0);
                        }
                        if let Some(origin) = plan.next_origin(now.0) {
                            if let Some(limits) = origin.limits() {
                                *in_flight = Some(Flight {
                                    origin,
                                    turn: Turn::Asking {
                                        asked_at: now,
                                        limits,
                                    },
                                });
                                return Step::AskGate {
                                    origin,
                                    limits,
                                    turn: attempt.delivery.due_at,
                                };
                            }
                            *in_flight = Some(Flight {
                                origin,
                                turn: Turn::Posted { lease: None },
                            });
                            return Step::Post {
                                origin,
                                signing: self.settings.signing_for(origin),
                                id: attempt.delivery.id.clone(),
                            };
                        }
                        self.settle(inbox, now);
                    }
                },
                Phase::Indexing(changes) => {
                    return Step::PushIndex {
                        subject: inbox.subject().unwrap_or_default().to_string(),
                        changes: changes.clone(),
                        listed_attempts: LISTED_ATTEMPTS,
                    }
                }
                Phase::Done => return self.finish(inbox, now),
            }
        }
    }

    /// The payload of the attempt in progress, for [`Step::Post`].
    pub fn payload(&self) -> &str {
        &self.payload
    }

    /// The stored body asked for by [`Step::ReadBody`] (`None`: it is no longer stored, as
    /// after an erasure). Classifies it with the settings in force.
    pub fn handle_body(
        &mut self,
        inbox: &mut Inbox,
        stored: Option<StoredBody>,
        now: UnixMs,
    ) -> Result<(), RunError> {
        let Phase::Classifying(seq) = self.phase else {
            return Err(RunError::OutOfStep);
        };
        self.phase = Phase::Next;
        let Some(stored) = stored else {
            return Ok(());
        };
        let classified = Identified::recall(
            stored.body.as_bytes(),
            stored.verified,
            stored.test,
            stored.received_at.secs().0,
        )
        .and_then(|identified| identified.classify(&self.settings.classify_policy()))
        .map_err(|rejection| RunError::Unclassifiable { seq, rejection })?;
        let update = self.stream_on.then(|| classified.status_update.clone());
        inbox.handle_classified(seq, classified.into(), now);
        self.queued.extend(update.map(Step::Publish));
        Ok(())
    }

    /// The breakers asked for by [`Step::ReadHealth`] (empty when they could not be read:
    /// health only orders origins, so every origin then counts as available), and how many
    /// subrequests reading them took.
    pub fn handle_health(
        &mut self,
        snapshot: &BTreeMap<String, BreakerState>,
        subrequests: u32,
    ) -> Result<(), RunError> {
        self.budget.take(subrequests);
        let Phase::Attempting(attempt) = &mut self.phase else {
            return Err(RunError::OutOfStep);
        };
        let Stage::Health = attempt.stage else {
            return Err(RunError::OutOfStep);
        };
        attempt.health = crate::sorted::map_of(attempt.candidates.iter().filter_map(|origin| {
            snapshot
                .get(&origin.name)
                .map(|state| (origin.name.clone(), *state))
        }));
        attempt.stage = Stage::Payload;
        Ok(())
    }

    /// The payload asked for by [`Step::ReadPayload`] (`None`: not stored). Plans the attempt.
    pub fn handle_payload(&mut self, payload: Option<String>, now: UnixMs) -> Result<(), RunError> {
        let Phase::Attempting(attempt) = &mut self.phase else {
            return Err(RunError::OutOfStep);
        };
        let Stage::Payload = attempt.stage else {
            return Err(RunError::OutOfStep);
        };
        // An event that has lost its payload (which retention never does to an undelivered
        // one) fails visibly, on the schedule.
        let plan = match (&payload, attempt.delivery.has_payload) {
            (Some(_), true) => Plan::new(
                core::mem::take(&mut attempt.candidates),
                &attempt.delivery.rejected_by,
                |name| attempt.health.get(name).copied(),
                now.0,
            ),
            _ => Plan::without_payload(now.0),
        };
        self.payload = payload.unwrap_or_default();
        attempt.stage = Stage::Sending {
            plan,
            in_flight: None,
        };
        Ok(())
    }

    /// The answer to [`Step::Post`], with the origin's `Retry-After`, at `now`.
    pub fn handle_answer(
        &mut self,
        result: AttemptResult,
        retry_after_ms: Option<u64>,
        now: UnixMs,
    ) -> Result<(), RunError> {
        let Phase::Attempting(attempt) = &mut self.phase else {
            return Err(RunError::OutOfStep);
        };
        let Stage::Sending { plan, in_flight } = &mut attempt.stage else {
            return Err(RunError::OutOfStep);
        };
        let Some(Flight {
            origin,
            turn: Turn::Posted { lease },
        }) = *in_flight
        else {
            return Err(RunError::OutOfStep);
        };
        *in_flight = None;
        if let Some(lease) = lease {
            self.queued.push_back(Step::ReleaseGate {
                origin,
                lease: lease.id,
            });
        }
        if let Some(up) = result.health_signal() {
            let last_seen = attempt.health.get(&origin.name).copied();
            // Only a report that moves the breaker is worth a subrequest, and only while the
            // budget has one.
            if !report_changes_nothing(last_seen, up, now.0) && self.budget.take(1) {
                self.queued.push_back(Step::ReportHealth(Report {
                    origin: origin.name.clone(),
                    up,
                    retry_after_ms,
                    at_ms: now,
                    probe: false,
                }));
            }
        }
        if let (true, Some(status)) = (result.is_rejection(), result.status()) {
            attempt.rejected_by.push(Rejected {
                origin: origin.name.clone(),
                status,
            });
        }
        plan.record(origin, result, now.0);
        Ok(())
    }

    /// The gate's answer to [`Step::AskGate`] at `now` (`None`: the gate could not be asked,
    /// was too slow, or answered something unreadable). A turn granted is used by the next
    /// POST; a turn later, or no answer, makes the origin busy for this attempt: it is skipped
    /// like an origin whose breaker is open, never failed, never sent to without a grant.
    /// Returns `true` for the first unanswered ask of this run, which is worth a log line.
    pub fn handle_gate(&mut self, answer: Option<Answer>, now: UnixMs) -> Result<bool, RunError> {
        let Phase::Attempting(attempt) = &mut self.phase else {
            return Err(RunError::OutOfStep);
        };
        let Stage::Sending { plan, in_flight } = &mut attempt.stage else {
            return Err(RunError::OutOfStep);
        };
        let Some(Flight {
            origin,
            turn: Turn::Asking { asked_at, .. },
        }) = *in_flight
        else {
            return Err(RunError::OutOfStep);
        };
        *in_flight = None;
        match answer {
            Some(Answer::Go(lease)) => {
                *in_flight = Some(Flight {
                    origin,
                    turn: Turn::Granted { lease, asked_at },
                });
                Ok(false)
            }
            Some(Answer::Wait(until)) => {
                plan.busy(until.0);
                Ok(false)
            }
            None => {
                plan.busy(now.plus_ms(GATE_RETRY_MS).0);
                Ok(!core::mem::replace(&mut self.gate_trouble, true))
            }
        }
    }

    /// The answer to [`Step::PushIndex`]: `true` when the index took the changes.
    pub fn handle_index_pushed(
        &mut self,
        inbox: &mut Inbox,
        pushed: bool,
        now: UnixMs,
    ) -> Result<(), RunError> {
        let Phase::Indexing(changes) = &self.phase else {
            return Err(RunError::OutOfStep);
        };
        if pushed {
            inbox.handle_index_synced(changes);
        } else {
            inbox.handle_index_failed(now);
        }
        self.phase = Phase::Done;
        Ok(())
    }

    /// The next unit of work, or `None` when nothing is due or a budget says stop.
    fn next_work(&mut self, inbox: &mut Inbox, now: UnixMs) -> Option<Step<'c>> {
        let policy = self.settings.inbox_policy();
        let work = inbox.poll_work(&policy, now)?;
        if self.work_done == WORK_PER_RUN
            || now.0.saturating_sub(self.started.0) > RUN_TIME_BUDGET_MS
            || !self.budget.allows(SUBREQUESTS_PER_ORIGIN)
        {
            self.handed_over = true;
            return None;
        }
        self.work_done += 1;
        match work {
            Work::Classify(seq) => {
                // Publishing what it says costs a subrequest per channel.
                if self.stream_on && !self.budget.take(CHANNELS_PER_UPDATE) {
                    self.handed_over = true;
                    return None;
                }
                self.phase = Phase::Classifying(seq);
                Some(Step::ReadBody(seq))
            }
            Work::Deliver(delivery) => {
                // A fresh draw per attempt spreads traffic over origins of equal priority by
                // weight.
                let seed = self.random.next();
                let candidates = origins_for(
                    &self.settings.origins,
                    &delivery.consumer,
                    &delivery.webhook_type,
                    delivery.risk_level,
                    seed,
                );
                self.phase = Phase::Attempting(alloc::boxed::Box::new(Attempt {
                    delivery,
                    candidates,
                    health: BTreeMap::new(),
                    stage: Stage::Health,
                    rejected_by: Vec::new(),
                }));
                Some(Step::ReadHealth {
                    may_fetch: self.budget.allows(1),
                })
            }
        }
    }

    /// Records what the attempt in progress came to.
    fn settle(&mut self, inbox: &mut Inbox, now: UnixMs) {
        let phase = core::mem::replace(&mut self.phase, Phase::Next);
        let Phase::Attempting(attempt) = phase else {
            return;
        };
        let attempt = *attempt;
        let Stage::Sending { plan, .. } = attempt.stage else {
            return;
        };
        let (verdict, log) = plan.finish();
        let outcome = Outcome {
            verdict,
            log,
            rejected_by: attempt.rejected_by,
        };
        self.payload = String::new();
        let jitter = self.random.next();
        let policy = self.settings.inbox_policy();
        inbox.handle_attempt(&attempt.delivery, outcome, &policy, now, jitter);
    }

    /// Retention at the end, then when to wake.
    fn finish(&mut self, inbox: &mut Inbox, now: UnixMs) -> Step<'c> {
        self.phase = Phase::Done;
        let policy = self.settings.inbox_policy();
        inbox.handle_timeout(&policy, now);
        // A lease given back as the run ended (a grant that came too late, a copy settled
        // meanwhile) still goes back before the run is over.
        if let Some(step) = self.queued.pop_front() {
            return step;
        }
        let finished = if self.handed_over {
            Finished {
                wake_at: Some(now),
                handed_over: Some(Handover {
                    work: self.work_done,
                    subrequests: self.budget.used(),
                    subrequest_limit: self.budget.limit(),
                }),
            }
        } else {
            Finished {
                wake_at: inbox.poll_timeout(&policy, now),
                handed_over: None,
            }
        };
        Step::Done(finished)
    }
}
