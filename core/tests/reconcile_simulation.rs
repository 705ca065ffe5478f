//! A deterministic simulation of reconciliation ([`didit_edge_core::reconcile`]) against a
//! simulated Didit, with the real inbox machines deciding what is a duplicate, what is stale
//! and what is erased, and a consumer that receives what they deliver: a simulated clock in
//! milliseconds, and everything that production allows arriving at every await.
//!
//! - Didit's sessions move through their statuses (results, repeated statuses after a
//!   resubmission, sessions that never finish), KYC and KYB; a few are created in the very
//!   second reconciliation is switched on, just before and just after;
//! - each transition's webhook is lost, late (past the freshness window, so refused), retried
//!   with its timestamp, or arrives; operators resend webhooks from Didit's console (same
//!   `event_id`, a fresh timestamp and content) at any time, after later statuses too;
//! - Didit's API answers 503, 429 (with `Retry-After` in seconds or as a date), nothing, or a
//!   page that is not JSON; and single sessions are poisoned, for a while or for good: their
//!   decision answers 500, 403 or 404, times out, is too large or unreadable, or their inbox is
//!   broken;
//! - every step of a run takes time (an API request up to its timeout), and while it is under
//!   way webhooks arrive, the consumer is delivered to, inboxes forget what their TTL lets
//!   them, operators erase subjects (inbox first, the reconciler after), the cron and the
//!   alarm try a second run, settings change between runs, and the reconciler crashes between
//!   any two of its writes (its run is gone; its lease is held until it expires).
//!
//! Checked after every event: no two runs overlap, and no run answers past its lease; each of
//! Didit's transitions reaches the consumer at most once, under one `webhook-id`, and never
//! after a later one of the same session (a console resend of a webhook the edge never
//! received, sent after the session moved on, is new information to the edge and is the one
//! documented exception); nothing is fetched, injected or remembered about a session after its
//! erasure; nothing is injected for a session created before the switch-on. At the end,
//! after quiet hours with the global faults stopped: every session reconciliation could see
//! ends, at the consumer, with the status Didit reports (poisoned sessions aside, which were
//! given up on with an alert or heal and are found too), so one bad session never held up the
//! rest.
//!
//! `SIM_SEED=n` replays one run; `SIM_SEEDS` (default 6) and `SIM_HOURS` (simulated hours per
//! run, default 30) make longer ones.

mod support;

use support::{env_number, panic_message, seeds, Rng};

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;

use didit_edge_core::attempt::AttemptResult;
use didit_edge_core::config::DeliveryConfig;
use didit_edge_core::delivery::Retention;
use didit_edge_core::identity::Subject;
use didit_edge_core::inbox::run::{self, Begin};
use didit_edge_core::inbox::{
    AfterDeadLetter, Claim, ClaimContent, Classification, Inbox, InboxPolicy, Source,
};
use didit_edge_core::intake::Identified;
use didit_edge_core::normalize::status_code;
use didit_edge_core::origin::parse_origins;
use didit_edge_core::receipt::Receipt;
use didit_edge_core::reconcile::api::{is_result_status, Answer, SessionKind, PAGE_SIZE};
use didit_edge_core::reconcile::memory::{gap_reference, session_erasure_key};
use didit_edge_core::reconcile::{
    begin, erasure, Change, GapRetry, InjectFailure, Injected, NotNow, Run, Seen, Settings, State,
    Step, LEASE_SECS, STEP_TIMEOUT_SECS,
};
use didit_edge_core::retry::RetrySchedule;
use didit_edge_core::risk::Level;
use didit_edge_core::risk::RiskRules;
use didit_edge_core::secret::SigningSecrets;
use didit_edge_core::time::{
    parse_rfc3339, to_rfc3339, to_rfc3339_micros, UnixMicros, UnixMs, UnixSecs,
};

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
    &["In Progress", "In Review", "Approved", "Declined"],
    &["Not Started"],
    &["In Progress"],
    &["In Progress", "Abandoned"],
    &["In Progress", "Awaiting User", "Expired"],
];

const SECOND: i64 = 1_000;
const START: i64 = 1_800_000_000 * SECOND;
/// The first cron comes this long after `START`: the switch-on is not on a whole second.
const SWITCH_ON_MS: i64 = START + 400;
const TOLERANCE_SECS: u64 = 600;
const CONSUMER: &str = "main";

/// How one session's own requests fail.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Poison {
    ServerError,
    NoAnswer,
    Forbidden,
    NotFound,
    TooLarge,
    Garbage,
    InboxBroken,
}

const POISONS: [Poison; 7] = [
    Poison::ServerError,
    Poison::NoAnswer,
    Poison::Forbidden,
    Poison::NotFound,
    Poison::TooLarge,
    Poison::Garbage,
    Poison::InboxBroken,
];

struct Session {
    id: String,
    kind: SessionKind,
    created_us: i64,
    /// `(when in ms, status)`, in order.
    history: Vec<(i64, &'static str)>,
    /// Its poison and until when (`None`: for good).
    poison: Option<(Poison, Option<i64>)>,
}

impl Session {
    fn transition_at(&self, now: i64) -> Option<usize> {
        self.history.iter().rposition(|(at, _)| *at <= now)
    }

    fn status_at(&self, now: i64) -> Option<&'static str> {
        self.transition_at(now).map(|k| self.history[k].1)
    }

    fn subject(&self) -> Subject<'_> {
        Subject {
            kind: self.kind.subject_kind(),
            id: self.id.as_str().into(),
        }
    }

    fn inbox(&self) -> String {
        self.subject().inbox_name()
    }

    fn poisoned(&self, now: i64) -> Option<Poison> {
        self.poison
            .filter(|(_, until)| until.is_none_or(|until| now < until))
            .map(|(poison, _)| poison)
    }
}

/// One webhook POST from Didit (the first, a retry, or a console resend).
struct Post {
    at: i64,
    session: usize,
    transition: usize,
    /// Its body's `timestamp` (seconds): the transition's, or a resend's fresh one.
    timestamp: i64,
    resend: bool,
}

/// What an event the consumer may receive stands for.
#[derive(Clone, Copy, Debug)]
struct Meaning {
    session: usize,
    transition: usize,
    /// A console resend of a webhook the edge never saw, after the session moved on: new
    /// information to the edge (the documented exception).
    resend_of_unknown: bool,
    /// It was Didit's current status when the edge took it.
    current: bool,
}

/// A step of a run under way, its IO in flight.
struct InFlight {
    step: Step,
    /// When the IO reaches its target (a Durable Object answers then).
    effect_at: i64,
    /// When the answer is back with the run.
    answer_at: i64,
    /// What the IO came to, once it took effect.
    outcome: Option<Outcome_>,
}

enum Outcome_ {
    Api(u16, String, Option<String>),
    Knowledge(Result<didit_edge_core::inbox::Knowledge, ()>),
    Injected(Result<Injected, InjectFailure>),
    Alerted(Result<(), ()>),
    Recalled(Vec<(String, Seen)>, Vec<String>),
}

struct ActiveRun {
    run: Run,
    in_flight: Option<InFlight>,
}

struct World {
    rng: Rng,
    now: i64,
    end: i64,
    quiet_from: i64,
    settings: Settings,
    sessions: Vec<Session>,
    posts: Vec<Post>,
    inboxes: BTreeMap<String, Inbox>,
    /// The reconciler's storage: its state, its `seen` table, its erasure marks.
    state: State,
    seen: BTreeMap<String, (UnixSecs, Seen)>,
    marks: BTreeMap<String, UnixSecs>,
    active: Option<ActiveRun>,
    /// Global API and inbox faults (they stop in the quiet hours).
    faults: bool,
    next_cron: i64,
    /// The reconciler's alarm, as its last run set it.
    next_alarm: Option<i64>,
    next_delivery: i64,
    next_retention: i64,
    next_settings: i64,
    erasures: Vec<(i64, usize)>,
    /// Erased sessions: when the erasure began and when it completed.
    erased: BTreeMap<usize, (i64, i64)>,
    /// Reconciler forgets waiting to happen (an erasure's second half).
    pending_forgets: Vec<(i64, usize)>,
    meaning: BTreeMap<String, Meaning>,
    /// Aliases the edge received in a webhook claim (any receipt).
    aliases_claimed: BTreeSet<String>,
    /// What the consumer received, per session, in order.
    received: BTreeMap<usize, Vec<(String, Meaning)>>,
    /// Per session, re-deliveries of its current status that reconciliation owes the consumer
    /// after a resend of an unknown webhook left it at an older one.
    heals_owed: BTreeMap<usize, u32>,
    /// The transition each session was at when its decision was last read.
    last_read: BTreeMap<usize, usize>,
    /// Gaps given up on, by erasure key, with an alert queued.
    alerted: BTreeSet<String>,
    switched_on: Option<UnixMicros>,
    runs: u64,
    crashes: u64,
    injected: u64,
    api_requests: u64,
    deliveries: u64,
    trace: Vec<String>,
}

fn content(session: &Session, tag: &str) -> ClaimContent {
    ClaimContent::Classified(Classification {
        risk_level: Level::Low,
        consumers: vec![CONSUMER.into()],
        payload: format!("{{\"session\":\"{}\",\"tag\":\"{tag}\"}}", session.id),
    })
}

impl World {
    fn new(seed: u64, hours: i64) -> Self {
        let mut rng = Rng(seed);
        let end = START + hours * 3_600 * SECOND;
        let quiet_from = end - 4 * 3_600 * SECOND;
        let settings = random_settings(&mut rng);
        let mut sessions = Vec::new();
        let mut posts = Vec::new();
        let count = 60 + rng.below(160) as usize;
        let span = ((hours - 8).max(1) * 3_600) as u64;
        for n in 0..count + 2 {
            // Two sessions are created in the switch-on's own second, just before and after.
            let created_us = match n {
                n if n == count => (SWITCH_ON_MS - 1) * 1_000 + 999,
                n if n == count + 1 => SWITCH_ON_MS * 1_000,
                _ => (START - 1_800 * SECOND) * 1_000 + rng.below(span * 1_000_000) as i64,
            };
            let path = PATHS[rng.below(PATHS.len() as u64) as usize];
            let mut at = created_us / 1_000;
            let mut history = Vec::new();
            for status in path {
                let longest = if rng.chance_per_mille(200) {
                    10_800
                } else {
                    900
                };
                at += (5 + rng.below(longest) as i64) * SECOND + rng.below(1_000) as i64;
                history.push((at, *status));
            }
            // Quiet hours at the end, for what is missing to be found.
            history.retain(|(at, _)| *at < quiet_from - 3_600 * SECOND);
            let kind = if rng.chance_per_mille(200) {
                SessionKind::Business
            } else {
                SessionKind::User
            };
            let poison = rng.chance_per_mille(60).then(|| {
                let poison = POISONS[rng.below(POISONS.len() as u64) as usize];
                let until = rng
                    .chance(50)
                    .then(|| START + rng.below((hours as u64) * 3_600) as i64 * SECOND);
                (poison, until)
            });
            for (transition, (at, _)) in history.iter().enumerate() {
                let timestamp = at / SECOND;
                if !rng.chance_per_mille(300) {
                    // Late past the freshness window now and then: refused, so lost.
                    let delay = if rng.chance_per_mille(150) {
                        60_000 + rng.below(1_200_000) as i64
                    } else {
                        rng.below(20_000) as i64
                    };
                    posts.push(Post {
                        at: at + delay,
                        session: n,
                        transition,
                        timestamp,
                        resend: false,
                    });
                    // Didit's own retry keeps the timestamp.
                    if rng.chance_per_mille(100) {
                        posts.push(Post {
                            at: at + delay + 60_000 + rng.below(240_000) as i64,
                            session: n,
                            transition,
                            timestamp,
                            resend: false,
                        });
                    }
                }
                // A console resend, maybe after later statuses: same event_id, fresh timestamp.
                if rng.chance_per_mille(120) {
                    let resent = at + rng.below(4 * 3_600_000) as i64;
                    posts.push(Post {
                        at: resent,
                        session: n,
                        transition,
                        timestamp: resent / SECOND,
                        resend: true,
                    });
                }
            }
            sessions.push(Session {
                id: format!("{seed:x}-{n}"),
                kind,
                created_us,
                history,
                poison,
            });
        }
        posts.sort_by_key(|post| post.at);
        let mut erasures: Vec<(i64, usize)> = (0..1 + rng.below(6))
            .map(|_| {
                (
                    START + rng.below(((hours - 6) * 3_600) as u64) as i64 * SECOND,
                    rng.below(count as u64) as usize,
                )
            })
            .collect();
        erasures.sort();
        Self {
            rng,
            now: START,
            end,
            quiet_from,
            settings,
            sessions,
            posts,
            inboxes: BTreeMap::new(),
            state: State::default(),
            seen: BTreeMap::new(),
            marks: BTreeMap::new(),
            active: None,
            faults: true,
            next_cron: SWITCH_ON_MS,
            next_alarm: None,
            next_delivery: START,
            next_retention: START,
            next_settings: START + 3_600 * SECOND,
            erasures,
            erased: BTreeMap::new(),
            pending_forgets: Vec::new(),
            meaning: BTreeMap::new(),
            aliases_claimed: BTreeSet::new(),
            received: BTreeMap::new(),
            heals_owed: BTreeMap::new(),
            last_read: BTreeMap::new(),
            alerted: BTreeSet::new(),
            switched_on: None,
            runs: 0,
            crashes: 0,
            injected: 0,
            api_requests: 0,
            deliveries: 0,
            trace: Vec::new(),
        }
    }

    fn log(&mut self, line: String) {
        if self.trace.len() >= env_number("SIM_TRACE", 80) as usize {
            self.trace.remove(0);
        }
        self.trace.push(format!(
            "[{}.{:03}] {line}",
            (self.now - START) / SECOND,
            (self.now - START) % SECOND
        ));
    }

    fn policy(&self) -> (RetrySchedule, Retention) {
        let schedule = RetrySchedule::parse("5,30,120,600x30")
            .expect("valid")
            .with_jitter_percent(0);
        let retention = Retention {
            payload_secs: 0,
            dead_letter_secs: 14 * 86_400,
            dedup_ttl_secs: self.settings.memory_secs,
            freshness_secs: TOLERANCE_SECS,
        };
        (schedule, retention)
    }

    // --- Didit's side ---------------------------------------------------------------------

    /// Didit POSTs a webhook; intake refuses it when its timestamp is out of the window.
    fn webhook(&mut self, post: Post) {
        let session = &self.sessions[post.session];
        if (post.at / SECOND - post.timestamp).unsigned_abs() > TOLERANCE_SECS {
            return;
        }
        let (_, status) = session.history[post.transition];
        let alias = format!("didit-{}-{}", session.id, post.transition);
        let tag = format!("{}-{}", post.transition, post.timestamp);
        let claim = Claim {
            id: format!("evt-{}-{tag}", session.id),
            legacy_id: format!("legacy-{}-{tag}", session.id),
            subject: session.inbox(),
            alias: Some(alias.clone()),
            webhook_type: "status.updated".into(),
            status: Some(status.into()),
            created_at: UnixSecs(post.timestamp),
            content: content(session, &tag),
            source: Source::Webhook,
            verified: None,
        };
        let later_status = session
            .transition_at(post.at)
            .is_some_and(|latest| latest > post.transition);
        let meaning = Meaning {
            session: post.session,
            transition: post.transition,
            resend_of_unknown: post.resend
                && later_status
                && !self.aliases_claimed.contains(&alias),
            current: !later_status,
        };
        let id = claim.id.clone();
        let inbox = self.inboxes.entry(session.inbox()).or_default();
        let receipt = inbox.handle_claim(claim, UnixMs(post.at));
        inbox.drain_changes().for_each(drop);
        inbox.drain_transitions().for_each(drop);
        self.aliases_claimed.insert(alias);
        if matches!(receipt, Receipt::Accepted { .. }) {
            self.meaning.insert(id, meaning);
        }
        let line = format!(
            "webhook {} #{} {status}{}: {receipt:?}",
            self.sessions[post.session].id,
            post.transition,
            if post.resend { " (resend)" } else { "" }
        );
        self.log(line);
    }

    /// Didit's answer to a list request, from the sessions as they are now.
    fn list(&mut self, path: &str) -> (u16, String, Option<String>) {
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
                let created = s.created_us / 1_000_000;
                s.kind == kind && created >= from && created <= to && s.created_us / 1_000 <= now
            })
            .collect();
        rows.sort_by_key(|s| std::cmp::Reverse(s.created_us));
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
                to_rfc3339_micros(UnixMicros(session.created_us)),
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
        (200, body, None)
    }

    fn decision(&mut self, path: &str) -> (u16, String, Option<String>) {
        let id = path
            .strip_prefix("/session/")
            .and_then(|rest| rest.strip_suffix("/decision/"))
            .expect("a decision path");
        let now = self.now;
        let Some(index) = self.sessions.iter().position(|s| s.id == id) else {
            return (404, "{\"detail\":\"Not found.\"}".into(), None);
        };
        if let Some((at, _)) = self.erased.get(&index).filter(|(_, done)| *done <= now) {
            panic!(
                "the decision of {id}, erased at {}, was fetched",
                at - START
            );
        }
        let session = &self.sessions[index];
        let status = session.status_at(now).unwrap_or("Not Started");
        if let Some(transition) = session.transition_at(now) {
            self.last_read.insert(index, transition);
        }
        match session.poisoned(now) {
            Some(Poison::ServerError) => (500, String::new(), None),
            Some(Poison::NoAnswer) => (0, String::new(), None),
            Some(Poison::Forbidden) => (403, "{\"detail\":\"scope\"}".into(), None),
            Some(Poison::NotFound) => (404, "{\"detail\":\"Not found.\"}".into(), None),
            Some(Poison::TooLarge) => (1, String::new(), None),
            Some(Poison::Garbage) => (200, "{\"session_id\":".into(), None),
            _ => (
                200,
                format!(
                    r#"{{"session_id":"{id}","status":"{status}","vendor_data":"v","id_verifications":[{{"node_id":"n","status":"{status}"}}]}}"#
                ),
                None,
            ),
        }
    }

    /// One API request: a global fault, or Didit's answer.
    fn api(&mut self, path: &str) -> (u16, String, Option<String>) {
        self.api_requests += 1;
        if self.faults && self.rng.chance_per_mille(60) {
            return match self.rng.below(5) {
                0 => (503, String::new(), None),
                1 => (429, String::new(), Some(format!("{}", self.rng.below(200)))),
                2 => (
                    429,
                    String::new(),
                    Some(http_date(self.now / SECOND + self.rng.below(300) as i64)),
                ),
                3 => (200, "<html>maintenance</html>".into(), None),
                _ => (0, String::new(), None),
            };
        }
        if path.starts_with("/sessions/") {
            self.list(path)
        } else {
            self.decision(path)
        }
    }

    // --- the edge's side ------------------------------------------------------------------

    /// Each inbox's alarm runs, through production's conductor ([`run::Run`]): the
    /// consumer's one origin takes (or fails) every copy that is due.
    fn deliver_due(&mut self) {
        let (retry_schedule, retention) = self.policy();
        let settings = DeliveryConfig {
            origins: parse_origins(&format!(
                r#"[{{"name":"origin","url":"https://origin.example/","consumer":"{CONSUMER}"}}]"#
            ))
            .expect("valid"),
            signing_secrets: SigningSecrets::parse(
                "whsec_c2ltLW9yaWdpbi1zZWNyZXQtMzItYnl0ZXMtbG9uZyE=",
            )
            .expect("key"),
            origin_signing_secrets: Vec::new(),
            risk_rules: RiskRules::default(),
            retry_schedule,
            retention,
            after_dead_letter: AfterDeadLetter::Hold,
            subrequest_limit: 1_000,
        };
        let now = UnixMs(self.now);
        let up = !self.faults || self.rng.chance(85);
        let names: Vec<String> = self.inboxes.keys().cloned().collect();
        for name in names {
            let mut handed_over = true;
            while handed_over {
                let Begin::Run(mut run) = run::begin(Some(&settings), false, now, self.rng.next())
                else {
                    unreachable!("the settings are given");
                };
                handed_over = loop {
                    let inbox = self.inboxes.get_mut(&name).expect("inbox");
                    let step = run.poll(inbox, now);
                    let handled = match step {
                        run::Step::ReadBody(seq) => {
                            panic!("{seq:?}: every claim here is classified")
                        }
                        run::Step::ReadHealth { .. } => run.handle_health(&BTreeMap::new(), 0),
                        run::Step::ReadPayload(_) => run.handle_payload(Some("{}".into()), now),
                        run::Step::Post { id, .. } => {
                            let answer = if up {
                                self.received_by_consumer(&id);
                                AttemptResult::Status(204)
                            } else {
                                AttemptResult::Status(503)
                            };
                            run.handle_answer(answer, None, now)
                        }
                        run::Step::ReportHealth(_) | run::Step::Publish(_) => Ok(()),
                        run::Step::PushIndex { .. } => run.handle_index_pushed(inbox, true, now),
                        run::Step::Done(finished) => break finished.handed_over.is_some(),
                    };
                    handled.expect("the run asked for it");
                    let inbox = self.inboxes.get_mut(&name).expect("inbox");
                    inbox.drain_changes().for_each(drop);
                    inbox.drain_transitions().for_each(drop);
                };
                let inbox = self.inboxes.get_mut(&name).expect("inbox");
                inbox.drain_changes().for_each(drop);
                inbox.drain_transitions().for_each(drop);
            }
        }
    }

    /// The consumer got `id`: each transition once, in Didit's order, nothing erased back.
    fn received_by_consumer(&mut self, id: &str) {
        let meaning = *self
            .meaning
            .get(id)
            .unwrap_or_else(|| panic!("{id} has a meaning"));
        let session = &self.sessions[meaning.session];
        let received = self.received.entry(meaning.session).or_default();
        assert!(
            received.iter().all(|(other, _)| other != id),
            "{id} reached the consumer twice"
        );
        let repeats = received
            .iter()
            .any(|(_, m)| !m.resend_of_unknown && m.transition >= meaning.transition);
        let owed = self.heals_owed.entry(meaning.session).or_default();
        // After a resend of an unknown webhook left the consumer at an older status, the
        // current one may come again once (from the next recheck, or its own resend).
        let heal = meaning.current && repeats && *owed > 0;
        if heal {
            *owed -= 1;
        }
        if meaning.resend_of_unknown {
            *owed += 1;
        } else if !heal {
            for (other, earlier) in received.iter().filter(|(_, m)| !m.resend_of_unknown) {
                assert_ne!(
                    earlier.transition, meaning.transition,
                    "transition #{} of {} reached the consumer as {other} and as {id}",
                    meaning.transition, session.id
                );
                assert!(
                    earlier.transition < meaning.transition,
                    "{} got #{} ({id}) after the later #{} ({other})",
                    session.id,
                    meaning.transition,
                    earlier.transition
                );
            }
        }
        received.push((id.to_string(), meaning));
        self.deliveries += 1;
        let line = format!("consumer got {} #{} ({id})", session.id, meaning.transition);
        self.log(line);
    }

    fn retention(&mut self) {
        let (schedule, retention) = self.policy();
        let policy = InboxPolicy {
            retry_schedule: &schedule,
            retention,
            after_dead_letter: AfterDeadLetter::Hold,
        };
        for inbox in self.inboxes.values_mut() {
            inbox.handle_timeout(&policy, UnixMs(self.now));
            inbox.drain_changes().for_each(drop);
            inbox.drain_transitions().for_each(drop);
        }
    }

    /// An operator erases a session: its inbox now, the reconciler a moment later.
    fn erase(&mut self, session: usize) {
        let name = self.sessions[session].inbox();
        let inbox = self.inboxes.entry(name).or_default();
        inbox.handle_erase(UnixMs(self.now));
        inbox.drain_changes().for_each(drop);
        inbox.drain_transitions().for_each(drop);
        let forget_at = self.now + 1 + self.rng.below(2_000) as i64;
        self.erased.entry(session).or_insert((self.now, forget_at));
        self.pending_forgets.push((forget_at, session));
        let line = format!("erasure of {} began", self.sessions[session].id);
        self.log(line);
    }

    /// The erasure's second half: the reconciler forgets the session, and a run under way
    /// hears of it.
    fn forget(&mut self, session: usize) {
        let subject = self.sessions[session].subject();
        let key = session_erasure_key(self.sessions[session].kind, &self.sessions[session].id);
        let changes: Vec<Change> = erasure(&subject, UnixSecs(self.now / SECOND))
            .into_iter()
            .flatten()
            .collect();
        for change in changes {
            self.store(change);
        }
        if let Some(active) = self.active.as_mut() {
            active.run.handle_erased(&key);
        }
        let line = format!("erasure of {} complete", self.sessions[session].id);
        self.log(line);
    }

    fn store(&mut self, change: Change) {
        match change {
            Change::Remember {
                session_id,
                created_at,
                seen,
            } => {
                if let Some((index, _)) = self
                    .sessions
                    .iter()
                    .enumerate()
                    .find(|(_, s)| s.id == session_id)
                {
                    if let Some((_, done)) = self.erased.get(&index) {
                        assert!(
                            *done > self.now,
                            "{session_id} remembered after its erasure"
                        );
                    }
                }
                self.seen.insert(session_id, (created_at, seen));
            }
            Change::Forget { session_id } => {
                self.seen.remove(&session_id);
            }
            Change::ForgetCreatedBefore(at) => self.seen.retain(|_, (created, _)| *created >= at),
            Change::MarkErased { key, at } => {
                self.marks.insert(key, at);
            }
            Change::ForgetErasedBefore(at) => self.marks.retain(|_, marked| *marked >= at),
        }
    }

    fn change_settings(&mut self) {
        self.settings = random_settings(&mut self.rng);
        let line = format!("settings now {:?}", self.settings);
        self.log(line);
    }

    // --- the reconciler ---------------------------------------------------------------------

    /// The cron or the alarm: starts a run when one is due. Beside a run under way, the
    /// stored lease must refuse it.
    fn tick(&mut self) {
        let now = UnixMs(self.now);
        if self.active.is_some() {
            assert!(
                matches!(
                    begin(self.state.clone(), self.settings, now),
                    Err(NotNow::Busy(_))
                ),
                "a second run would start beside a running one"
            );
            return;
        }
        let mut run = match begin(self.state.clone(), self.settings, now) {
            Ok(run) => run,
            Err(_) => return,
        };
        self.runs += 1;
        self.switched_on = run.state().switched_on();
        // The lease is stored before the first await.
        self.state = run.state().clone();
        let step = run.poll(now);
        self.start_step(run, step);
    }

    /// Stores what the run changed and its state, a crash possible between any two writes,
    /// then sends the step's IO on its way (or finishes the run).
    fn start_step(&mut self, mut run: Run, step: Step) {
        let changes: Vec<Change> = run.drain_changes().collect();
        for change in changes {
            if self.faults && self.rng.chance_per_mille(3) {
                self.crash("between its changes");
                return;
            }
            self.store(change);
        }
        if self.faults && self.rng.chance_per_mille(3) {
            self.crash("between its changes and its state");
            return;
        }
        self.state = run.state().clone();
        if let Some(until) = self.state.lease_until {
            assert!(
                self.now / SECOND <= until.0,
                "a run stored a step past its lease ({} > {})",
                self.now / SECOND,
                until.0
            );
        }
        if step == Step::Done {
            let (state, next) = run.finish(UnixMs(self.now));
            self.next_alarm = Some(next.0 * SECOND);
            let ended = state.last_run.as_ref().map(|r| r.ended);
            self.state = state;
            self.active = None;
            let line = format!("run ended {ended:?}");
            self.log(line);
            return;
        }
        match &step {
            Step::AskInbox { inbox, status, .. } => self.log(format!("ask {inbox} {status}")),
            Step::FetchDecision { path } => self.log(format!("fetch {path}")),
            Step::List { path } => self.log(format!("list {path}")),
            _ => {}
        }
        let (effect, answer) = self.durations(&step);
        let mut in_flight = InFlight {
            step,
            effect_at: self.now + effect,
            answer_at: self.now + answer,
            outcome: None,
        };
        // Requests to Didit read its state when they are sent; storage answers at once.
        match &in_flight.step {
            Step::List { path } | Step::FetchDecision { path } => {
                let path = path.clone();
                let (status, body, retry_after) = self.api(&path);
                in_flight.outcome = Some(Outcome_::Api(status, body, retry_after));
                in_flight.effect_at = self.now;
            }
            Step::Recall {
                session_ids,
                erasure_keys,
            } => {
                let seen = session_ids
                    .iter()
                    .filter_map(|id| {
                        self.seen
                            .get(id)
                            .map(|(_, seen)| (id.clone(), seen.clone()))
                    })
                    .collect();
                let marked = erasure_keys
                    .iter()
                    .filter(|key| self.marks.contains_key(*key))
                    .cloned()
                    .collect();
                in_flight.outcome = Some(Outcome_::Recalled(seen, marked));
                in_flight.effect_at = self.now;
                in_flight.answer_at = self.now;
            }
            _ => {}
        }
        self.active = Some(ActiveRun {
            run,
            in_flight: Some(in_flight),
        });
    }

    /// How long a step takes to reach its target and to come back.
    fn durations(&mut self, step: &Step) -> (i64, i64) {
        let timeout = STEP_TIMEOUT_SECS * SECOND;
        match step {
            Step::List { .. } | Step::FetchDecision { .. } => {
                let slow = self.rng.chance(10);
                let answer = if slow {
                    timeout / 2 + self.rng.below((timeout / 2) as u64) as i64
                } else {
                    50 + self.rng.below(800) as i64
                };
                (0, answer)
            }
            Step::Recall { .. } => (0, 0),
            _ => {
                let longest = if self.rng.chance(5) { 10_000 } else { 300 };
                let answer = 5 + self.rng.below(longest) as i64;
                (answer / 2, answer)
            }
        }
    }

    fn crash(&mut self, when: &str) {
        self.crashes += 1;
        self.active = None;
        let line = format!("reconciler crashed {when}");
        self.log(line);
    }

    /// The IO of the step in flight reaches its inbox (or the alert outbox) now.
    fn take_effect(&mut self) {
        let Some(mut active) = self.active.take() else {
            return;
        };
        let Some(in_flight) = active.in_flight.as_mut() else {
            self.active = Some(active);
            return;
        };
        let outcome = match &in_flight.step {
            Step::AskInbox {
                inbox,
                webhook_type,
                status,
            } => {
                let broken = self.poisoned_inbox(inbox) == Some(Poison::InboxBroken);
                if broken || (self.faults && self.rng.chance_per_mille(20)) {
                    Outcome_::Knowledge(Err(()))
                } else {
                    let knowledge = self
                        .inboxes
                        .entry(inbox.clone())
                        .or_default()
                        .knows_transition(webhook_type, status, UnixSecs(self.now / SECOND));
                    Outcome_::Knowledge(Ok(knowledge))
                }
            }
            Step::Inject { body } => Outcome_::Injected(self.inject(body)),
            Step::Alert { alert } => {
                if self.faults && self.rng.chance_per_mille(100) {
                    Outcome_::Alerted(Err(()))
                } else {
                    let event: serde_json::Value =
                        serde_json::from_str(&alert.to_cloud_event()).expect("json");
                    let gap = event["data"]["gap"].as_str().expect("gap").to_string();
                    self.alerted.insert(gap);
                    Outcome_::Alerted(Ok(()))
                }
            }
            _ => {
                self.active = Some(active);
                return;
            }
        };
        if let Some(in_flight) = active.in_flight.as_mut() {
            in_flight.outcome = Some(outcome);
        }
        self.active = Some(active);
    }

    fn poisoned_inbox(&self, inbox: &str) -> Option<Poison> {
        self.sessions
            .iter()
            .find(|s| s.inbox() == inbox)
            .and_then(|s| s.poisoned(self.now))
    }

    /// Names, claims and (in the inbox) stores an event reconciliation wrote.
    fn inject(&mut self, body: &str) -> Result<Injected, InjectFailure> {
        let identified = Identified::from_api(body.as_bytes(), self.now / SECOND)
            .expect("a webhook the core wrote names itself");
        let index = self
            .sessions
            .iter()
            .position(|s| s.inbox() == identified.inbox())
            .expect("a known session");
        if self.poisoned_inbox(&identified.inbox()) == Some(Poison::InboxBroken)
            || (self.faults && self.rng.chance_per_mille(20))
        {
            return Err(InjectFailure::InboxUnreachable);
        }
        let session = &self.sessions[index];
        let status = identified.status.as_deref().expect("a status").to_string();
        assert!(is_result_status(&status), "injected {status}, not a result");
        assert!(
            self.switched_on
                .is_some_and(|on| UnixMicros(session.created_us) >= on),
            "injected {}, created before reconciliation was switched on",
            session.id
        );
        // The event stands for the transition Didit had reached when it was read.
        let transition = *self.last_read.get(&index).expect("its decision was read");
        assert_eq!(session.history[transition].1, status);
        let claim = Claim::of(&identified, content(session, "api"), Source::Api);
        assert_eq!(
            claim.alias, None,
            "an event written from the API has no event_id"
        );
        let id = claim.id.clone();
        let line = format!("inject {} {status} (#{transition})", session.id);
        let inbox = self.inboxes.entry(identified.inbox()).or_default();
        let receipt = inbox.handle_claim(claim, UnixMs(self.now));
        inbox.drain_changes().for_each(drop);
        inbox.drain_transitions().for_each(drop);
        self.log(format!("{line}: {receipt:?}"));
        if let Some((at, _)) = self.erased.get(&index) {
            assert!(
                matches!(receipt, Receipt::Erased),
                "an event about {}, erased at {}, was taken from the API",
                self.sessions[index].id,
                at - START
            );
        }
        Ok(match receipt {
            Receipt::Accepted { .. } => {
                self.injected += 1;
                self.meaning.insert(
                    id,
                    Meaning {
                        session: index,
                        transition,
                        resend_of_unknown: false,
                        current: true,
                    },
                );
                Injected::Accepted
            }
            Receipt::Duplicate { .. } => Injected::Duplicate,
            Receipt::Erased => Injected::Erased,
        })
    }

    /// The answer of the step in flight is back with the run.
    fn answer(&mut self) {
        let Some(mut active) = self.active.take() else {
            return;
        };
        let Some(in_flight) = active.in_flight.take() else {
            return;
        };
        let now = UnixMs(self.now);
        let run = &mut active.run;
        let outcome = in_flight
            .outcome
            .expect("the IO took effect before its answer");
        match (in_flight.step, outcome) {
            (Step::List { .. }, Outcome_::Api(status, body, retry_after)) => {
                run.handle_page(answer(status, &body, retry_after.as_deref()), now);
            }
            (Step::FetchDecision { .. }, Outcome_::Api(status, body, retry_after)) => {
                run.handle_decision(answer(status, &body, retry_after.as_deref()), now);
            }
            (Step::Recall { .. }, Outcome_::Recalled(seen, marked)) => {
                if self.faults && self.rng.chance_per_mille(5) {
                    run.handle_storage_failure("storage failed".into());
                } else {
                    run.handle_recalled(seen, marked);
                }
            }
            (Step::AskInbox { .. }, Outcome_::Knowledge(knowledge)) => {
                run.handle_inbox(knowledge, now);
            }
            (Step::Inject { .. }, Outcome_::Injected(injected)) => {
                // The answer may be lost on its way back.
                let injected = if self.faults && self.rng.chance_per_mille(20) {
                    Err(InjectFailure::InboxUnreachable)
                } else {
                    injected
                };
                run.handle_injected(injected, now);
            }
            (Step::Alert { .. }, Outcome_::Alerted(queued)) => run.handle_alerted(queued, now),
            (step, _) => panic!("{step:?} answered with another step's outcome"),
        }
        let step = active.run.poll(now);
        self.start_step(active.run, step);
    }

    // --- the loop and the checks -----------------------------------------------------------

    /// The next thing to happen, and when.
    fn next_event(&self) -> (i64, Event) {
        let mut next = (self.next_cron, Event::Cron);
        let mut consider = |at: i64, event: Event| {
            if at < next.0 {
                next = (at, event);
            }
        };
        consider(self.next_delivery, Event::Delivery);
        consider(self.next_retention, Event::Retention);
        consider(self.next_settings, Event::Settings);
        if let Some(post) = self.posts.first() {
            consider(post.at, Event::Post);
        }
        if let Some((at, _)) = self.erasures.first() {
            consider(*at, Event::Erasure);
        }
        if let Some((at, _)) = self.pending_forgets.iter().min() {
            consider(*at, Event::Forget);
        }
        if let Some(in_flight) = self.active.as_ref().and_then(|a| a.in_flight.as_ref()) {
            if in_flight.outcome.is_none() {
                consider(in_flight.effect_at, Event::Effect);
            } else {
                consider(in_flight.answer_at, Event::Answer);
            }
        }
        if let Some(at) = self.next_alarm {
            consider(at, Event::Alarm);
        }
        if let Some(at) = self
            .state
            .lease_until
            .filter(|at| self.active.is_none() && at.0 * SECOND > self.now)
        {
            // The alarm a run that died left behind (a `Busy` answer sets it).
            consider(at.0 * SECOND, Event::Alarm);
        }
        next
    }

    fn step(&mut self) -> bool {
        let (at, event) = self.next_event();
        if at >= self.end {
            return false;
        }
        self.now = self.now.max(at);
        if self.now >= self.quiet_from {
            self.faults = false;
        }
        match event {
            Event::Cron => {
                self.next_cron = self.now + 60 * SECOND;
                if self.faults && self.rng.chance_per_mille(20) {
                    // The alarm, too, at the same moment.
                    self.tick();
                }
                self.tick();
            }
            Event::Alarm => {
                self.next_alarm = None;
                self.tick();
            }
            Event::Delivery => {
                self.next_delivery = self.now + (20 + self.rng.below(40) as i64) * SECOND;
                self.deliver_due();
            }
            Event::Retention => {
                self.next_retention = self.now + 600 * SECOND;
                self.retention();
            }
            Event::Settings => {
                self.next_settings = self.now + (2 + self.rng.below(6) as i64) * 3_600 * SECOND;
                if self.faults {
                    self.change_settings();
                }
            }
            Event::Post => {
                let post = self.posts.remove(0);
                self.webhook(post);
            }
            Event::Erasure => {
                // An operator erases a subject that exists.
                let (_, pick) = self.erasures.remove(0);
                let created: Vec<usize> = (0..self.sessions.len())
                    .filter(|index| self.sessions[*index].created_us / 1_000 <= self.now)
                    .collect();
                if !created.is_empty() {
                    self.erase(created[pick % created.len()]);
                }
            }
            Event::Forget => {
                let index = self
                    .pending_forgets
                    .iter()
                    .enumerate()
                    .min_by_key(|(_, (at, _))| *at)
                    .map(|(index, _)| index)
                    .expect("a forget");
                let (_, session) = self.pending_forgets.remove(index);
                self.forget(session);
            }
            Event::Effect => self.take_effect(),
            Event::Answer => {
                if let Some(until) = self.state.lease_until {
                    assert!(
                        self.now / SECOND <= until.0,
                        "an answer came back after the run's lease ended"
                    );
                }
                self.answer();
            }
        }
        self.check_erased();
        true
    }

    /// Nothing about an erased session stays in the reconciler's memory.
    fn check_erased(&self) {
        for (index, (_, done)) in &self.erased {
            if *done <= self.now {
                assert!(
                    !self.seen.contains_key(&self.sessions[*index].id),
                    "{} is still remembered after its erasure",
                    self.sessions[*index].id
                );
            }
        }
    }

    /// At the end: every session reconciliation could see ends, at the consumer, with the
    /// status Didit reports; a poisoned one instead may have been given up on, with an alert.
    fn check_found(&self) {
        let on = self.switched_on.expect("reconciliation ran");
        // What the last sweeps could reach: the lookback, and what the inboxes still remember.
        let now = UnixSecs(self.now / SECOND);
        let horizon = (now.0 - self.settings.lookback_secs as i64)
            .max(self.state.oldest_remembered(&self.settings, now).0)
            * SECOND;
        for (index, session) in self.sessions.iter().enumerate() {
            if UnixMicros(session.created_us) < on
                || session.created_us / 1_000 < horizon
                || self.erased.contains_key(&index)
            {
                continue;
            }
            let Some(status) = session.status_at(self.now) else {
                continue;
            };
            if !is_result_status(status) {
                continue;
            }
            // The status the consumer holds: the last it received.
            let latest = self
                .received
                .get(&index)
                .and_then(|received| received.last())
                .map(|(_, m)| session.history[m.transition].1);
            if latest.map(status_code) == Some(status_code(status)) {
                continue;
            }
            // A poisoned session may be given up on (alerted) or still waiting for its next try.
            let gave_up = self.alerted.contains(&gap_reference(&session.id));
            let set_aside = self
                .seen
                .get(&session.id)
                .is_some_and(|(_, seen)| seen.set_aside.is_some());
            assert!(
                session.poison.is_some() && (gave_up || set_aside),
                "session {} is {status} at Didit; the consumer's latest is {latest:?} (poison {:?}, alerted {gave_up}, set aside {set_aside})",
                session.id,
                session.poison
            );
        }
    }
}

#[derive(Clone, Copy, Debug)]
enum Event {
    Cron,
    Alarm,
    Delivery,
    Retention,
    Settings,
    Post,
    Erasure,
    Forget,
    Effect,
    Answer,
}

/// Settings a valid configuration allows: the inboxes remember at least the lookback, the
/// settle, the recheck and the freshness window together (the configuration refuses less).
fn random_settings(rng: &mut Rng) -> Settings {
    let lookback_secs = [6 * 3_600, 86_400][rng.below(2) as usize];
    let settle_secs = [0, 120, 600][rng.below(3) as usize];
    let recheck_secs = [600, 3_600][rng.below(2) as usize];
    let needed = lookback_secs + settle_secs + recheck_secs + TOLERANCE_SECS;
    Settings {
        lookback_secs,
        interval_secs: [60, 300][rng.below(2) as usize],
        settle_secs,
        recheck_secs,
        requests_per_run: [7, 9, 40, 200][rng.below(4) as usize],
        memory_secs: needed + rng.below(2) * 86_400,
        publishes_per_event: [0, 2][rng.below(2) as usize],
        alerts: true,
        lease_secs: LEASE_SECS,
        gap_retry: GapRetry::default(),
    }
}

fn answer<'a>(status: u16, body: &'a str, retry_after: Option<&'a str>) -> Answer<'a> {
    match status {
        0 => Answer::Unreachable,
        1 => Answer::TooLarge,
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

fn run(seed: u64, hours: i64) -> Result<World, String> {
    let mut world = World::new(seed, hours);
    let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        while world.step() {}
        world.check_found();
    }));
    match outcome {
        Ok(()) => Ok(world),
        Err(panic) => {
            let message = panic_message(panic.as_ref());
            let mut report = format!(
                "SIM_SEED={seed} failed at t+{}: {message}\n",
                (world.now - START) / SECOND
            );
            for line in &world.trace {
                let _ = writeln!(report, "  {line}");
            }
            Err(report)
        }
    }
}

#[test]
fn every_missing_result_is_found_once_in_order_and_nothing_erased_returns() {
    let hours = env_number("SIM_HOURS", 30) as i64;
    let seeds = seeds(6);
    let count = seeds.len();
    let (mut runs, mut crashes, mut injected, mut requests, mut sessions, mut received) =
        (0, 0, 0, 0, 0, 0);
    let (mut gave_up, mut erased) = (0, 0);
    for seed in seeds {
        match run(seed, hours) {
            Ok(world) => {
                runs += world.runs;
                crashes += world.crashes;
                injected += world.injected;
                requests += world.api_requests;
                sessions += world.sessions.len();
                received += world.deliveries;
                gave_up += world.alerted.len();
                erased += world.erased.len();
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
         {requests} API requests, {injected} events injected, {received} deliveries checked, \
         {gave_up} gaps given up (alerted), {erased} erasures, {crashes} crashes; every invariant held"
    );
}
