//! A deterministic simulation of the whole delivery path, in the way FoundationDB and
//! TigerBeetle test theirs: the real inbox machine ([`didit_edge_core::inbox`]), the real intake
//! (signatures, identity, classification), the real attempt plans, breakers and retry
//! schedules, over a simulated clock, simulated origins and a simulated store, with faults
//! injected at every turn:
//!
//! - Didit sends events for many subjects: retries of one event, resends with a fresh
//!   timestamp, distinct events in the same second, events out of order, duplicates racing;
//! - origins answer 2xx, 5xx, 4xx, redirects, aborts, `Retry-After`, time out, refuse
//!   connections, and go through outages that end;
//! - an inbox crashes between any two changes it writes (its memory is dropped and it is
//!   restored from what was written), alarm runs fail, settings change (retention, schedule,
//!   origins added and removed, hold or continue), operators replay dead letters and erase
//!   subjects.
//!
//! After every step the invariants are checked: a delivery answered 200 is stored; no event
//! reaches an origin under two webhook-ids; each consumer gets a subject's events in the order
//! Didit created them (with the hold rule); no payload is dropped while a consumer may still
//! need it; a dead letter appears only once the schedule is used up or an origin aborted. At
//! the end, with the faults stopped, every accepted event reaches each of its consumers or is
//! a dead letter that was listed for replay, unless an operator erased its subject (and then
//! nothing of it reaches an origin afterwards, and no payload or body of it is left).
//!
//! `SIM_SEED=n` replays one run exactly; `SIM_SEEDS` (runs, default 40) and `SIM_STEPS` (steps
//! per run, default 1500) make longer ones. A failing run prints its seed and its last steps.

mod support;

use support::{env_number, panic_message, seeds, Rng};

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::fmt::Write as _;

use didit_edge_core::attempt::{AttemptResult, DeadReason, Plan};
use didit_edge_core::budget::SubrequestBudget;
use didit_edge_core::delivery::{CopyState, Retention};
use didit_edge_core::health::{report_changes_nothing, Breaker, BreakerPolicy, BreakerState};
use didit_edge_core::inbox::AfterDeadLetter;
use didit_edge_core::inbox::{
    Change, Claim, ClaimContent, Classification, CopyRecord, EventRecord, Inbox, InboxPolicy,
    IndexEntry, IndexSync, Outcome, Rejected, ReplayFilter, Seq, Source, StoredContent, Work,
};
use didit_edge_core::intake::{
    ClassifyPolicy as Classify, Delivery as Incoming, Identified, Intake,
};
use didit_edge_core::mac::{HmacSha256, RustCrypto};
use didit_edge_core::origin::{parse_origins, Origin};
use didit_edge_core::receipt::Receipt;
use didit_edge_core::retry::RetrySchedule;
use didit_edge_core::risk::RiskRules;
use didit_edge_core::route::origins_for;
use didit_edge_core::secret::WebhookSecrets;
use didit_edge_core::time::{UnixMs, UnixSecs};
use didit_edge_core::verify::SignatureHeaders;

const SECRET: &str = "sim-didit-secret";
const SECOND: i64 = 1_000;
const START: i64 = 1_800_000_000_000;

/// A small, well-mixed generator: every choice of a run comes from it, so a seed is a run.
/// How an origin answers right now.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Behaviour {
    Up,
    ServerError,
    Rejecting(u16),
    Redirecting,
    Aborting,
    Throttling,
    TimingOut,
    Refusing,
}

const BEHAVIOURS: [Behaviour; 8] = [
    Behaviour::Up,
    Behaviour::ServerError,
    Behaviour::Rejecting(401),
    Behaviour::Redirecting,
    Behaviour::Aborting,
    Behaviour::Throttling,
    Behaviour::TimingOut,
    Behaviour::Refusing,
];

/// One logical Didit event: what it says, and how Didit has sent it.
#[derive(Clone, Debug)]
struct DiditEvent {
    uid: u64,
    payload: serde_json::Value,
    /// When Didit first sent it: it retries and resends only within the freshness window.
    sent_at: i64,
    /// Didit's `event_id` is described both ways: stable (a resend keeps it, with a fresh
    /// timestamp) or new on every attempt (then it never resends with a fresh timestamp, since
    /// nothing could tell that from a new event).
    event_id_per_attempt: bool,
}

/// What the simulated store holds of one inbox: exactly what the adapter's tables hold.
#[derive(Clone, Debug, Default)]
struct Stored {
    subject: Option<String>,
    events: BTreeMap<Seq, EventRecord>,
    payloads: BTreeMap<Seq, String>,
    bodies: BTreeMap<Seq, (String, didit_edge_core::verify::Verified, bool)>,
    copies: BTreeMap<(Seq, String), CopyRecord>,
    /// Attempt batches logged per copy since it was last replayed.
    attempt_batches: BTreeMap<(Seq, String), u32>,
    /// Didit's `event_id`s attached to events after their claim.
    attached_aliases: BTreeSet<(Seq, String)>,
    /// When the subject was erased (the mark reconciliation reads).
    erased_at: Option<UnixMs>,
}

/// One subject's inbox: its store, its machine (absent after a crash), its alarm.
#[derive(Default)]
struct SimInbox {
    store: Stored,
    machine: Option<Inbox>,
    alarm: Option<i64>,
    failures: u32,
}

/// A crash cuts a step short after this many changes were written.
struct Crashed;

struct World {
    rng: Rng,
    now: i64,
    trace: VecDeque<String>,
    steps: u64,
    inboxes: BTreeMap<String, SimInbox>,
    didit: Vec<DiditEvent>,
    /// uid → the id the edge answered 200 with (accepted or duplicate).
    answered: BTreeMap<u64, String>,
    /// id → uid, for what reached origins.
    uid_of: BTreeMap<String, u64>,
    /// uid → every webhook-id an origin answered 2xx to.
    webhook_ids: BTreeMap<u64, BTreeSet<String>>,
    /// (id, consumer) first delivered.
    delivered: BTreeSet<(String, String)>,
    /// (id, consumer) the dead-letter index lists, and every one it ever listed.
    listed: BTreeSet<(String, String)>,
    ever_listed: BTreeSet<(String, String)>,
    /// (id, consumer) an origin aborted.
    aborted: BTreeSet<(String, String)>,
    /// Ids of events whose subject an operator erased: never delivered after that.
    erased: BTreeSet<String>,
    origins: Vec<Origin>,
    behaviours: BTreeMap<String, Behaviour>,
    breakers: BTreeMap<String, Breaker>,
    schedule: RetrySchedule,
    retention: Retention,
    after_dead_letter: AfterDeadLetter,
    subrequest_limit: u32,
    faults: bool,
    next_uid: u64,
    rules: RiskRules,
    secrets: WebhookSecrets,
    /// Consumers any configuration has had: kept in the last one so nothing ends with no origin.
    consumers_seen: BTreeSet<String>,
}

const ORIGIN_SETS: [&str; 3] = [
    r#"[{"name":"aws","url":"https://aws.example/","priority":0,"timeout_ms":2000},
        {"name":"gcp","url":"https://gcp.example/","priority":1,"timeout_ms":2000},
        {"name":"crm","url":"https://crm.example/","consumer":"crm","event_types":["user.*"]}]"#,
    r#"[{"name":"aws","url":"https://aws.example/","priority":1},
        {"name":"azure","url":"https://azure.example/","priority":0},
        {"name":"fraud","url":"https://fraud.example/","consumer":"fraud","risk_levels":["high"]},
        {"name":"crm","url":"https://crm.example/","consumer":"crm","event_types":["user.*"]}]"#,
    r#"[{"name":"gcp","url":"https://gcp.example/"}]"#,
];

const SCHEDULES: [&str; 3] = ["1,2,4", "5x3", "1,10,60,120"];

const STATUSES: [&str; 5] = [
    "In Progress",
    "In Review",
    "Approved",
    "Declined",
    "Resubmitted",
];

impl World {
    fn new(seed: u64) -> Self {
        let mut rng = Rng(seed);
        let origins = parse_origins(rng.pick::<&str>(&ORIGIN_SETS)).expect("valid origins");
        let schedule = RetrySchedule::parse(rng.pick::<&str>(&SCHEDULES))
            .expect("valid")
            .with_jitter_percent(20);
        let mut world = Self {
            now: START,
            trace: VecDeque::new(),
            steps: 0,
            inboxes: BTreeMap::new(),
            didit: Vec::new(),
            answered: BTreeMap::new(),
            uid_of: BTreeMap::new(),
            webhook_ids: BTreeMap::new(),
            delivered: BTreeSet::new(),
            listed: BTreeSet::new(),
            ever_listed: BTreeSet::new(),
            aborted: BTreeSet::new(),
            erased: BTreeSet::new(),
            behaviours: BTreeMap::new(),
            breakers: BTreeMap::new(),
            schedule,
            retention: Retention {
                payload_secs: rng.below(30),
                dead_letter_secs: 60 + rng.below(600),
                dedup_ttl_secs: 3_600,
                freshness_secs: 600,
            },
            after_dead_letter: if rng.chance(70) {
                AfterDeadLetter::Hold
            } else {
                AfterDeadLetter::Continue
            },
            subrequest_limit: *rng.pick(&[10, 50, 1000]),
            faults: true,
            next_uid: 1,
            rules: RiskRules::default(),
            secrets: WebhookSecrets::parse(SECRET).expect("secret"),
            consumers_seen: BTreeSet::new(),
            origins,
            rng,
        };
        world.note_consumers();
        world
    }

    fn note_consumers(&mut self) {
        for origin in &self.origins {
            self.consumers_seen.insert(origin.consumer().to_string());
        }
    }

    fn log(&mut self, line: String) {
        if self.trace.len() == 60 {
            self.trace.pop_front();
        }
        self.trace
            .push_back(format!("[{} t+{}ms] {line}", self.steps, self.now - START));
    }

    // --- Didit ---------------------------------------------------------------------------

    fn new_event(&mut self) -> DiditEvent {
        let uid = self.next_uid;
        self.next_uid += 1;
        let now_secs = self.now / SECOND;
        // Out of order: some events are created a little before others that arrive first.
        let created = now_secs - self.rng.below(30) as i64;
        let subject = format!("s{}", self.rng.below(6));
        let payload = if self.rng.chance(25) {
            serde_json::json!({
                "webhook_type": "user.data.updated", "vendor_data": subject,
                "timestamp": created, "status": "ACTIVE", "event_id": format!("e{uid}"),
                "changes": {"sim_uid": uid},
            })
        } else {
            let status = *self.rng.pick(&STATUSES);
            let mut payload = serde_json::json!({
                "webhook_type": "status.updated", "session_id": subject, "vendor_data": "u",
                "timestamp": created, "status": status, "event_id": format!("e{uid}"),
                "metadata": {"sim_uid": uid},
            });
            if status == "Declined" && self.rng.chance(50) {
                payload["decision"] = serde_json::json!({"aml_screenings": [{"node_id": "a", "status": "Declined", "total_hits": 3}]});
            }
            payload
        };
        let event = DiditEvent {
            uid,
            payload,
            sent_at: self.now,
            event_id_per_attempt: self.rng.chance(30),
        };
        self.didit.push(event.clone());
        event
    }

    /// One delivery through the real intake and the subject's inbox.
    fn send(&mut self, event: &DiditEvent, payload: &serde_json::Value) -> Result<(), Crashed> {
        let body = serde_json::to_vec(payload).expect("serializes");
        let tag = hex::encode(RustCrypto.tag(SECRET.as_bytes(), &body));
        let incoming = Incoming {
            body: &body,
            headers: SignatureHeaders {
                signature: Some(&tag),
                ..Default::default()
            },
            test_header: false,
        };
        let intake = Intake::new(incoming, false).expect("intake");
        let verified = intake
            .verify_with(&self.secrets, &mut RustCrypto)
            .expect("authentic");
        let identified = intake
            .identify(verified, self.now / SECOND, 86_400)
            .expect("identified");
        // While the delivery settings are "broken" the edge stores events unclassified.
        let content = if self.faults && self.rng.chance(10) {
            ClaimContent::Unclassified {
                body: String::from_utf8(body.clone()).expect("utf-8"),
                verified,
                test: false,
            }
        } else {
            let classified = identified
                .classify(&Classify {
                    risk_rules: &self.rules,
                    origins: &self.origins,
                })
                .expect("classified");
            ClaimContent::Classified(Classification {
                risk_level: classified.risk_level,
                consumers: classified.consumers,
                payload: classified.cloud_event.get().into(),
            })
        };
        let claim = Claim {
            id: identified.event_id.as_str().into(),
            legacy_id: identified.legacy_id.as_str().into(),
            subject: identified.inbox(),
            alias: identified.alias.clone(),
            webhook_type: identified.webhook_type.to_string(),
            status: identified.status.as_deref().map(String::from),
            created_at: UnixSecs(identified.created_at),
            content,
            source: Source::Webhook,
        };
        let inbox_name = claim.subject.clone();
        let now = UnixMs(self.now);
        let receipt = self.step(&inbox_name, |inbox| inbox.handle_claim(claim, now))?;
        let id = match &receipt {
            Receipt::Accepted { id } | Receipt::Duplicate { id } => id.clone(),
            Receipt::Erased => panic!("a webhook is always taken: {receipt:?}"),
        };
        // Answered 200: it must be stored.
        let stored = self.inboxes[&inbox_name]
            .store
            .events
            .values()
            .any(|record| record.id == id);
        assert!(stored, "answered {receipt:?} but not stored");
        if let Some(previous) = self.answered.insert(event.uid, id.clone()) {
            assert_eq!(previous, id, "one event answered with two ids");
        }
        self.uid_of.insert(id, event.uid);
        self.log(format!("claim uid {} → {receipt:?}", event.uid));
        let inbox = self.inboxes.get_mut(&inbox_name).expect("inbox");
        inbox.alarm = Some(inbox.alarm.map_or(self.now, |a| a.min(self.now)));
        Ok(())
    }

    fn didit_step(&mut self) {
        let choice = self.rng.below(100);
        let recent: Vec<DiditEvent> = self
            .didit
            .iter()
            .filter(|e| self.now - e.sent_at < 600 * SECOND)
            .cloned()
            .collect();
        let (event, payload) = if choice < 55 || recent.is_empty() {
            let event = self.new_event();
            let payload = event.payload.clone();
            (event, payload)
        } else {
            let event = self.rng.pick(&recent).clone();
            let mut payload = event.payload.clone();
            if event.event_id_per_attempt {
                // A retry under a fresh `event_id`, as if Didit made one per attempt.
                payload["event_id"] = format!("e{}-{}", event.uid, self.rng.next()).into();
            } else if choice < 70 {
                // A resend from the console: the same event_id, a fresh timestamp.
                let fresh = payload["timestamp"].as_i64().unwrap_or(0) + 60;
                payload["timestamp"] = fresh.into();
            }
            (event, payload)
        };
        // Duplicates racing: sometimes the same delivery twice at once.
        let times = if self.rng.chance(10) { 2 } else { 1 };
        for _ in 0..times {
            if self.send(&event, &payload).is_err() {
                self.log(format!("claim uid {} cut short by a crash", event.uid));
            }
        }
    }

    // --- the store and crashes ------------------------------------------------------------

    /// Runs `f` on an inbox's machine (restored from its store if it crashed), then writes the
    /// changes it made one by one, any of which a crash may cut off.
    fn step<T>(&mut self, name: &str, f: impl FnOnce(&mut Inbox) -> T) -> Result<T, Crashed> {
        let crash_after = (self.faults && self.rng.chance(5)).then(|| self.rng.below(4));
        let retries = self.schedule.retries();
        let inbox = self.inboxes.entry(name.to_string()).or_default();
        let machine = inbox.machine.get_or_insert_with(|| {
            Inbox::restore(
                inbox.store.subject.clone(),
                inbox.store.events.values().cloned(),
                inbox
                    .store
                    .copies
                    .iter()
                    .map(|((seq, consumer), copy)| (*seq, consumer.clone(), copy.clone())),
            )
            .with_attached_aliases(inbox.store.attached_aliases.iter().cloned())
            .with_erasure(inbox.store.erased_at)
        });
        let result = f(machine);
        machine.drain_transitions().for_each(drop);
        let changes: Vec<Change> = machine.drain_changes().collect();
        for (index, change) in changes.into_iter().enumerate() {
            if crash_after == Some(index as u64) {
                inbox.machine = None;
                return Err(Crashed);
            }
            apply(&mut inbox.store, change, retries);
        }
        if crash_after.is_some_and(|after| after as usize >= 1) && self.rng.chance(30) {
            // A crash after everything was written, before anything else happens.
            inbox.machine = None;
        }
        Ok(result)
    }

    // --- origins and health ---------------------------------------------------------------

    fn answer(
        &mut self,
        origin: &str,
        id: &str,
        consumer: &str,
    ) -> (AttemptResult, Option<u64>, i64) {
        let behaviour = self
            .behaviours
            .get(origin)
            .copied()
            .unwrap_or(Behaviour::Up);
        let latency = 5 + self.rng.below(50) as i64;
        match behaviour {
            Behaviour::Up => {
                assert!(
                    !self.erased.contains(id),
                    "{id} reached {origin} after its subject was erased"
                );
                let uid = self.uid_of.get(id).copied();
                if let Some(uid) = uid {
                    self.webhook_ids.entry(uid).or_default().insert(id.into());
                }
                let key = (id.to_string(), consumer.to_string());
                if !self.delivered.contains(&key) {
                    self.check_order_at_delivery(id, consumer);
                    self.delivered.insert(key);
                }
                (AttemptResult::Status(204), None, latency)
            }
            Behaviour::ServerError => (AttemptResult::Status(503), None, latency),
            Behaviour::Rejecting(status) => (AttemptResult::Status(status), None, latency),
            Behaviour::Redirecting => (
                AttemptResult::from_response(302, None, Some("/login")),
                None,
                latency,
            ),
            Behaviour::Aborting => {
                self.aborted.insert((id.to_string(), consumer.to_string()));
                (
                    AttemptResult::from_response(422, Some("abort-message"), None),
                    None,
                    latency,
                )
            }
            Behaviour::Throttling => (AttemptResult::Status(429), Some(5_000), latency),
            Behaviour::TimingOut => (AttemptResult::Timeout, None, 2_000),
            Behaviour::Refusing => (AttemptResult::Network, None, 1),
        }
    }

    fn origin_step(&mut self) {
        let names: Vec<String> = self.origins.iter().map(|o| o.name.clone()).collect();
        let name = self.rng.pick(&names).clone();
        let behaviour = if self.rng.chance(50) {
            Behaviour::Up
        } else {
            *self.rng.pick(&BEHAVIOURS)
        };
        self.log(format!("origin {name} is now {behaviour:?}"));
        self.behaviours.insert(name, behaviour);
    }

    // --- the alarm ------------------------------------------------------------------------

    fn alarm(&mut self, name: &str) {
        let inbox = self.inboxes.get_mut(name).expect("inbox");
        inbox.alarm = None;
        if self.faults && self.rng.chance(3) {
            inbox.failures += 1;
            let failures = inbox.failures;
            let wait = didit_edge_core::budget::alarm_backoff_ms(failures, 1_000);
            inbox.alarm = Some(self.now + wait as i64);
            self.log(format!("alarm of {name} failed ({failures} in a row)"));
            return;
        }
        inbox.failures = 0;
        match self.run_alarm(name) {
            Ok(next) => {
                let inbox = self.inboxes.get_mut(name).expect("inbox");
                inbox.alarm = next;
            }
            Err(Crashed) => {
                // The platform runs an alarm that did not finish again.
                let inbox = self.inboxes.get_mut(name).expect("inbox");
                inbox.alarm = Some(self.now + 1_000);
                self.log(format!("alarm of {name} cut short by a crash"));
            }
        }
    }

    fn run_alarm(&mut self, name: &str) -> Result<Option<i64>, Crashed> {
        let schedule = self.schedule.clone();
        let retention = self.retention;
        let after_dead_letter = self.after_dead_letter;
        let policy = InboxPolicy {
            retry_schedule: &schedule,
            retention,
            after_dead_letter,
        };
        let mut budget = SubrequestBudget::new(self.subrequest_limit);
        budget.take(1);
        let now = UnixMs(self.now);
        self.step(name, |inbox| inbox.handle_timeout(&policy, now))?;
        let mut handed_over = false;
        for _ in 0..25 {
            let now = UnixMs(self.now);
            let Some(work) = self.step(name, |inbox| inbox.poll_work(&policy, now))? else {
                break;
            };
            if !budget.allows(2) {
                handed_over = true;
                break;
            }
            match work {
                Work::Classify(seq) => self.classify(name, seq)?,
                Work::Deliver(delivery) => {
                    let outcome = self.attempt(&delivery, &mut budget);
                    if self.faults && self.rng.chance(3) {
                        // Crashed after the POSTs, before the outcome was written.
                        self.inboxes.get_mut(name).expect("inbox").machine = None;
                        return Err(Crashed);
                    }
                    let batches = !outcome.log.is_empty();
                    let now = UnixMs(self.now);
                    let seed = self.rng.next();
                    self.log(format!(
                        "attempt {} → {} → {:?}",
                        delivery.id, delivery.consumer, outcome.verdict
                    ));
                    self.step(name, |inbox| {
                        inbox.handle_attempt(&delivery, outcome, &policy, now, seed);
                    })?;
                    let _ = batches;
                }
            }
        }
        self.sync_index(name)?;
        let now = UnixMs(self.now);
        self.step(name, |inbox| inbox.handle_timeout(&policy, now))?;
        if handed_over {
            return Ok(Some(self.now));
        }
        let now = UnixMs(self.now);
        Ok(self
            .step(name, |inbox| inbox.poll_timeout(&policy, now))?
            .map(|at| at.0))
    }

    fn classify(&mut self, name: &str, seq: Seq) -> Result<(), Crashed> {
        let (body, verified, test) = self.inboxes[name].store.bodies[&seq].clone();
        let received = self.inboxes[name].store.events[&seq].received_at;
        let classified = Identified::recall(body.as_bytes(), verified, test, received.secs().0)
            .expect("recalled")
            .classify(&Classify {
                risk_rules: &self.rules,
                origins: &self.origins,
            })
            .expect("classified");
        let classification = Classification {
            risk_level: classified.risk_level,
            consumers: classified.consumers,
            payload: classified.cloud_event.get().into(),
        };
        let now = UnixMs(self.now);
        self.log(format!("classify {seq:?}"));
        self.step(name, |inbox| {
            inbox.handle_classified(seq, classification, now);
        })
    }

    /// One attempt through the real routing, breakers and plan; time moves with each try.
    fn attempt(
        &mut self,
        delivery: &didit_edge_core::inbox::Delivery,
        budget: &mut SubrequestBudget,
    ) -> Outcome {
        let origins = self.origins.clone();
        let seed = self.rng.next();
        let candidates = origins_for(
            &origins,
            &delivery.consumer,
            &delivery.webhook_type,
            delivery.risk_level,
            seed,
        );
        let snapshot: BTreeMap<String, BreakerState> = self
            .breakers
            .iter()
            .map(|(name, breaker)| (name.clone(), breaker.state()))
            .collect();
        let mut plan = if delivery.has_payload {
            Plan::new(
                candidates,
                &delivery.rejected_by,
                |name| snapshot.get(name).copied(),
                self.now,
            )
        } else {
            Plan::without_payload(self.now)
        };
        let mut rejected_by = Vec::new();
        while plan.remaining() > 0 {
            if !budget.take(1) {
                plan.stop(self.now);
                break;
            }
            let Some(target) = plan.next_origin(self.now) else {
                break;
            };
            let (result, retry_after, took) =
                self.answer(&target.name, &delivery.id, &delivery.consumer);
            self.now += took;
            if let Some(up) = result.health_signal() {
                let last_seen = snapshot.get(&target.name).copied();
                if !report_changes_nothing(last_seen, up, self.now) && budget.take(1) {
                    self.breakers
                        .entry(target.name.clone())
                        .or_insert_with(|| Breaker::new(BreakerPolicy::default()))
                        .report(up, retry_after, self.now);
                }
            }
            if let (true, Some(status)) = (result.is_rejection(), result.status()) {
                rejected_by.push(Rejected {
                    origin: target.name.clone(),
                    status,
                });
            }
            plan.record(target, result, self.now);
        }
        let (verdict, log) = plan.finish();
        Outcome {
            verdict,
            log,
            rejected_by,
        }
    }

    fn sync_index(&mut self, name: &str) -> Result<(), Crashed> {
        let pending = self.step(name, |inbox| inbox.poll_index())?;
        if pending.is_empty() {
            return Ok(());
        }
        if self.faults && self.rng.chance(10) {
            let now = UnixMs(self.now);
            self.log(format!("index unreachable for {name}"));
            return self.step(name, |inbox| inbox.handle_index_failed(now));
        }
        for change in &pending {
            let key = (change.key.id.clone(), change.key.consumer.clone());
            match change.change {
                IndexEntry::Put { .. } => {
                    self.ever_listed.insert(key.clone());
                    self.listed.insert(key);
                }
                IndexEntry::Remove => {
                    self.listed.remove(&key);
                }
            }
        }
        self.step(name, |inbox| inbox.handle_index_synced(&pending))
    }

    // --- operators and settings -------------------------------------------------------------

    fn replay_step(&mut self) {
        let Some((id, consumer)) = self.listed.iter().next().cloned() else {
            return;
        };
        let Some(name) = self.inbox_of(&id) else {
            return;
        };
        let now = UnixMs(self.now);
        let filter_consumer = self.rng.chance(50).then_some(consumer);
        let result = self.step(&name, |inbox| {
            inbox.handle_replay(
                ReplayFilter {
                    id: Some(&id),
                    consumer: filter_consumer.as_deref(),
                },
                now,
            )
        });
        if let Ok(replayed) = result {
            self.log(format!("replay {id}: {} copies", replayed.len()));
            let inbox = self.inboxes.get_mut(&name).expect("inbox");
            inbox.alarm = Some(self.now);
        }
    }

    /// An operator erases one subject, calling again until the erasure is written whole (a
    /// crash fails the call, as the admin API's 5xx does).
    fn erase_step(&mut self) {
        let names: Vec<String> = self
            .inboxes
            .iter()
            .filter(|(_, inbox)| !inbox.store.events.is_empty())
            .map(|(name, _)| name.clone())
            .collect();
        if names.is_empty() {
            return;
        }
        let name = self.rng.pick(&names).clone();
        let now = UnixMs(self.now);
        for call in 1..=20 {
            if let Ok(erasure) = self.step(&name, |inbox| inbox.handle_erase(now)) {
                self.log(format!("erase {name}: {erasure:?} (call {call})"));
                let inbox = self.inboxes.get_mut(&name).expect("inbox");
                self.erased
                    .extend(inbox.store.events.values().map(|e| e.id.clone()));
                assert!(inbox.store.payloads.is_empty() && inbox.store.bodies.is_empty());
                assert_eq!(inbox.store.subject, None);
                inbox.alarm = Some(self.now);
                return;
            }
        }
        panic!("{name}: erasure never completed");
    }

    fn inbox_of(&self, id: &str) -> Option<String> {
        self.inboxes
            .iter()
            .find(|(_, inbox)| inbox.store.events.values().any(|e| e.id == id))
            .map(|(name, _)| name.clone())
    }

    fn settings_step(&mut self) {
        match self.rng.below(4) {
            0 => {
                self.retention.dead_letter_secs = 30 + self.rng.below(900);
                self.retention.payload_secs = self.rng.below(60);
            }
            1 => {
                self.schedule = RetrySchedule::parse(self.rng.pick::<&str>(&SCHEDULES))
                    .expect("valid")
                    .with_jitter_percent(20);
            }
            2 => {
                self.origins = parse_origins(self.rng.pick::<&str>(&ORIGIN_SETS)).expect("valid");
                self.note_consumers();
            }
            _ => {
                self.after_dead_letter = match self.after_dead_letter {
                    AfterDeadLetter::Hold => AfterDeadLetter::Continue,
                    _ => AfterDeadLetter::Hold,
                };
            }
        }
        self.log(format!(
            "settings: retention {:?}, hold {:?}, {} origins",
            self.retention,
            self.after_dead_letter,
            self.origins.len()
        ));
    }

    // --- invariants -------------------------------------------------------------------------

    /// When `id` first reaches `consumer`: every earlier event of its subject that the inbox
    /// holds must be done with for that consumer (delivered, or a dead letter it may pass).
    fn check_order_at_delivery(&self, id: &str, consumer: &str) {
        let Some((_, inbox)) = self
            .inboxes
            .iter()
            .find(|(_, inbox)| inbox.store.events.values().any(|e| e.id == id))
        else {
            return;
        };
        let store = &inbox.store;
        let Some(this) = store.events.values().find(|e| e.id == id) else {
            return;
        };
        for earlier in store.events.values() {
            if (earlier.created_at, earlier.seq) >= (this.created_at, this.seq) {
                continue;
            }
            assert!(
                earlier.risk_level.is_some(),
                "{id} reached {consumer} before the earlier {} was classified",
                earlier.id
            );
            let Some(copy) = store.copies.get(&(earlier.seq, consumer.to_string())) else {
                continue;
            };
            // Under hold, a pending status that a later one (already delivered to this
            // consumer) supersedes is never sent: it holds nothing up.
            let superseded = self.after_dead_letter == AfterDeadLetter::Hold
                && earlier.webhook_type.ends_with("status.updated")
                && store.events.values().any(|later| {
                    later.webhook_type == earlier.webhook_type
                        && later.created_at > earlier.created_at
                        && matches!(
                            store
                                .copies
                                .get(&(later.seq, consumer.to_string()))
                                .map(|c| c.state),
                            Some(CopyState::Delivered { .. })
                        )
                });
            let passable = match copy.state {
                CopyState::Delivered { .. } | CopyState::Expired { .. } => true,
                CopyState::Dead { .. } => self.after_dead_letter == AfterDeadLetter::Continue,
                CopyState::Pending { .. } => superseded,
            };
            assert!(
                passable,
                "{id} reached {consumer} while the earlier {} was {:?}",
                earlier.id, copy.state
            );
        }
    }

    fn check(&self) {
        for (uid, ids) in &self.webhook_ids {
            assert!(ids.len() <= 1, "uid {uid} reached origins as {ids:?}");
        }
        for (name, inbox) in &self.inboxes {
            let store = &inbox.store;
            for (seq, record) in &store.events {
                let copies: Vec<&CopyRecord> = store
                    .copies
                    .range((*seq, String::new())..)
                    .take_while(|((s, _), _)| s == seq)
                    .map(|(_, copy)| copy)
                    .collect();
                let needed = copies
                    .iter()
                    .any(|c| matches!(c.state, CopyState::Pending { .. } | CopyState::Dead { .. }));
                if record.risk_level.is_none() {
                    assert!(
                        store.bodies.contains_key(seq),
                        "{name}: unclassified {seq:?} lost its body"
                    );
                } else if needed {
                    assert!(
                        store.payloads.contains_key(seq),
                        "{name}: {} lost its payload while a copy needs it",
                        record.id
                    );
                }
                for ((_, consumer), copy) in store
                    .copies
                    .range((*seq, String::new())..)
                    .take_while(|((s, _), _)| s == seq)
                {
                    // (A dead letter for an exhausted schedule is checked when it dies, against
                    // the schedule then in force.)
                    let key = (record.id.clone(), consumer.clone());
                    if let CopyState::Dead {
                        reason: DeadReason::AbortedByOrigin,
                        ..
                    } = copy.state
                    {
                        assert!(
                            self.aborted.contains(&key),
                            "{key:?} dead for an abort no origin sent"
                        );
                    }
                }
            }
        }
    }

    /// Stops every fault, heals every origin, keeps every consumer routable, replays every
    /// listed dead letter, and runs until nothing is left to do.
    fn quiesce(&mut self) {
        self.faults = false;
        for behaviour in self.behaviours.values_mut() {
            *behaviour = Behaviour::Up;
        }
        let mut origins: Vec<String> = Vec::new();
        for (index, consumer) in self.consumers_seen.iter().enumerate() {
            origins.push(format!(
                r#"{{"name":"final-{index}","url":"https://final-{index}.example/","consumer":"{consumer}"}}"#
            ));
        }
        self.origins = parse_origins(&format!("[{}]", origins.join(","))).expect("valid");
        for round in 0..3 {
            let listed: Vec<(String, String)> = self.listed.iter().cloned().collect();
            for (id, consumer) in listed {
                if let Some(name) = self.inbox_of(&id) {
                    let now = UnixMs(self.now);
                    let _ = self.step(&name, |inbox| {
                        inbox.handle_replay(
                            ReplayFilter {
                                id: Some(&id),
                                consumer: Some(&consumer),
                            },
                            now,
                        )
                    });
                    self.inboxes.get_mut(&name).expect("inbox").alarm = Some(self.now);
                }
            }
            let deadline = self.now + 3 * 3_600 * SECOND;
            while let Some((name, at)) = self.next_alarm() {
                if at > deadline {
                    break;
                }
                self.now = self.now.max(at);
                self.alarm(&name);
                self.check();
            }
            self.log(format!("quiesced, round {round}"));
        }
    }

    fn next_alarm(&self) -> Option<(String, i64)> {
        self.inboxes
            .iter()
            .filter_map(|(name, inbox)| inbox.alarm.map(|at| (name.clone(), at)))
            .min_by_key(|(name, at)| (*at, name.clone()))
    }

    /// At the end: every event answered 200 reached each of its consumers, or is a dead letter
    /// that was listed for an operator to replay.
    fn check_nothing_lost(&self) {
        for (uid, id) in &self.answered {
            let Some(store) = self
                .inboxes
                .values()
                .map(|inbox| &inbox.store)
                .find(|store| store.events.values().any(|e| &e.id == id))
            else {
                // Forgotten: only after every copy was done with (checked when it happened).
                continue;
            };
            if self.erased.contains(id) {
                continue;
            }
            let record = store.events.values().find(|e| &e.id == id).expect("found");
            assert!(
                record.risk_level.is_some(),
                "uid {uid} ({id}) never classified"
            );
            for ((seq, consumer), copy) in &store.copies {
                if *seq != record.seq {
                    continue;
                }
                let key = (id.clone(), consumer.clone());
                // Superseded: a later status of the subject had reached the consumer.
                let superseded = matches!(
                    copy.state,
                    CopyState::Expired {
                        reason: DeadReason::Superseded,
                        ..
                    }
                ) && store.events.values().any(|later| {
                    later.webhook_type == record.webhook_type
                        && later.created_at > record.created_at
                        && self
                            .delivered
                            .contains(&(later.id.clone(), consumer.clone()))
                });
                let ok = self.delivered.contains(&key)
                    || superseded
                    || (matches!(
                        copy.state,
                        CopyState::Dead { .. } | CopyState::Expired { .. }
                    ) && self.ever_listed.contains(&key));
                assert!(
                    ok,
                    "uid {uid} ({id}) neither reached {consumer} nor was listed: {copy:?}"
                );
            }
        }
    }
}

/// Writes one change to the simulated store, as `edge-worker/src/inbox/store.rs` writes it,
/// checking what each change may do. `retries` is what the schedule in force allows.
fn apply(store: &mut Stored, change: Change, retries: u32) {
    match change {
        Change::Subject(subject) => {
            store.subject.get_or_insert(subject);
        }
        Change::ForgetSubject => store.subject = None,
        Change::InsertEvent {
            event,
            content,
            copies,
        } => {
            let seq = event.seq;
            assert!(!store.events.contains_key(&seq), "{seq:?} inserted twice");
            match content {
                StoredContent::Classified { payload } => {
                    if let Some(payload) = payload {
                        store.payloads.insert(seq, payload);
                    }
                }
                StoredContent::Unclassified {
                    body,
                    verified,
                    test,
                } => {
                    store.bodies.insert(seq, (body, verified, test));
                }
            }
            store.events.insert(seq, event);
            for (consumer, copy) in copies {
                store.copies.insert((seq, consumer), copy);
            }
        }
        Change::Classify {
            seq,
            risk_level,
            payload,
            copies,
        } => {
            let event = store
                .events
                .get_mut(&seq)
                .expect("classified event is stored");
            event.risk_level = Some(risk_level);
            event.has_payload = payload.is_some();
            store.bodies.remove(&seq);
            if let Some(payload) = payload {
                store.payloads.insert(seq, payload);
            }
            for (consumer, copy) in copies {
                store.copies.insert((seq, consumer), copy);
            }
        }
        Change::PutCopy {
            seq,
            consumer,
            copy,
        } => {
            let key = (seq, consumer);
            if let (Some(old), CopyState::Pending { failures: 0, .. }) =
                (store.copies.get(&key), copy.state)
            {
                if matches!(old.state, CopyState::Dead { .. }) {
                    store.attempt_batches.remove(&key);
                }
            }
            if copy.index == Some(IndexSync::Put) {
                assert!(matches!(copy.state, CopyState::Dead { .. }));
            }
            let newly_dead = matches!(copy.state, CopyState::Dead { .. })
                && !matches!(
                    store.copies.get(&key).map(|c| c.state),
                    Some(CopyState::Dead { .. })
                );
            if let (
                true,
                CopyState::Dead {
                    reason: DeadReason::RetriesExhausted,
                    ..
                },
            ) = (newly_dead, copy.state)
            {
                let batches = store.attempt_batches.get(&key).copied().unwrap_or(0);
                assert!(
                    batches > retries,
                    "{key:?} dead after {batches} attempts, with {retries} retries allowed"
                );
            }
            // Like the adapter's table, a copy's record keeps its rejections apart.
            let mut copy = copy;
            copy.rejected_by = store
                .copies
                .get(&key)
                .map(|old| old.rejected_by.clone())
                .unwrap_or_default();
            store.copies.insert(key, copy);
        }
        Change::SetRejections {
            seq,
            consumer,
            rejected_by,
        } => {
            if let Some(copy) = store.copies.get_mut(&(seq, consumer)) {
                copy.rejected_by = rejected_by;
            }
        }
        Change::AppendAttempts { seq, consumer, .. } => {
            *store.attempt_batches.entry((seq, consumer)).or_default() += 1;
        }
        Change::DropPayload(seq) => {
            store.payloads.remove(&seq);
            if let Some(event) = store.events.get_mut(&seq) {
                event.has_payload = false;
            }
        }
        Change::ForgetEvent(seq) => {
            let copies: Vec<(Seq, String)> = store
                .copies
                .keys()
                .filter(|(s, _)| *s == seq)
                .cloned()
                .collect();
            for key in copies {
                let copy = store.copies.remove(&key).expect("listed");
                assert!(
                    !matches!(
                        copy.state,
                        CopyState::Pending { .. } | CopyState::Dead { .. }
                    ),
                    "{key:?} forgotten while {:?}",
                    copy.state
                );
                store.attempt_batches.remove(&key);
            }
            store.events.remove(&seq);
            store.payloads.remove(&seq);
            store.bodies.remove(&seq);
            store.attached_aliases.retain(|(s, _)| *s != seq);
        }
        Change::AttachAlias { seq, alias } => {
            assert!(
                store.events.contains_key(&seq),
                "an alias for {seq:?}, not stored"
            );
            store.attached_aliases.insert((seq, alias));
        }
        Change::MarkErased(at) => store.erased_at = Some(at),
        Change::ForgetErasure => store.erased_at = None,
    }
}

fn run(seed: u64, steps: u64) -> Result<World, String> {
    let mut world = World::new(seed);
    let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        for _ in 0..steps {
            world.steps += 1;
            match world.rng.below(100) {
                0..=39 => world.didit_step(),
                40..=69 => {
                    if let Some((name, at)) = world.next_alarm() {
                        world.now = world.now.max(at);
                        world.alarm(&name);
                    }
                }
                70..=84 => world.now += world.rng.below(20_000) as i64,
                85..=91 => world.origin_step(),
                92..=94 => world.replay_step(),
                95 => world.erase_step(),
                96..=97 => world.settings_step(),
                _ => {
                    // A crash out of the blue: an inbox loses its memory.
                    let names: Vec<String> = world.inboxes.keys().cloned().collect();
                    if !names.is_empty() {
                        let name = world.rng.pick(&names).clone();
                        world.inboxes.get_mut(&name).expect("inbox").machine = None;
                        world.log(format!("{name} crashed"));
                    }
                }
            }
            world.check();
        }
        world.quiesce();
        world.check_nothing_lost();
    }));
    match outcome {
        Ok(()) => Ok(world),
        Err(panic) => {
            let message = panic_message(panic.as_ref());
            let mut report = format!(
                "SIM_SEED={seed} failed at step {}: {message}\n",
                world.steps
            );
            for line in &world.trace {
                let _ = writeln!(report, "  {line}");
            }
            Err(report)
        }
    }
}

#[test]
fn nothing_accepted_is_lost_duplicated_or_reordered_under_faults() {
    let steps = env_number("SIM_STEPS", 1_500);
    let seeds = seeds(40);
    let mut events = 0;
    let mut delivered = 0;
    let mut dead = 0;
    let mut total_steps = 0;
    let runs = seeds.len();
    for seed in seeds {
        match run(seed, steps) {
            Ok(world) => {
                events += world.answered.len();
                delivered += world.delivered.len();
                dead += world.ever_listed.len();
                total_steps += world.steps;
            }
            Err(report) => panic!("{report}"),
        }
    }
    // The runs did real work: events were accepted and delivered, and (over enough runs) dead
    // letters listed.
    assert!(
        events > 0 && delivered > 0 && (runs < 10 || dead > 0),
        "{events} events, {delivered} deliveries, {dead} dead letters"
    );
    eprintln!(
        "simulation: {runs} runs, {total_steps} steps: {events} events accepted, \
         {delivered} copies delivered, {dead} dead letters listed; every invariant held"
    );
}
