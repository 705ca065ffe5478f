//! A deterministic simulation of the whole delivery path, in the way FoundationDB and
//! TigerBeetle test theirs: production's own code (the inbox machine, the alarm run's
//! conductor [`didit_edge_core::inbox::run`], the intake with signatures, identity and
//! classification, the attempt plans, breakers and retry schedules) over a simulated clock,
//! simulated origins, a simulated health object and a simulated store. Nothing of the driver
//! is copied here: the Durable Object is a switch over the run's steps, and so is this.
//!
//! A run starts either from a claim, right after it is stored and answered, or from the
//! object's alarm, through production's one-run-at-a-time gate
//! ([`didit_edge_core::inbox::gate`]); an alarm that fires while a claim's run is going on
//! finds the gate held, and a crash empties the gate along with the rest of the object's memory.
//! Production awaits at five points of a run (reading health, each POST, a health report, a
//! publish, the dead-letter index) and at the index push after a replay or an erasure. At each
//! of them the simulation may leave the run waiting and let anything else happen first, as
//! FoundationDB interleaves actors at every `wait()`:
//!
//! - Didit sends events for many subjects: retries of one event, resends with a fresh
//!   timestamp, distinct events in the same second, events out of order, duplicates racing;
//! - origins answer 2xx, 5xx, 4xx, redirects, aborts, `Retry-After`, time out, refuse
//!   connections, and go through outages that end;
//! - limited origins (`max_concurrency`, `max_per_second`, the same per name for the whole
//!   run) are asked through production's gate machine ([`didit_edge_core::origin_gate`]),
//!   whose object may be unreachable, crash (restored from its fence), lose its answer or a
//!   release, or answer after any delay; leases left behind expire;
//! - an inbox crashes between any two changes it writes (its memory and every await in flight
//!   are dropped, and it is restored from what was written), a waiting run is cancelled (an
//!   alarm's wall-clock limit), alarm runs fail or find the settings broken, settings change
//!   while a run keeps the ones it started with (retention, schedule, origins added and
//!   removed, hold or continue, the subrequest limit), operators replay dead letters and erase
//!   subjects, and reconciliation claims results it read from Didit's API (matched to the
//!   webhooks of the same transition, whichever comes first).
//!
//! After every step the invariants are checked: a delivery answered 200 is stored; no event
//! reaches an origin under two webhook-ids; no copy an origin took (2xx) is sent again unless
//! the object lost the run's memory in between (a crash, a cancelled run, a run taken over) or
//! an operator replayed it, so runs never overlap; a limited origin never has more than its
//! `max_concurrency` requests in flight (a request counts from its start until the run has its
//! answer, or at the latest its origin's timeout), its gate's grants are at least its interval
//! apart and at most `⌈(W + GRANT_FRESH_MS) / interval⌉` requests start in any window of `W`
//! (1 s and 10 s checked); a copy's failure count grows only with an attempt recorded, so
//! waiting for a turn never spends a retry; each consumer gets a subject's events in the order
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

use didit_edge_core::attempt::{AttemptResult, DeadReason};
use didit_edge_core::budget::SubrequestBudget;
use didit_edge_core::config::DeliveryConfig;
use didit_edge_core::delivery::{CopyState, Retention};
use didit_edge_core::health::{Breaker, BreakerPolicy, BreakerState, Lookup, SnapshotCache};
use didit_edge_core::inbox::gate::{self, AfterRun, OnAlarm, RunGate, Ticket};
use didit_edge_core::inbox::run::{self, Begin, Run, Step, StoredBody};
use didit_edge_core::inbox::AfterDeadLetter;
use didit_edge_core::inbox::{
    Change, Claim, ClaimContent, CopyRecord, EventRecord, Inbox, IndexChange, IndexEntry,
    IndexSync, ReplayFilter, Seq, Source, StoredContent, HISTORY_ATTEMPTS,
};
use didit_edge_core::intake::Identified;
use didit_edge_core::intake::{Incoming, Intake};
use didit_edge_core::mac::{HmacSha256, RustCrypto};
use didit_edge_core::origin::{parse_origins, Origin, PerSecond};
use didit_edge_core::origin_gate::{self, Answer, OriginGate, GRANT_FRESH_MS};
use didit_edge_core::receipt::Receipt;
use didit_edge_core::reconcile::api::{SessionKind, SessionRow};
use didit_edge_core::reconcile::event::from_decision;
use didit_edge_core::retry::RetrySchedule;
use didit_edge_core::risk::RiskRules;
use didit_edge_core::secret::{SigningSecrets, WebhookSecrets};
use didit_edge_core::time::{UnixMicros, UnixMs, UnixSecs};
use didit_edge_core::verify::SignatureHeaders;

const SECRET: &str = "sim-didit-secret";
const SECOND: i64 = 1_000;
const START: i64 = 1_800_000_000_000;

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

/// One request an origin got: its name, and the status it answered (none: no answer).
type SeenRequest = (String, Option<u16>);

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

/// One subject's inbox: its store, its machine (absent after a crash), its alarm, its run gate,
/// and what is waiting at an `.await`: a run, and index pushes of replays and erasures.
#[derive(Default)]
struct SimInbox {
    store: Stored,
    machine: Option<Inbox>,
    alarm: Option<i64>,
    failures: u32,
    /// Production's one-run-at-a-time gate, in the object's memory.
    gate: RunGate,
    run: Option<Suspended>,
    index_pushes: Vec<(Vec<IndexChange>, bool)>,
    /// Counts the times the object lost a run's memory (a crash, a cancelled or a taken-over
    /// run): an origin may be sent a copy again only across one of them.
    epoch: u64,
}

impl SimInbox {
    /// The object is evicted: its memory goes, with every await in flight (the run gate too).
    /// An alarm run that did not finish is run again by the platform; a run a claim started
    /// has its backstop alarm.
    fn crash(&mut self, now: i64) {
        self.machine = None;
        self.index_pushes.clear();
        self.gate = RunGate::default();
        self.epoch += 1;
        if self.run.take().is_some_and(|run| run.from_alarm) {
            self.alarm = Some(self.alarm.map_or(now + 1_000, |at| at.min(now + 1_000)));
        }
    }
}

/// A run stopped at an `.await`: the production conductor, the settings it started with, the
/// answer it will get when it goes on, its ticket, and whether an alarm handler awaits it (else
/// a claim started it, after answering).
struct Suspended {
    run: Box<Run<'static>>,
    settings: &'static DeliveryConfig,
    awaiting: Awaiting,
    ticket: Ticket,
    from_alarm: bool,
}

/// What comes back from an `.await` of an alarm run.
enum Awaiting {
    /// The breakers it read, and the subrequests that took.
    Health(BTreeMap<String, BreakerState>, u32),
    /// An origin's answer, and the request's index in [`World::flights`].
    Answer(AttemptResult, Option<u64>, usize),
    /// A limited origin's gate answered (`None`: it could not be asked, or its answer was lost).
    Gate(Option<Answer>),
    /// A health report or a publish: nothing comes back.
    Nothing,
    /// Whether the dead-letter index took the changes.
    Index(bool),
}

/// A crash cuts a step short after this many changes were written.
struct Crashed;

/// One limited origin's gate object: production's machine in its memory (none after a crash),
/// and the fence in its storage.
#[derive(Default)]
struct SimGate {
    machine: Option<OriginGate>,
    fence: Option<UnixMs>,
    /// When it last granted a turn.
    last_grant: Option<i64>,
}

/// One request to an origin: from its start until its answer was handed to the run, or at the
/// latest its origin's timeout (production's fetch gives up then, whatever the run does).
struct SimFlight {
    origin: String,
    start: i64,
    end: i64,
}

/// An origin's limits in a simulated world: `max_concurrency`, `max_per_second`.
type SimLimits = (Option<u32>, Option<f64>);

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
    /// (id, consumer) → the inbox epoch an origin last answered it 2xx in.
    delivered_in_epoch: BTreeMap<(String, String), u64>,
    /// Copies an origin got again after a 2xx, across a crash, cancellation or take-over.
    redelivered: u64,
    /// (id, consumer) → every request an origin answered (or did not), in order: what each
    /// copy's recorded history must be drawn from.
    requests_seen: BTreeMap<(String, String), Vec<SeenRequest>>,
    /// Runs claims started, and alarms that found a run going on.
    claim_runs: u64,
    busy_alarms: u64,
    /// Inboxes whose storage was released whole once they held nothing.
    vacated: u64,
    /// (id, consumer) the dead-letter index lists, and every one it ever listed.
    listed: BTreeSet<(String, String)>,
    ever_listed: BTreeSet<(String, String)>,
    /// (id, consumer) an origin aborted.
    aborted: BTreeSet<(String, String)>,
    /// Ids of events whose subject an operator erased: never delivered after that.
    erased: BTreeSet<String>,
    behaviours: BTreeMap<String, Behaviour>,
    breakers: BTreeMap<String, Breaker>,
    /// The isolate's copy of the breakers, and when it was read.
    health_cache: SnapshotCache,
    /// The delivery settings in force (leaked: a run keeps the settings it started with for
    /// as long as it runs, as production's does).
    settings: &'static DeliveryConfig,
    /// Ids of events claimed from the API, and how often a webhook matched to one was taken
    /// anew once that event was forgotten.
    api_ids: BTreeSet<String>,
    rematched: u64,
    /// Each session's status now, as Didit's API reports it.
    session_status: BTreeMap<String, &'static str>,
    /// What happened at the awaits: runs left waiting, and reconciled results taken.
    suspended_runs: u64,
    reconciled_accepted: u64,
    /// The settings of the run being driven, while one is.
    running: Option<&'static DeliveryConfig>,
    stream_on: bool,
    faults: bool,
    next_uid: u64,
    secrets: WebhookSecrets,
    /// Consumers any configuration has had: kept in the last one so nothing ends with no origin.
    consumers_seen: BTreeSet<String>,
    /// The limits of each limited origin, by name, the same in every configuration.
    limits: BTreeMap<String, SimLimits>,
    /// The limited origins' gates.
    gates: BTreeMap<String, SimGate>,
    /// Every request to a limited origin.
    flights: Vec<SimFlight>,
    /// Turns the gates handed out: granted, and told to wait.
    grants: u64,
    waits: u64,
    /// By `max_concurrency`: the most requests an origin with it had in flight at once.
    peaks: BTreeMap<u32, u32>,
}

/// Names every configuration may use, including the final ones.
const ORIGIN_NAMES: [&str; 9] = [
    "aws", "gcp", "crm", "azure", "fraud", "final-0", "final-1", "final-2", "final-3",
];

/// `origins` with the world's limits on those it limits.
fn limited(mut origins: Vec<Origin>, limits: &BTreeMap<String, SimLimits>) -> Vec<Origin> {
    for origin in &mut origins {
        if let Some((concurrency, rate)) = limits.get(&origin.name) {
            origin.max_concurrency = *concurrency;
            origin.max_per_second = rate.map(PerSecond);
        }
    }
    origins
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
        let mut limits = BTreeMap::new();
        for name in ORIGIN_NAMES {
            if rng.chance(50) {
                let concurrency = rng.chance(70).then(|| 1 + rng.below(3) as u32);
                let rate = (concurrency.is_none() || rng.chance(50))
                    .then(|| *rng.pick(&[0.5, 2.0, 5.0, 20.0]));
                limits.insert(name.to_string(), (concurrency, rate));
            }
        }
        let origins = limited(
            parse_origins(rng.pick::<&str>(&ORIGIN_SETS)).expect("valid origins"),
            &limits,
        );
        let retry_schedule = RetrySchedule::parse(rng.pick::<&str>(&SCHEDULES))
            .expect("valid")
            .with_jitter_percent(20);
        let settings = DeliveryConfig {
            origins,
            signing_secrets: SigningSecrets::parse(
                "whsec_c2ltLW9yaWdpbi1zZWNyZXQtMzItYnl0ZXMtbG9uZyE=",
            )
            .expect("key"),
            origin_signing_secrets: Vec::new(),
            risk_rules: RiskRules::default(),
            retry_schedule,
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
        };
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
            delivered_in_epoch: BTreeMap::new(),
            requests_seen: BTreeMap::new(),
            redelivered: 0,
            claim_runs: 0,
            busy_alarms: 0,
            vacated: 0,
            listed: BTreeSet::new(),
            ever_listed: BTreeSet::new(),
            aborted: BTreeSet::new(),
            erased: BTreeSet::new(),
            behaviours: BTreeMap::new(),
            breakers: BTreeMap::new(),
            health_cache: SnapshotCache::new(),
            settings: Box::leak(Box::new(settings)),
            running: None,
            api_ids: BTreeSet::new(),
            rematched: 0,
            session_status: BTreeMap::new(),
            suspended_runs: 0,
            reconciled_accepted: 0,
            stream_on: rng.chance(50),
            faults: true,
            next_uid: 1,
            secrets: WebhookSecrets::parse(SECRET).expect("secret"),
            consumers_seen: BTreeSet::new(),
            limits,
            gates: BTreeMap::new(),
            flights: Vec::new(),
            grants: 0,
            waits: 0,
            peaks: BTreeMap::new(),
            rng,
        };
        world.note_consumers();
        world
    }

    /// New settings, in force from now on; runs under way keep theirs. Limited origins keep
    /// their limits.
    fn change_settings(&mut self, change: impl FnOnce(&mut DeliveryConfig, &mut Rng)) {
        let mut settings = self.settings.clone();
        change(&mut settings, &mut self.rng);
        settings.origins = limited(settings.origins, &self.limits);
        self.settings = Box::leak(Box::new(settings));
        self.note_consumers();
    }

    fn note_consumers(&mut self) {
        for origin in &self.settings.origins {
            self.consumers_seen.insert(origin.consumer().to_string());
        }
    }

    fn log(&mut self, line: String) {
        if self.trace.len() == env_number("SIM_TRACE", 60) as usize {
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
            // A transition changes the status: Didit never sends a session the status it is
            // already in as a new event.
            let last = self.session_status.get(&subject).copied();
            let choices: Vec<&'static str> = STATUSES
                .iter()
                .copied()
                .filter(|status| Some(*status) != last)
                .collect();
            let status = *self.rng.pick(&choices);
            self.session_status.insert(subject.clone(), status);
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
                .classify(&self.settings.classify_policy())
                .expect("classified");
            ClaimContent::Classified(classified.into())
        };
        let claim = Claim::of(&identified, content, Source::Webhook);
        let inbox_name = claim.subject.clone();
        let now = UnixMs(self.now);
        let settings = self.settings;
        let (receipt, next_due) = self.step(&inbox_name, |inbox| {
            let receipt = inbox.handle_claim(claim, now);
            (receipt, gate::next_due(inbox, Some(settings), now))
        })?;
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
            // The one way an event's answer may change: it was matched by transition to a
            // result read from the API (no content in common), and that result has since been
            // forgotten. A transition to the same status whose webhook in between was lost
            // looks like the same transition; once the API's event is gone, the webhook is
            // taken as what it is. Nothing reaches a consumer twice under one event for it.
            let rematched = previous != id
                && self.api_ids.contains(&previous)
                && !self.inboxes[&inbox_name]
                    .store
                    .events
                    .values()
                    .any(|record| record.id == previous);
            if rematched {
                self.rematched += 1;
            } else {
                assert_eq!(
                    previous,
                    id,
                    "uid {} answered with two ids (in {inbox_name}): {receipt:?} for {}",
                    event.uid,
                    payload_summary(payload)
                );
            }
        }
        // An event read from the API stands for a transition, not for this webhook.
        if !self.api_ids.contains(&id) {
            self.uid_of.insert(id, event.uid);
        }
        self.log(format!("claim uid {} → {receipt:?}", event.uid));
        self.after_claim(&inbox_name, next_due);
        Ok(())
    }

    /// What production's claim does once the claim is stored and answered: holds the alarm
    /// its gate asks for, and starts a run right away when one is due and none is going on.
    fn after_claim(&mut self, name: &str, next_due: Option<UnixMs>) {
        let now = UnixMs(self.now);
        let inbox = self.inboxes.get_mut(name).expect("inbox");
        let after = inbox.gate.after_claim(next_due, now);
        if let Some(by) = after.alarm_by {
            inbox.alarm = Some(inbox.alarm.map_or(by.0, |a| a.min(by.0)));
        }
        if let Some(ticket) = after.run {
            self.claim_runs += 1;
            self.log(format!("{name}: run started by a claim"));
            self.start_run(name, ticket, false);
        }
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

    /// Reconciliation reads a session's status now from Didit's API and claims it as an event
    /// of its own (`source: api`), through the same intake: at any moment, so also while the
    /// session's inbox is in the middle of an alarm run. The inbox matches it to a webhook of
    /// the same transition (either may come first), and takes nothing from the API about an
    /// erased subject.
    fn reconcile_step(&mut self) {
        let sessions: Vec<(String, String)> = self
            .session_status
            .iter()
            .map(|(session, status)| (session.clone(), status.to_string()))
            .collect();
        if sessions.is_empty() {
            return;
        }
        let (session, status) = self.rng.pick(&sessions).clone();
        let decision = serde_json::json!({
            "session_id": session, "status": status, "vendor_data": "u",
        })
        .to_string();
        let row = SessionRow {
            session_id: session.clone(),
            kind: SessionKind::User,
            status: status.clone(),
            created_at: UnixMicros((self.now - 3_600 * SECOND) * 1_000),
        };
        let now_secs = self.now / SECOND;
        let written = from_decision(&decision, &row, UnixSecs(now_secs)).expect("written");
        let identified =
            Identified::from_api(written.body.as_bytes(), now_secs).expect("names itself");
        let classified = identified
            .classify(&self.settings.classify_policy())
            .expect("classified");
        let claim = Claim::of(
            &identified,
            ClaimContent::Classified(classified.into()),
            Source::Api,
        );
        let name = claim.subject.clone();
        let now = UnixMs(self.now);
        let settings = self.settings;
        match self.step(&name, |inbox| {
            let receipt = inbox.handle_claim(claim, now);
            (receipt, gate::next_due(inbox, Some(settings), now))
        }) {
            Ok((receipt, next_due)) => {
                self.log(format!("reconciled {session} {status} → {receipt:?}"));
                if let Receipt::Accepted { id } = &receipt {
                    self.api_ids.insert(id.clone());
                    self.reconciled_accepted += 1;
                }
                self.after_claim(&name, next_due);
            }
            Err(Crashed) => self.log(format!("reconciled {session} cut short by a crash")),
        }
    }

    // --- the store and crashes ------------------------------------------------------------

    /// Runs `f` on an inbox's machine (restored from its store if it crashed), then writes the
    /// changes it made one by one, any of which a crash may cut off.
    fn step<T>(&mut self, name: &str, f: impl FnOnce(&mut Inbox) -> T) -> Result<T, Crashed> {
        let crash_after = (self.faults && self.rng.chance(5)).then(|| self.rng.below(4));
        let retries = self
            .running
            .unwrap_or(self.settings)
            .retry_schedule
            .retries();
        let now = self.now;
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
        let vacates = changes.iter().filter(|c| **c == Change::Vacate).count() as u64;
        for (index, change) in changes.into_iter().enumerate() {
            if crash_after == Some(index as u64) {
                inbox.crash(now);
                return Err(Crashed);
            }
            apply(&mut inbox.store, change, retries);
        }
        self.vacated += vacates;
        if crash_after.is_some_and(|after| after as usize >= 1) && self.rng.chance(30) {
            // A crash after everything was written, before anything else happens.
            inbox.crash(now);
        }
        Ok(result)
    }

    /// A step of a run: as [`Self::step`], and a crash that let the step's writes through
    /// still ends the run, whose memory went with the object's.
    fn run_step<T>(
        &mut self,
        name: &str,
        ticket: Ticket,
        f: impl FnOnce(&mut Inbox) -> T,
    ) -> Result<T, Crashed> {
        let result = self.step(name, f)?;
        match self.inboxes[name].gate.holds(ticket) {
            true => Ok(result),
            false => Err(Crashed),
        }
    }

    // --- origins and health ---------------------------------------------------------------

    fn answer(
        &mut self,
        origin: &str,
        id: &str,
        consumer: &str,
        after_dead_letter: AfterDeadLetter,
    ) -> (AttemptResult, Option<u64>, i64) {
        assert!(
            !self.erased.contains(id),
            "{id} reached {origin} after its subject was erased"
        );
        let behaviour = self
            .behaviours
            .get(origin)
            .copied()
            .unwrap_or(Behaviour::Up);
        let latency = 5 + self.rng.below(50) as i64;
        match behaviour {
            Behaviour::Up => {
                let uid = self.uid_of.get(id).copied();
                if let Some(uid) = uid {
                    self.webhook_ids.entry(uid).or_default().insert(id.into());
                }
                let key = (id.to_string(), consumer.to_string());
                if !self.delivered.contains(&key) {
                    self.check_order_at_delivery(id, consumer, after_dead_letter);
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
        let names: Vec<String> = self
            .settings
            .origins
            .iter()
            .map(|o| o.name.clone())
            .collect();
        let name = self.rng.pick(&names).clone();
        let behaviour = if self.rng.chance(50) {
            Behaviour::Up
        } else {
            *self.rng.pick(&BEHAVIOURS)
        };
        self.log(format!("origin {name} is now {behaviour:?}"));
        self.behaviours.insert(name, behaviour);
    }

    // --- the alarm: production's conductor, with anything arriving at every await ----------

    fn alarm(&mut self, name: &str) {
        let now = UnixMs(self.now);
        let inbox = self.inboxes.get_mut(name).expect("inbox");
        inbox.alarm = None;
        match inbox.gate.on_alarm(now) {
            OnAlarm::Busy { alarm_at } => {
                inbox.alarm = Some(alarm_at.0);
                self.busy_alarms += 1;
                self.log(format!("alarm of {name}: a run is going on"));
            }
            OnAlarm::Run(ticket) => self.start_run(name, ticket, true),
            OnAlarm::TakeOver(ticket) => {
                inbox.epoch += 1;
                self.log(format!("alarm of {name} takes over a lost run"));
                self.start_run(name, ticket, true);
            }
        }
    }

    /// Starts a run under `ticket`, as production's `run_alarm` does, whether an alarm or a
    /// claim admitted it.
    fn start_run(&mut self, name: &str, ticket: Ticket, from_alarm: bool) {
        let inbox = self.inboxes.get_mut(name).expect("inbox");
        if self.faults && self.rng.chance(3) {
            inbox.failures += 1;
            let failures = inbox.failures;
            let wait = didit_edge_core::budget::alarm_backoff_ms(failures, 1_000);
            inbox.alarm = Some(self.now + wait as i64);
            self.log(format!("run of {name} failed ({failures} in a row)"));
            self.run_ended(name, ticket, from_alarm, true);
            return;
        }
        inbox.failures = 0;
        // Now and then the settings read at the start of a run are broken.
        let settings = self.settings;
        let in_force = (!(self.faults && self.rng.chance(2))).then_some(settings);
        let seed = self.rng.next();
        match run::begin(in_force, self.stream_on, UnixMs(self.now), seed) {
            Begin::SettingsBroken { retry_at } => {
                self.log(format!("run of {name}: settings broken"));
                self.inboxes.get_mut(name).expect("inbox").alarm = Some(retry_at.0);
                self.run_ended(name, ticket, from_alarm, false);
            }
            Begin::Run(run) => self.drive(name, run, settings, None, ticket, from_alarm),
        }
    }

    /// A run ended: it goes again if work arrived while it ran.
    fn run_ended(&mut self, name: &str, ticket: Ticket, from_alarm: bool, failed: bool) {
        let now = UnixMs(self.now);
        let inbox = self.inboxes.get_mut(name).expect("inbox");
        if let AfterRun::Again(ticket) = inbox.gate.finished(ticket, failed, now) {
            self.log(format!("run of {name} goes again"));
            self.start_run(name, ticket, from_alarm);
        }
    }

    /// Drives a run from where it stands, handing it `awaiting` first (the answer to the
    /// await it stopped at). At every await of production's adapter the run may stop here,
    /// and anything the world does may happen before it goes on.
    fn drive(
        &mut self,
        name: &str,
        mut run: Box<Run<'static>>,
        settings: &'static DeliveryConfig,
        mut awaiting: Option<Awaiting>,
        ticket: Ticket,
        from_alarm: bool,
    ) {
        self.running = Some(settings);
        let ended = self.drive_until_await(name, &mut run, settings, &mut awaiting, ticket);
        self.running = None;
        match ended {
            Err(Crashed) => {
                // The platform runs an alarm that did not finish again; a run a claim
                // started has its backstop alarm.
                if from_alarm {
                    let now = self.now;
                    let inbox = self.inboxes.get_mut(name).expect("inbox");
                    inbox.alarm = Some(inbox.alarm.map_or(now + 1_000, |at| at.min(now + 1_000)));
                }
                self.log(format!("run of {name} cut short"));
            }
            Ok(Some(awaiting)) => {
                self.suspended_runs += 1;
                self.inboxes.get_mut(name).expect("inbox").run = Some(Suspended {
                    run,
                    settings,
                    awaiting,
                    ticket,
                    from_alarm,
                });
            }
            Ok(None) => self.run_ended(name, ticket, from_alarm, false),
        }
    }

    /// `Ok(Some(_))`: stopped at an await; `Ok(None)`: the run is over.
    fn drive_until_await(
        &mut self,
        name: &str,
        run: &mut Box<Run<'static>>,
        settings: &'static DeliveryConfig,
        awaiting: &mut Option<Awaiting>,
        ticket: Ticket,
    ) -> Result<Option<Awaiting>, Crashed> {
        loop {
            if let Some(answer) = awaiting.take() {
                let now = UnixMs(self.now);
                let handled = match answer {
                    Awaiting::Health(snapshot, used) => run.handle_health(&snapshot, used),
                    Awaiting::Answer(result, retry_after, flight) => {
                        let flight = &mut self.flights[flight];
                        flight.end = flight.end.min(self.now);
                        run.handle_answer(result, retry_after, now)
                    }
                    Awaiting::Gate(answer) => run.handle_gate(answer, now).map(drop),
                    Awaiting::Nothing => Ok(()),
                    Awaiting::Index(pushed) => self.run_step(name, ticket, |inbox| {
                        run.handle_index_pushed(inbox, pushed, now)
                    })?,
                };
                handled.expect("the run asked for this answer");
            }
            // Production's loop asks the gate before every step: a run whose object lost its
            // memory (a crash) or that was taken over stops here.
            if !self.inboxes[name].gate.holds(ticket) {
                return Err(Crashed);
            }
            let now = UnixMs(self.now);
            let step = self.run_step(name, ticket, |inbox| run.poll(inbox, now))?;
            let answer = match step {
                Step::ReadBody(seq) => {
                    let store = &self.inboxes[name].store;
                    let stored = store
                        .bodies
                        .get(&seq)
                        .map(|(body, verified, test)| StoredBody {
                            body: body.clone(),
                            verified: *verified,
                            test: *test,
                            received_at: store.events[&seq].received_at,
                        });
                    self.log(format!("classify {seq:?}"));
                    self.run_step(name, ticket, |inbox| run.handle_body(inbox, stored, now))?
                        .expect("a stored body classifies");
                    continue;
                }
                Step::ReadPayload(seq) => {
                    let payload = self.inboxes[name].store.payloads.get(&seq).cloned();
                    run.handle_payload(payload, now).expect("asked for");
                    continue;
                }
                Step::ReadHealth { may_fetch } => self.read_health(may_fetch),
                Step::AskGate {
                    origin,
                    limits,
                    turn,
                } => {
                    let answer = self.ask_gate(&origin.name, limits, turn);
                    self.log(format!("gate of {} answers {answer:?}", origin.name));
                    Awaiting::Gate(answer)
                }
                Step::ReleaseGate { origin, lease } => {
                    self.release_gate(&origin.name, lease);
                    Awaiting::Nothing
                }
                Step::Post { origin, id, .. } => {
                    let flight = self.start_flight(origin);
                    let (result, retry_after, took) = self.answer(
                        &origin.name,
                        &id,
                        origin.consumer(),
                        settings.after_dead_letter,
                    );
                    self.now += took;
                    self.log(format!("POST {id} → {} → {result:?}", origin.name));
                    self.requests_seen
                        .entry((id.clone(), origin.consumer().to_string()))
                        .or_default()
                        .push((origin.name.clone(), result.status()));
                    if matches!(result, AttemptResult::Status(204)) {
                        self.note_delivered(name, &id, origin.consumer());
                    }
                    Awaiting::Answer(result, retry_after, flight)
                }
                Step::ReportHealth(report) => {
                    // The shared breaker takes the report, and so does this isolate's copy.
                    self.breakers
                        .entry(report.origin.clone())
                        .or_insert_with(|| Breaker::new(BreakerPolicy::default()))
                        .report(report.up, report.retry_after_ms, report.at_ms.0);
                    self.health_cache.handle_reported(&report);
                    Awaiting::Nothing
                }
                Step::Publish(_) => Awaiting::Nothing,
                Step::PushIndex { changes, .. } => {
                    let pushed = self.push_index(name, &changes);
                    Awaiting::Index(pushed)
                }
                Step::Done(finished) => {
                    let inbox = self.inboxes.get_mut(name).expect("inbox");
                    inbox.alarm = finished.wake_at.map(|at| at.0);
                    return Ok(None);
                }
            };
            if self.faults && self.rng.chance(25) {
                return Ok(Some(answer));
            }
            *awaiting = Some(answer);
        }
    }

    /// A limited origin's gate object takes an ask, as `edge-worker/src/origin_gate.rs` does:
    /// restored from its fence if it lost its memory, the fence written before the answer
    /// leaves. The gate may be unreachable, crash before the ask, or its answer be lost.
    fn ask_gate(
        &mut self,
        name: &str,
        limits: origin_gate::GateLimits,
        turn: UnixMs,
    ) -> Option<Answer> {
        let now = UnixMs(self.now);
        // Through the wire, as the object reads it.
        let (limits, presented) =
            origin_gate::ask_from_wire(&origin_gate::ask_to_wire(limits, turn))
                .expect("an ask reads back");
        if self.faults && self.rng.chance(4) {
            return None;
        }
        let seed = self.rng.next();
        let crash = self.faults && self.rng.chance(3);
        let lost = self.faults && self.rng.chance(4);
        let gate = self.gates.entry(name.to_string()).or_default();
        if crash {
            gate.machine = None;
        }
        let fence = gate.fence;
        let machine = gate
            .machine
            .get_or_insert_with(|| OriginGate::restore(fence, seed));
        let asked = machine.ask(limits, presented, now);
        if let Some(fence) = asked.fence {
            gate.fence = Some(fence);
        }
        match asked.answer {
            Answer::Go(_) => {
                if let (Some(last), Some(interval)) = (gate.last_grant, limits.interval_ms) {
                    assert!(
                        now.0 - last >= interval as i64,
                        "{name}'s gate granted at {} and {}, less than {interval} ms apart",
                        last,
                        now.0
                    );
                }
                gate.last_grant = Some(now.0);
                self.grants += 1;
            }
            Answer::Wait(at) => {
                assert!(
                    at > now,
                    "{name}'s gate said to wait until {at}, not after now"
                );
                self.waits += 1;
            }
        }
        (!lost).then_some(asked.answer)
    }

    /// A lease goes back to its gate (or the release is lost, or finds the gate restarted).
    fn release_gate(&mut self, name: &str, lease: u64) {
        if self.faults && self.rng.chance(10) {
            return;
        }
        let now = UnixMs(self.now);
        if let Some(machine) = self
            .gates
            .get_mut(name)
            .and_then(|gate| gate.machine.as_mut())
        {
            machine.release(lease, now);
        }
    }

    /// A request to `origin` starts now: for a limited origin, at most `max_concurrency` are
    /// in flight with it, and at most `⌈(W + GRANT_FRESH_MS) / interval⌉` start in any window
    /// of W ms (its grants are an interval apart, each request starts within GRANT_FRESH_MS of
    /// its grant). Returns its index in [`World::flights`].
    fn start_flight(&mut self, origin: &Origin) -> usize {
        let now = self.now;
        let index = self.flights.len();
        self.flights.push(SimFlight {
            origin: origin.name.clone(),
            start: now,
            end: now + i64::from(origin.timeout_ms),
        });
        let Some(limits) = origin.limits() else {
            return index;
        };
        let same = || {
            self.flights
                .iter()
                .filter(move |flight| flight.origin == origin.name)
        };
        if let Some(max) = limits.max_concurrency {
            let in_flight = same()
                .filter(|flight| flight.start <= now && now < flight.end)
                .count() as u32;
            assert!(
                in_flight <= max,
                "{} requests in flight with {}, whose max_concurrency is {max}",
                in_flight,
                origin.name
            );
            let peak = self.peaks.entry(max).or_default();
            *peak = (*peak).max(in_flight);
        }
        if let Some(interval) = limits.interval_ms {
            for window in [1_000, 10_000] {
                let started = same()
                    .filter(|flight| flight.start > now - window && flight.start <= now)
                    .count() as u64;
                let bound = (window as u64 + GRANT_FRESH_MS).div_ceil(interval);
                assert!(
                    started <= bound,
                    "{started} requests to {} started within {window} ms; its interval is {interval} ms, so at most {bound} may",
                    origin.name
                );
            }
        }
        index
    }

    /// The breakers as production's health adapter reads them, through the core's isolate
    /// cache ([`SnapshotCache`]): a recent copy, else a fresh read when the run's budget
    /// allows one (which may fail: then every origin counts as available), else whatever copy
    /// there is.
    fn read_health(&mut self, may_fetch: bool) -> Awaiting {
        let mut allowance = SubrequestBudget::new(u32::from(may_fetch));
        let now = UnixMs(self.now);
        let snapshot = match self.health_cache.lookup(now, &mut allowance) {
            Lookup::Use(snapshot) => snapshot,
            Lookup::Fetch => {
                let fetched = (!(self.faults && self.rng.chance(5))).then(|| {
                    self.breakers
                        .iter()
                        .map(|(name, breaker)| (name.clone(), breaker.state()))
                        .collect()
                });
                self.health_cache.handle_fetched(fetched, now)
            }
        };
        Awaiting::Health((*snapshot).clone(), allowance.used())
    }

    /// The dead-letter index hears `changes` (or cannot be reached): `true` when it took them.
    fn push_index(&mut self, name: &str, changes: &[IndexChange]) -> bool {
        if self.faults && self.rng.chance(10) {
            self.log(format!("index unreachable for {name}"));
            return false;
        }
        for change in changes {
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
        true
    }

    /// After a replay or an erasure the adapter tells the index at once; that await, too,
    /// may be overtaken by anything.
    fn sync_index(&mut self, name: &str) -> Result<(), Crashed> {
        let changes = self.step(name, |inbox| inbox.poll_index())?;
        if changes.is_empty() {
            return Ok(());
        }
        let pushed = self.push_index(name, &changes);
        if self.faults && self.rng.chance(25) {
            let inbox = self.inboxes.get_mut(name).expect("inbox");
            inbox.index_pushes.push((changes, pushed));
            return Ok(());
        }
        self.index_pushed(name, &changes, pushed)
    }

    fn index_pushed(
        &mut self,
        name: &str,
        changes: &[IndexChange],
        pushed: bool,
    ) -> Result<(), Crashed> {
        let now = UnixMs(self.now);
        self.step(name, |inbox| match pushed {
            true => inbox.handle_index_synced(changes),
            false => inbox.handle_index_failed(now),
        })
    }

    /// One await somewhere comes back: a run goes on, or a replay's index push is answered.
    /// Now and then a run is cancelled instead (an alarm's wall-clock limit): the object keeps
    /// its memory and the platform runs the alarm again.
    fn resume_step(&mut self) {
        let waiting: Vec<String> = self
            .inboxes
            .iter()
            .filter(|(_, inbox)| inbox.run.is_some() || !inbox.index_pushes.is_empty())
            .map(|(name, _)| name.clone())
            .collect();
        if waiting.is_empty() {
            return;
        }
        let name = self.rng.pick(&waiting).clone();
        let inbox = self.inboxes.get_mut(&name).expect("inbox");
        if !inbox.index_pushes.is_empty() && (inbox.run.is_none() || self.rng.chance(50)) {
            let (changes, pushed) = inbox.index_pushes.remove(0);
            self.log(format!("index push of {name} answered"));
            let _ = self.index_pushed(&name, &changes, pushed);
            return;
        }
        let Some(suspended) = inbox.run.take() else {
            return;
        };
        if self.faults && self.rng.chance(3) {
            // The platform drops the run's promise; the object keeps its memory, the gate
            // still held by the run (taken over once no run could still be going).
            inbox.epoch += 1;
            if suspended.from_alarm {
                inbox.alarm = Some(
                    inbox
                        .alarm
                        .map_or(self.now + 1_000, |a| a.min(self.now + 1_000)),
                );
            }
            self.log(format!("run of {name} cancelled"));
            return;
        }
        self.log(format!("run of {name} goes on"));
        self.drive(
            &name,
            suspended.run,
            suspended.settings,
            Some(suspended.awaiting),
            suspended.ticket,
            suspended.from_alarm,
        );
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
            for key in &replayed {
                self.delivered_in_epoch
                    .remove(&(key.id.clone(), key.consumer.clone()));
            }
            if !replayed.is_empty() {
                let _ = self.sync_index(&name);
            }
            let inbox = self.inboxes.get_mut(&name).expect("inbox");
            inbox.alarm = Some(inbox.alarm.map_or(self.now, |a| a.min(self.now)));
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
                inbox.alarm = Some(inbox.alarm.map_or(self.now, |a| a.min(self.now)));
                if erasure.dead_letters > 0 {
                    let _ = self.sync_index(&name);
                }
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
        match self.rng.below(5) {
            0 => self.change_settings(|settings, rng| {
                settings.retention.dead_letter_secs = 30 + rng.below(900);
                settings.retention.payload_secs = rng.below(60);
            }),
            1 => self.change_settings(|settings, rng| {
                settings.retry_schedule = RetrySchedule::parse(rng.pick::<&str>(&SCHEDULES))
                    .expect("valid")
                    .with_jitter_percent(20);
            }),
            2 => self.change_settings(|settings, rng| {
                settings.origins = parse_origins(rng.pick::<&str>(&ORIGIN_SETS)).expect("valid");
            }),
            3 => self.change_settings(|settings, rng| {
                settings.subrequest_limit = *rng.pick(&[10, 50, 1000]);
            }),
            _ => self.change_settings(|settings, _| {
                settings.after_dead_letter = match settings.after_dead_letter {
                    AfterDeadLetter::Hold => AfterDeadLetter::Continue,
                    _ => AfterDeadLetter::Hold,
                };
            }),
        }
        self.log(format!(
            "settings: retention {:?}, hold {:?}, {} origins, {} subrequests",
            self.settings.retention,
            self.settings.after_dead_letter,
            self.settings.origins.len(),
            self.settings.subrequest_limit,
        ));
    }

    // --- invariants -------------------------------------------------------------------------

    /// When `id` first reaches `consumer`: every earlier event of its subject that the inbox
    /// holds must be done with for that consumer (delivered, or a dead letter it may pass).
    /// An origin answered 2xx to a copy: it must not have done so before in the same memory of
    /// its inbox (no crash, cancelled or taken-over run since), unless an operator replayed it.
    fn note_delivered(&mut self, name: &str, id: &str, consumer: &str) {
        let epoch = self.inboxes[name].epoch;
        let key = (id.to_string(), consumer.to_string());
        if let Some(before) = self.delivered_in_epoch.insert(key, epoch) {
            assert_ne!(
                before, epoch,
                "{id} reached {consumer} twice with no crash, cancellation or take-over between"
            );
            self.redelivered += 1;
        }
    }

    fn check_order_at_delivery(&self, id: &str, consumer: &str, after: AfterDeadLetter) {
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
            let superseded = after == AfterDeadLetter::Hold
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
                CopyState::Dead { .. } => after == AfterDeadLetter::Continue,
                CopyState::Pending { .. } => superseded,
            };
            assert!(
                passable,
                "{id} reached {consumer} while the earlier {} was {:?}",
                earlier.id, copy.state
            );
        }
    }

    /// A copy's stored history is what origins saw of it: its requests are, in order, among
    /// those made for the copy (a crash may lose a request's record, never invent one), and it
    /// keeps no more than its bound, counting the rest.
    fn check_history(&self, name: &str, id: &str, consumer: &str, copy: &CopyRecord) {
        let history = &copy.history;
        assert!(
            history.latest.len() <= HISTORY_ATTEMPTS,
            "{name}: {id}/{consumer} keeps {} requests",
            history.latest.len()
        );
        assert!(
            history.requests as usize >= history.latest.len(),
            "{name}: {id}/{consumer} counts fewer requests than it keeps"
        );
        let seen = self
            .requests_seen
            .get(&(id.to_string(), consumer.to_string()))
            .map_or(&[][..], Vec::as_slice);
        let mut rest = seen.iter();
        for entry in history.latest.iter().filter(|entry| entry.origin.is_some()) {
            let recorded = (entry.origin.clone().unwrap_or_default(), entry.status);
            assert!(
                rest.any(|request| *request == recorded),
                "{name}: {id}/{consumer} records {recorded:?}, which no origin saw in that order: {seen:?}"
            );
        }
    }

    fn check(&self) {
        for (uid, ids) in &self.webhook_ids {
            assert!(ids.len() <= 1, "uid {uid} reached origins as {ids:?}");
        }
        for (name, inbox) in &self.inboxes {
            let store = &inbox.store;
            for ((seq, consumer), copy) in &store.copies {
                if let Some(record) = store.events.get(seq) {
                    self.check_history(name, &record.id, consumer, copy);
                }
            }
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
        let finals = parse_origins(&format!("[{}]", origins.join(","))).expect("valid");
        self.change_settings(|settings, _| settings.origins = finals);
        // Every await still open comes back.
        while self
            .inboxes
            .values()
            .any(|inbox| inbox.run.is_some() || !inbox.index_pushes.is_empty())
        {
            self.resume_step();
        }
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
                    self.delivered_in_epoch
                        .remove(&(id.clone(), consumer.clone()));
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

    /// The next alarm due. The platform starts none while the object's alarm handler is still
    /// under way (a run a claim started does not hold it back).
    fn next_alarm(&self) -> Option<(String, i64)> {
        self.inboxes
            .iter()
            .filter(|(_, inbox)| !inbox.run.as_ref().is_some_and(|run| run.from_alarm))
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
                if !ok {
                    let (name, inbox) = self
                        .inboxes
                        .iter()
                        .find(|(_, inbox)| std::ptr::eq(&inbox.store, store))
                        .expect("its inbox");
                    panic!(
                        "uid {uid} ({id}) neither reached {consumer} nor was listed: {copy:?}; \
                         {name}: alarm {:?}, run {}, events {:?}",
                        inbox.alarm,
                        inbox.run.is_some(),
                        store.copies
                    );
                }
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
                StoredContent::Classified { payload, .. } => {
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
            // Each attempt is recorded in the copy's own history, written with its state.
            let attempts_before = store.copies.get(&key).map_or(0, |old| old.history.attempts);
            // Waiting (for a gate's turn, a breaker) is never a failure: the count grows only
            // with an attempt that was recorded.
            if let (
                Some(CopyState::Pending {
                    failures: before, ..
                }),
                CopyState::Pending { failures, .. },
            ) = (store.copies.get(&key).map(|old| old.state), copy.state)
            {
                assert!(
                    failures <= before || copy.history.attempts > attempts_before,
                    "{key:?}: a failure counted with no attempt recorded"
                );
            }
            if let Some(added) = copy.history.attempts.checked_sub(attempts_before) {
                if added > 0 {
                    *store.attempt_batches.entry(key.clone()).or_default() += added;
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
        Change::Vacate => {
            // Released whole: only what nothing needs may go with it.
            assert!(
                store.events.is_empty()
                    && store.copies.is_empty()
                    && store.erased_at.is_none()
                    && store.subject.is_none(),
                "storage released while it held something"
            );
            *store = Stored::default();
        }
    }
}

/// What a trace needs of a body: its identity fields, not its content.
fn payload_summary(payload: &serde_json::Value) -> String {
    format!(
        "{} {} event_id {} timestamp {}",
        payload["webhook_type"], payload["status"], payload["event_id"], payload["timestamp"]
    )
}

fn run(seed: u64, steps: u64) -> Result<World, String> {
    let mut world = World::new(seed);
    let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        for _ in 0..steps {
            world.steps += 1;
            match world.rng.below(100) {
                0..=34 => world.didit_step(),
                35..=59 => {
                    if let Some((name, at)) = world.next_alarm() {
                        world.now = world.now.max(at);
                        world.alarm(&name);
                    }
                }
                60..=71 => world.resume_step(),
                72..=84 => world.now += world.rng.below(20_000) as i64,
                85..=90 => world.origin_step(),
                91..=93 => world.replay_step(),
                94 => world.erase_step(),
                95 => world.reconcile_step(),
                96..=97 => world.settings_step(),
                _ => {
                    // A crash out of the blue: an inbox loses its memory, and every await it
                    // had in flight.
                    let names: Vec<String> = world.inboxes.keys().cloned().collect();
                    if !names.is_empty() {
                        let name = world.rng.pick(&names).clone();
                        let now = world.now;
                        world.inboxes.get_mut(&name).expect("inbox").crash(now);
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
    let mut suspended = 0;
    let mut reconciled = 0;
    let mut rematched = 0;
    let mut redelivered = 0;
    let mut claim_runs = 0;
    let mut busy_alarms = 0;
    let mut vacated = 0;
    let mut grants = 0;
    let mut waits = 0;
    let mut peaks: BTreeMap<u32, u32> = BTreeMap::new();
    let runs = seeds.len();
    for seed in seeds {
        match run(seed, steps) {
            Ok(world) => {
                events += world.answered.len();
                delivered += world.delivered.len();
                dead += world.ever_listed.len();
                total_steps += world.steps;
                suspended += world.suspended_runs;
                reconciled += world.reconciled_accepted;
                rematched += world.rematched;
                redelivered += world.redelivered;
                claim_runs += world.claim_runs;
                busy_alarms += world.busy_alarms;
                vacated += world.vacated;
                grants += world.grants;
                waits += world.waits;
                for (max, peak) in world.peaks {
                    let most = peaks.entry(max).or_default();
                    *most = (*most).max(peak);
                }
            }
            Err(report) => panic!("{report}"),
        }
    }
    // The runs did real work: events were accepted and delivered, and (over enough runs) dead
    // letters listed.
    assert!(
        events > 0
            && delivered > 0
            && claim_runs > 0
            && (runs < 10
                || (dead > 0
                    && suspended > 0
                    && reconciled > 0
                    && busy_alarms > 0
                    && vacated > 0
                    && grants > 0
                    && waits > 0)),
        "{events} events, {delivered} deliveries, {dead} dead letters, {suspended} runs left \
         waiting at an await, {reconciled} reconciled results taken, {claim_runs} runs started \
         by claims, {busy_alarms} alarms finding a run going on"
    );
    eprintln!(
        "simulation: {runs} runs, {total_steps} steps: {events} events accepted, \
         {delivered} copies delivered, {dead} dead letters listed, {suspended} runs left waiting \
         at an await, {reconciled} reconciled results taken ({rematched} webhooks taken anew \
         after the result they matched was forgotten), {claim_runs} runs started by claims, \
         {busy_alarms} alarms finding a run going on, {redelivered} copies sent again after a \
         crash, cancellation or take-over, {vacated} inboxes released their storage, \
         {grants} turns granted and {waits} waits told by limited origins' gates (most in \
         flight at once, by max_concurrency: {peaks:?}); every invariant held"
    );
}
