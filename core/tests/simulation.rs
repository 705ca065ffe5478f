//! The delivery state machines together, with simulated time and simulated origins: routing,
//! breakers, attempt plans and progress, driven the way the inbox alarm drives them (the
//! earliest-created undelivered event of each subject goes first, the next waits for it).

use std::collections::{BTreeMap, VecDeque};

use didit_edge_core::attempt::Plan;
use didit_edge_core::attempt::{AttemptResult, DeadReason};
use didit_edge_core::delivery::Progress;
use didit_edge_core::health::{Breaker, BreakerPolicy};
use didit_edge_core::origin::{parse_origins, Origin};
use didit_edge_core::retry::RetrySchedule;
use didit_edge_core::risk::Level;
use didit_edge_core::route::origins_for;
#[cfg(target_arch = "wasm32")]
use wasm_bindgen_test::wasm_bindgen_test as test;

const SECOND: i64 = 1_000;

fn origins() -> Vec<Origin> {
    parse_origins(
        r#"[{"name":"aws","url":"https://aws.example/","priority":0},
            {"name":"gcp","url":"https://gcp.example/","priority":1}]"#,
    )
    .expect("valid")
}

/// One subject's events, oldest first, with the head's progress.
struct Subject {
    queue: VecDeque<u32>,
    head: Option<Progress>,
}

/// What the origins saw and what became of the events.
#[derive(Default)]
struct Outcome {
    /// Event ids each origin accepted, in arrival order.
    accepted: BTreeMap<String, Vec<u32>>,
    /// Requests each origin got while it was down.
    sent_while_down: BTreeMap<String, u32>,
    /// Every attempt made (a plan run), for comparison.
    attempts: u32,
    dead: Vec<(u32, i64, DeadReason, u32)>,
}

/// Runs `subjects` × `per_subject` events, arriving one every 4 s round-robin over subjects,
/// against origins that are up or down as `is_up(origin, now)` says.
fn simulate(
    subjects: u32,
    per_subject: u32,
    schedule: &RetrySchedule,
    is_up: impl Fn(&str, i64) -> bool,
    until_ms: i64,
) -> Outcome {
    let origins = origins();
    let mut breakers: BTreeMap<String, Breaker> = BTreeMap::new();
    let mut subject_state: Vec<Subject> = (0..subjects)
        .map(|_| Subject {
            queue: VecDeque::new(),
            head: None,
        })
        .collect();
    let mut arrivals: VecDeque<(i64, u32, u32)> = (0..subjects * per_subject)
        .map(|n| (i64::from(n) * 4 * SECOND, n % subjects, n))
        .collect();
    let mut outcome = Outcome::default();
    let mut seed: u64 = 0x5EED;
    let mut now = 0;
    while now <= until_ms {
        while arrivals.front().is_some_and(|(at, _, _)| *at <= now) {
            let Some((_, subject, id)) = arrivals.pop_front() else {
                break;
            };
            subject_state[subject as usize].queue.push_back(id);
        }
        for subject in &mut subject_state {
            let Some(&id) = subject.queue.front() else {
                continue;
            };
            let progress = *subject.head.get_or_insert(Progress::new(now));
            let Progress::Pending {
                next_attempt_at_ms, ..
            } = progress
            else {
                continue;
            };
            if next_attempt_at_ms > now {
                continue;
            }
            seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1);
            let candidates = origins_for(&origins, "default", "status.updated", Level::Low, seed);
            let snapshot: BTreeMap<String, _> = breakers
                .iter()
                .map(|(name, breaker)| (name.clone(), breaker.state()))
                .collect();
            let mut plan = Plan::new(
                candidates,
                &[] as &[&str],
                |name| snapshot.get(name).copied(),
                now,
            );
            outcome.attempts += 1;
            while let Some(target) = plan.next_origin() {
                let up = is_up(&target.name, now);
                let result = if up {
                    outcome
                        .accepted
                        .entry(target.name.clone())
                        .or_default()
                        .push(id);
                    AttemptResult::Status(200)
                } else {
                    *outcome
                        .sent_while_down
                        .entry(target.name.clone())
                        .or_default() += 1;
                    AttemptResult::Status(503)
                };
                // What the Health object does with each report.
                let breaker = breakers
                    .entry(target.name.clone())
                    .or_insert_with(|| Breaker::new(BreakerPolicy::default()));
                let _ = breaker.admit(now);
                match result.health_signal() {
                    Some(true) => breaker.succeeded(),
                    Some(false) => breaker.failed(now, None),
                    None => {}
                }
                plan.record(target, result, now);
            }
            let (verdict, _log) = plan.finish();
            let after = progress.after_attempt(&verdict, now, schedule, seed);
            match after {
                Progress::Delivered { .. } => {
                    subject.queue.pop_front();
                    subject.head = None;
                }
                Progress::Dead { at_ms, reason } => {
                    let failures = match progress {
                        Progress::Pending { failures, .. } => failures,
                        _ => 0,
                    };
                    outcome.dead.push((id, at_ms, reason, failures));
                    // Held: nothing behind it moves until a replay.
                    subject.head = Some(after);
                }
                Progress::Pending { .. } => subject.head = Some(after),
            }
        }
        now += SECOND;
    }
    outcome
}

#[test]
fn flapping_clouds_lose_nothing_and_duplicate_nothing() {
    let (subjects, per_subject) = (10, 30);
    // aws is down 60–600 s and again 900–960 s; gcp flaps 200–260 s and both are down
    // together 1000–1300 s.
    let is_up = |origin: &str, now: i64| {
        let t = now / SECOND;
        match origin {
            "aws" => {
                !(60..600).contains(&t) && !(900..960).contains(&t) && !(1000..1300).contains(&t)
            }
            _ => !(200..260).contains(&t) && !(1000..1300).contains(&t),
        }
    };
    let schedule = RetrySchedule::parse("5,30,120,600").expect("valid");
    let outcome = simulate(subjects, per_subject, &schedule, is_up, 4_000 * SECOND);

    assert!(outcome.dead.is_empty(), "{:?}", outcome.dead);
    let mut all: Vec<u32> = outcome.accepted.values().flatten().copied().collect();
    all.sort_unstable();
    assert_eq!(
        all,
        (0..subjects * per_subject).collect::<Vec<_>>(),
        "every event exactly once"
    );
    // Traffic moved to gcp during aws's outage, and came back after.
    assert!(
        outcome.accepted["gcp"].len() > 50,
        "{:?}",
        outcome.accepted["gcp"].len()
    );
    assert!(
        outcome.accepted["aws"].len() > 100,
        "{}",
        outcome.accepted["aws"].len()
    );
    // The breaker kept a down origin from being hit on every attempt.
    let aws_down = outcome.sent_while_down["aws"];
    assert!(
        aws_down * 5 < outcome.attempts,
        "aws got {aws_down} requests while down, of {} attempts",
        outcome.attempts
    );
}

#[test]
fn an_outage_longer_than_the_schedule_makes_dead_letters_and_holds_what_follows() {
    let schedule = RetrySchedule::parse("10,20,40")
        .expect("valid")
        .with_jitter_percent(0);
    let outcome = simulate(2, 3, &schedule, |_, _| false, 3_600 * SECOND);
    assert!(outcome.accepted.is_empty());
    // Only each subject's head dies; the events behind it are held, never attempted.
    let dead_ids: Vec<u32> = outcome.dead.iter().map(|d| d.0).collect();
    assert_eq!(dead_ids, [0, 1]);
    for &(_, at_ms, reason, failures) in &outcome.dead {
        assert_eq!(reason, DeadReason::RetriesExhausted);
        assert_eq!(failures, 3, "the schedule's three retries were all used");
        // At least the schedule's span; more when breakers deferred an attempt (a deferral
        // does not count against the schedule).
        assert!(at_ms >= 70 * SECOND, "{at_ms}");
        assert!(at_ms < 600 * SECOND, "{at_ms}");
    }
}

#[test]
fn waiting_for_breakers_does_not_use_up_the_schedule() {
    let schedule = RetrySchedule::parse("1x3")
        .expect("valid")
        .with_jitter_percent(0);
    let outcome = simulate(1, 1, &schedule, |_, _| false, 600 * SECOND);
    // Attempts at 0, 1 and 2 s fail and open both breakers (3 failures, 10 s cool-down); the
    // attempt due at 3 s waits for them instead of failing, so the last retry is the probe at
    // 12 s, not a request that could never have been sent at 3 s.
    assert_eq!(
        outcome.dead,
        [(0, 12 * SECOND, DeadReason::RetriesExhausted, 3)]
    );
    assert_eq!(outcome.attempts, 5, "four sent, one deferred");
}
