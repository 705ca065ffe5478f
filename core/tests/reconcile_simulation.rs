//! A deterministic simulation of reconciliation ([`didit_edge_core::reconcile`]) against a
//! simulated Didit, with the real inbox machine deciding what is a duplicate, in the way
//! `simulation.rs` tests delivery: a simulated clock, and faults at every turn.
//!
//! - Didit's sessions move through their statuses (results, repeated statuses after a
//!   resubmission, sessions that never finish), KYC and KYB;
//! - each transition's webhook is lost, delayed past Didit's own retries, retried, or arrives;
//! - Didit's API answers 503, 429 (with `Retry-After` in seconds or as a date), nothing, or a
//!   page that is not JSON; inboxes cannot be asked; an injection fails before the inbox stored
//!   it or after (the answer is lost);
//! - the reconciler crashes between any two steps (what it wrote stays, its run is gone, its
//!   lease is held until it expires), its storage fails, and a second run is tried beside every
//!   step of a run.
//!
//! Checked throughout: no two runs ever run at once; no session gets more events of a status
//! than the times it reached that status (a webhook and a reconciled event of one transition
//! are one event, whichever came first); nothing is injected for a session still in progress
//! or created before reconciliation was switched on. At the end, after quiet hours with the
//! faults going on: every session's latest event is the status Didit reports, so a missing
//! result was found.
//!
//! `SIM_SEED=n` replays one run; `SIM_SEEDS` (default 6) and `SIM_HOURS` (simulated hours per
//! run, default 30) make longer ones.

mod support;

use support::{env_number, panic_message, seeds, Rng};

use std::collections::BTreeMap;
use std::fmt::Write as _;

use didit_edge_core::inbox::{Claim, ClaimContent, Classification, Inbox, Source};
use didit_edge_core::intake::Identified;
use didit_edge_core::normalize::status_code;
use didit_edge_core::reconcile::api::{is_result_status, Answer, SessionKind, PAGE_SIZE};
use didit_edge_core::reconcile::{begin, Change, NotNow, Seen, Settings, State, Step};
use didit_edge_core::rejection::Receipt;
use didit_edge_core::risk::Level;
use didit_edge_core::time::{parse_rfc3339, to_rfc3339, UnixMs, UnixSecs};

const PATHS: &[&[&str]] = &[
    &["In Progress", "Approved"],
    &["In Progress", "Declined"],
    &["Not Started", "In Progress", "In Review", "Approved"],
    &["In Progress", "In Review", "Declined"],
    &[
        "In Progress",
        "Declined",
        "Resubmitted",
        "In Progress",
        "Approved",
    ],
    &["In Progress", "Approved", "Resubmitted", "Approved"],
    &["Not Started"],
    &["In Progress"],
    &["In Progress", "Abandoned"],
    &["In Progress", "Awaiting User", "Expired"],
];

const START: i64 = 1_800_000_000;
const TICK_SECS: i64 = 15;

struct Session {
    id: String,
    kind: SessionKind,
    created_at: i64,
    /// `(when, status)`, in order.
    history: Vec<(i64, &'static str)>,
}

impl Session {
    fn status_at(&self, now: i64) -> Option<&'static str> {
        self.history
            .iter()
            .take_while(|(at, _)| *at <= now)
            .last()
            .map(|(_, status)| *status)
    }

    fn inbox(&self) -> String {
        match self.kind {
            SessionKind::User => format!("session:{}", self.id),
            SessionKind::Business => format!("business_session:{}", self.id),
        }
    }
}

struct Webhook {
    at: i64,
    session: usize,
    transition: usize,
}

struct World {
    rng: Rng,
    now: i64,
    settings: Settings,
    sessions: Vec<Session>,
    webhooks: Vec<Webhook>,
    inboxes: BTreeMap<String, Inbox>,
    /// What the reconciler stored: its state and its `seen` table.
    state: State,
    seen: BTreeMap<String, (UnixSecs, Seen)>,
    /// Whether API and inbox faults are injected.
    faults: bool,
    activated_at: Option<i64>,
    runs: u64,
    crashes: u64,
    injected: u64,
    api_requests: u64,
    trace: Vec<String>,
}

/// An empty inbox, as the adapter starts one (its sequence starts at 1).
fn new_inbox() -> Inbox {
    Inbox::new()
}

fn dummy(session: &Session) -> ClaimContent {
    ClaimContent::Classified(Classification {
        risk_level: Level::Low,
        consumers: vec!["main".into()],
        payload: format!("{{\"session\":\"{}\"}}", session.id),
    })
}

impl World {
    fn new(seed: u64, hours: i64) -> Self {
        let mut rng = Rng(seed);
        let settings = Settings {
            lookback_secs: 86_400,
            interval_secs: 300,
            settle_secs: [0, 120, 600][rng.below(3) as usize],
            recheck_secs: 3_600,
            requests_per_run: [4, 9, 40][rng.below(3) as usize] as u32,
        };
        let mut sessions = Vec::new();
        let mut webhooks = Vec::new();
        let count = 60 + rng.below(200) as usize;
        // Sessions are created over the first part of the run, some before the switch-on.
        let span = (hours - 8).max(1) * 3600;
        for n in 0..count {
            let created_at = START - 1800 + rng.below(span as u64) as i64;
            let path = PATHS[rng.below(PATHS.len() as u64) as usize];
            let mut at = created_at;
            let mut history = Vec::new();
            for status in path {
                let longest = if rng.chance_per_mille(200) {
                    10_800
                } else {
                    900
                };
                at += 5 + rng.below(longest) as i64;
                history.push((at, *status));
            }
            // Quiet hours at the end, for what is missing to be found.
            history.retain(|(at, _)| *at < START + (hours - 3) * 3600);
            let kind = if rng.chance_per_mille(200) {
                SessionKind::Business
            } else {
                SessionKind::User
            };
            for (transition, (at, _)) in history.iter().enumerate() {
                // Lost (the edge was down through Didit's retries, or Didit never sent it),
                // late, on time, and sometimes retried on top.
                if rng.chance_per_mille(300) {
                    continue;
                }
                let delay = if rng.chance_per_mille(150) {
                    60 + rng.below(1200) as i64
                } else {
                    rng.below(20) as i64
                };
                webhooks.push(Webhook {
                    at: at + delay,
                    session: n,
                    transition,
                });
                if rng.chance_per_mille(100) {
                    webhooks.push(Webhook {
                        at: at + delay + rng.below(400) as i64,
                        session: n,
                        transition,
                    });
                }
            }
            sessions.push(Session {
                id: format!("{seed:x}-{n}"),
                kind,
                created_at,
                history,
            });
        }
        webhooks.sort_by_key(|w| w.at);
        Self {
            rng,
            now: START,
            settings,
            sessions,
            webhooks,
            inboxes: BTreeMap::new(),
            state: State::default(),
            seen: BTreeMap::new(),
            faults: true,
            activated_at: None,
            runs: 0,
            crashes: 0,
            injected: 0,
            api_requests: 0,
            trace: Vec::new(),
        }
    }

    fn log(&mut self, line: String) {
        if self.trace.len() >= 60 {
            self.trace.remove(0);
        }
        self.trace.push(format!("[{}] {line}", self.now - START));
    }

    fn deliver_webhooks(&mut self) {
        while self.webhooks.first().is_some_and(|w| w.at <= self.now) {
            let webhook = self.webhooks.remove(0);
            let session = &self.sessions[webhook.session];
            let (at, status) = session.history[webhook.transition];
            let claim = Claim {
                id: format!("evt-{}-{}", session.id, webhook.transition),
                legacy_id: format!("legacy-{}-{}", session.id, webhook.transition),
                subject: session.inbox(),
                alias: Some(format!("didit-{}-{}", session.id, webhook.transition)),
                webhook_type: "status.updated".into(),
                status: Some(status.into()),
                created_at: UnixSecs(at),
                content: dummy(session),
                source: Source::Webhook,
            };
            let inbox = self
                .inboxes
                .entry(session.inbox())
                .or_insert_with(new_inbox);
            let receipt = inbox.handle_claim(claim, UnixMs(self.now * 1000));
            inbox.drain_changes().for_each(drop);
            let line = format!(
                "webhook {} #{} {status}: {receipt:?}",
                session.id, webhook.transition
            );
            self.log(line);
        }
    }

    /// Didit's answer to a list request, from the sessions as they are now.
    fn list(&mut self, path: &str) -> (u16, String) {
        let query: BTreeMap<&str, &str> = path
            .split_once('?')
            .map(|(_, q)| q)
            .unwrap_or("")
            .split('&')
            .filter_map(|pair| pair.split_once('='))
            .collect();
        let kind = match query.get("session_kind") {
            Some(&"business") => SessionKind::Business,
            _ => SessionKind::User,
        };
        let from = query
            .get("date_from")
            .and_then(|t| parse_rfc3339(t))
            .expect("date_from");
        let to = query
            .get("date_to")
            .and_then(|t| parse_rfc3339(t))
            .expect("date_to");
        let offset: usize = query
            .get("offset")
            .and_then(|o| o.parse().ok())
            .expect("offset");
        let limit: usize = query
            .get("limit")
            .and_then(|l| l.parse().ok())
            .expect("limit");
        assert_eq!(limit, PAGE_SIZE as usize);
        let now = self.now;
        let mut rows: Vec<&Session> = self
            .sessions
            .iter()
            .filter(|s| {
                s.kind == kind && s.created_at >= from && s.created_at <= to && s.created_at <= now
            })
            .collect();
        rows.sort_by_key(|s| std::cmp::Reverse(s.created_at));
        let total = rows.len();
        let mut body = String::from("{\"results\":[");
        for (index, session) in rows.iter().skip(offset).take(limit).enumerate() {
            let status = session.status_at(now).unwrap_or("Not Started");
            if index > 0 {
                body.push(',');
            }
            let _ = write!(
                body,
                r#"{{"session_id":"{}","status":"{status}","created_at":"{}","full_name":"Jane Doe","session_kind":"{}"}}"#,
                session.id,
                to_rfc3339(session.created_at),
                kind.as_str()
            );
        }
        let more = offset + limit < total;
        let _ = write!(
            body,
            r#"],"count":{},"next":{}}}"#,
            if kind == SessionKind::Business {
                total.min(100)
            } else {
                total
            },
            if more {
                "\"https://didit/next\""
            } else {
                "null"
            }
        );
        (200, body)
    }

    fn decision(&mut self, path: &str) -> (u16, String) {
        let id = path
            .strip_prefix("/session/")
            .and_then(|rest| rest.strip_suffix("/decision/"))
            .expect("a decision path");
        let now = self.now;
        match self.sessions.iter().find(|s| s.id == id) {
            Some(session) => {
                let status = session.status_at(now).unwrap_or("Not Started");
                (
                    200,
                    format!(
                        r#"{{"session_id":"{id}","status":"{status}","vendor_data":"v","id_verifications":[{{"node_id":"n","status":"{status}"}}]}}"#
                    ),
                )
            }
            None => (404, "{\"detail\":\"Not found.\"}".into()),
        }
    }

    /// One API request: the fault, or Didit's answer.
    fn api(&mut self, path: &str) -> (u16, String, Option<String>) {
        self.api_requests += 1;
        if self.faults && self.rng.chance_per_mille(100) {
            return match self.rng.below(5) {
                0 => (503, String::new(), None),
                1 => (429, String::new(), Some(format!("{}", self.rng.below(200)))),
                2 => (
                    429,
                    String::new(),
                    Some(http_date(self.now + self.rng.below(300) as i64)),
                ),
                3 => (200, "<html>maintenance</html>".into(), None),
                _ => (0, String::new(), None),
            };
        }
        let (status, body) = if path.starts_with("/sessions/") {
            self.list(path)
        } else {
            self.decision(path)
        };
        (status, body, None)
    }

    /// One tick of the reconciler (the cron or its alarm), crashes included.
    fn reconcile(&mut self) {
        let now = UnixSecs(self.now);
        let mut run = match begin(self.state.clone(), self.settings, now) {
            Ok(run) => run,
            Err(NotNow::Busy(_) | NotNow::Waiting(_) | NotNow::Idle(_)) => return,
        };
        self.runs += 1;
        self.activated_at.get_or_insert(self.now);
        self.state = run.state().clone();
        loop {
            // Another run tried beside this one never starts.
            assert!(
                matches!(
                    begin(self.state.clone(), self.settings, now),
                    Err(NotNow::Busy(_))
                ),
                "a second run would start beside a running one"
            );
            if self.faults && self.rng.chance_per_mille(5) {
                self.crashes += 1;
                self.log("reconciler crashed before a step".into());
                return;
            }
            let step = run.poll();
            for change in run.drain_changes() {
                match change {
                    Change::Remember {
                        session_id,
                        created_at,
                        seen,
                    } => {
                        self.seen.insert(session_id, (created_at, seen));
                    }
                    Change::ForgetCreatedBefore(at) => {
                        self.seen.retain(|_, (created, _)| *created >= at);
                    }
                }
            }
            if self.faults && self.rng.chance_per_mille(5) {
                self.crashes += 1;
                self.log("reconciler crashed between its changes and its state".into());
                return;
            }
            self.state = run.state().clone();
            match step {
                Step::Done => break,
                Step::List { path } => {
                    let (status, body, retry_after) = self.api(&path);
                    run.handle_page(answer(status, &body, retry_after.as_deref()));
                }
                Step::FetchDecision { path } => {
                    let (status, body, retry_after) = self.api(&path);
                    run.handle_decision(answer(status, &body, retry_after.as_deref()));
                }
                Step::Recall { session_ids } => {
                    if self.faults && self.rng.chance_per_mille(10) {
                        self.log("the reconciler's storage failed".into());
                        run.handle_storage_failure("storage failed".into());
                        continue;
                    }
                    let found: Vec<(String, Seen)> = session_ids
                        .iter()
                        .filter_map(|id| {
                            self.seen
                                .get(id)
                                .map(|(_, seen)| (id.clone(), seen.clone()))
                        })
                        .collect();
                    run.handle_recalled(found);
                }
                Step::AskInbox {
                    inbox,
                    webhook_type,
                    status,
                } => {
                    if self.faults && self.rng.chance_per_mille(30) {
                        run.handle_inbox(Err("unreachable".into()));
                        continue;
                    }
                    let known = self
                        .inboxes
                        .get(&inbox)
                        .is_some_and(|i| i.knows_transition(webhook_type, &status, now));
                    run.handle_inbox(Ok(known));
                }
                Step::Inject { body } => {
                    let lost_before = self.faults && self.rng.chance_per_mille(30);
                    let lost_after = self.faults && self.rng.chance_per_mille(30);
                    if lost_before {
                        run.handle_injected(Err("inbox down".into()));
                        continue;
                    }
                    let identified = Identified::from_api(body.as_bytes(), now.0)
                        .expect("a webhook the core wrote names itself");
                    let session = self
                        .sessions
                        .iter()
                        .find(|s| s.inbox() == identified.inbox())
                        .expect("a known session");
                    let status = identified.status.as_deref().expect("a status").to_string();
                    assert!(is_result_status(&status), "injected {status}, not a result");
                    assert!(
                        self.activated_at.is_some_and(|on| session.created_at >= on),
                        "injected a session created before reconciliation was switched on"
                    );
                    let claim = Claim {
                        id: identified.event_id.as_str().into(),
                        legacy_id: identified.legacy_id.as_str().into(),
                        subject: identified.inbox(),
                        alias: None,
                        webhook_type: identified.webhook_type.to_string(),
                        status: Some(status.clone()),
                        created_at: UnixSecs(identified.created_at),
                        content: dummy(session),
                        source: Source::Api,
                    };
                    let line = format!("inject {} {status}", session.id);
                    let inbox = self
                        .inboxes
                        .entry(identified.inbox())
                        .or_insert_with(new_inbox);
                    let receipt = inbox.handle_claim(claim, UnixMs(self.now * 1000));
                    inbox.drain_changes().for_each(drop);
                    self.log(format!("{line}: {receipt:?}"));
                    if matches!(receipt, Receipt::Accepted { .. }) {
                        self.injected += 1;
                    }
                    if lost_after {
                        run.handle_injected(Err("answer lost".into()));
                    } else {
                        run.handle_injected(Ok(matches!(receipt, Receipt::Accepted { .. })));
                    }
                }
            }
        }
        let (state, _) = run.finish(now);
        let ended = state.last_run.as_ref().map(|r| r.ended);
        self.log(format!("run ended {ended:?}"));
        self.state = state;
    }

    /// No session holds more events of a status than the times it reached it.
    fn check_no_double(&self) {
        for session in &self.sessions {
            let Some(inbox) = self.inboxes.get(&session.inbox()) else {
                continue;
            };
            let mut held: BTreeMap<String, usize> = BTreeMap::new();
            for status in inbox_statuses(inbox) {
                *held.entry(status_code(&status)).or_default() += 1;
            }
            for (code, count) in held {
                let reached = session
                    .history
                    .iter()
                    .filter(|(_, status)| status_code(status) == code)
                    .count();
                assert!(
                    count <= reached,
                    "session {} holds {count} events of {code}, reached it {reached} times",
                    session.id
                );
            }
        }
    }

    /// Every session created after the switch-on ends with the status Didit reports.
    fn check_found(&self) {
        let on = self.activated_at.expect("reconciliation ran");
        for session in self.sessions.iter().filter(|s| s.created_at >= on) {
            let Some(status) = session.status_at(self.now) else {
                continue;
            };
            if !is_result_status(status) {
                continue;
            }
            let latest = self.inboxes.get(&session.inbox()).and_then(latest_status);
            assert_eq!(
                latest.as_deref().map(status_code),
                Some(status_code(status)),
                "session {} is {status} at Didit; the edge's latest is {latest:?}",
                session.id
            );
        }
    }
}

fn answer<'a>(status: u16, body: &'a str, retry_after: Option<&'a str>) -> Answer<'a> {
    match status {
        0 => Answer::Unreachable,
        200..=299 => Answer::Ok(body),
        status => Answer::Status {
            status,
            retry_after,
        },
    }
}

fn http_date(unix: i64) -> String {
    const DAYS: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let iso = to_rfc3339(unix);
    let month: usize = iso[5..7].parse().expect("month");
    format!(
        "{}, {} {} {} {} GMT",
        DAYS[unix.div_euclid(86_400).rem_euclid(7) as usize],
        &iso[8..10],
        MONTHS[month - 1],
        &iso[0..4],
        &iso[11..19]
    )
}

/// The statuses of an inbox's `status.updated` events, in Didit's order.
fn inbox_statuses(inbox: &Inbox) -> Vec<String> {
    inbox
        .events_in_order("status.updated")
        .into_iter()
        .filter_map(|(_, status)| status)
        .collect()
}

fn latest_status(inbox: &Inbox) -> Option<String> {
    inbox_statuses(inbox).pop()
}

fn run(seed: u64, hours: i64) -> Result<World, String> {
    let mut world = World::new(seed, hours);
    let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let end = START + hours * 3600;
        while world.now < end {
            let before = (world.trace.len(), world.trace.last().cloned());
            world.deliver_webhooks();
            world.reconcile();
            if (world.trace.len(), world.trace.last().cloned()) != before {
                world.check_no_double();
            }
            world.now += TICK_SECS;
        }
        world.check_found();
    }));
    match outcome {
        Ok(()) => Ok(world),
        Err(panic) => {
            let message = panic_message(panic.as_ref());
            let mut report = format!(
                "SIM_SEED={seed} failed at t+{}: {message}\n",
                world.now - START
            );
            for line in &world.trace {
                let _ = writeln!(report, "  {line}");
            }
            Err(report)
        }
    }
}

#[test]
fn every_missing_result_is_found_once_under_faults() {
    let hours = env_number("SIM_HOURS", 30) as i64;
    let seeds = seeds(6);
    let (mut runs, mut crashes, mut injected, mut requests, mut sessions) = (0, 0, 0, 0, 0);
    let count = seeds.len();
    for seed in seeds {
        match run(seed, hours) {
            Ok(world) => {
                runs += world.runs;
                crashes += world.crashes;
                injected += world.injected;
                requests += world.api_requests;
                sessions += world.sessions.len();
            }
            Err(report) => panic!("{report}"),
        }
    }
    // The runs did real work: gaps were injected and reconcilers crashed.
    assert!(
        injected > 0 && (count < 4 || crashes > 0),
        "{injected} injected, {crashes} crashes"
    );
    eprintln!(
        "reconcile simulation: {count} seeds × {hours} h: {sessions} sessions, {runs} runs, \
         {requests} API requests, {injected} events injected, {crashes} crashes; every invariant held"
    );
}
