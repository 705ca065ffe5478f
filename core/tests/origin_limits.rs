//! The alarm run's conductor with a limited origin, step by step: what it asks of the gate,
//! what a turn, a wait or a silent gate make of the copy, and that an unlimited origin's run
//! has no step more than before (what it pays for limits: nothing).

#[path = "support/fixtures.rs"]
mod fixtures;

use std::collections::BTreeMap;

use fixtures::{delivery_settings, low_risk_claim};

use didit_edge_core::attempt::AttemptResult;
use didit_edge_core::config::DeliveryConfig;
use didit_edge_core::delivery::CopyState;
use didit_edge_core::inbox::run::{self, Begin, Step};
use didit_edge_core::inbox::{Change, Inbox};
use didit_edge_core::origin_gate::{Answer, Lease, GATE_RETRY_MS, GRANT_FRESH_MS};
use didit_edge_core::time::UnixMs;

const NOW: UnixMs = UnixMs(1_800_000_000_000);

fn settings(origins: &str) -> DeliveryConfig {
    delivery_settings(origins, "5,30")
}

fn inbox_with_one_event() -> Inbox {
    let mut inbox = Inbox::new();
    inbox.handle_claim(low_risk_claim(1, NOW), NOW);
    inbox.drain_changes().for_each(drop);
    inbox
}

/// What a gate does when asked, in order.
#[derive(Clone, Copy)]
enum Gate {
    Grants,
    GrantsLate,
    Waits(i64),
    Silent,
}

/// Drives one run, the gate answering as `gates` says and origins 204; returns the step kinds
/// in order and the copy's state after.
fn drive(origins: &str, gates: &[Gate]) -> (Vec<&'static str>, CopyState) {
    let settings = settings(origins);
    let mut inbox = inbox_with_one_event();
    let Begin::Run(mut run) = run::begin(Some(&settings), false, NOW, 7) else {
        panic!("settings given");
    };
    let mut gates = gates.iter().copied();
    let mut steps = Vec::new();
    let mut now = NOW;
    let mut copy = None;
    loop {
        let step = run.poll(&mut inbox, now);
        for change in inbox.drain_changes() {
            if let Change::PutCopy { copy: written, .. } = change {
                copy = Some(written.state);
            }
        }
        match step {
            Step::ReadHealth { .. } => {
                steps.push("health");
                run.handle_health(&BTreeMap::new(), 0).expect("asked");
            }
            Step::ReadPayload(_) => {
                steps.push("payload");
                run.handle_payload(Some("{}".into()), now).expect("asked");
            }
            Step::AskGate { .. } => {
                steps.push("ask");
                let answer = match gates.next().expect("a gate answer") {
                    Gate::Grants => Some(grant(now)),
                    Gate::GrantsLate => {
                        let granted = grant(now);
                        now = now.plus_ms(GRANT_FRESH_MS + 1);
                        Some(granted)
                    }
                    Gate::Waits(ms) => Some(Answer::Wait(NOW.plus_ms(ms as u64))),
                    Gate::Silent => None,
                };
                run.handle_gate(answer, now).expect("asked");
            }
            Step::Post { .. } => {
                steps.push("post");
                run.handle_answer(AttemptResult::Status(204), None, now)
                    .expect("asked");
            }
            Step::ReleaseGate { .. } => steps.push("release"),
            Step::ReportHealth(_) => steps.push("report"),
            Step::Done(_) => break,
            other => panic!("unexpected {other:?}"),
        }
    }
    (steps, copy.expect("the copy was written"))
}

fn grant(now: UnixMs) -> Answer {
    Answer::Go(Lease {
        id: 9,
        expires_at: now.plus_ms(12_000),
    })
}

const UNLIMITED: &str = r#"[{"name":"a","url":"https://a.example/"}]"#;
const LIMITED: &str = r#"[{"name":"a","url":"https://a.example/","max_concurrency":1}]"#;
const LIMITED_THEN_FREE: &str = r#"[{"name":"a","url":"https://a.example/","max_per_second":1,"priority":0},
    {"name":"b","url":"https://b.example/","priority":1}]"#;

#[test]
fn an_unlimited_origin_never_asks_a_gate() {
    let (steps, copy) = drive(UNLIMITED, &[]);
    assert_eq!(steps, ["health", "payload", "post"]);
    assert!(matches!(copy, CopyState::Delivered { .. }));
}

#[test]
fn a_granted_turn_is_used_then_released() {
    let (steps, copy) = drive(LIMITED, &[Gate::Grants]);
    assert_eq!(steps, ["health", "payload", "ask", "post", "release"]);
    assert!(matches!(copy, CopyState::Delivered { .. }));
}

#[test]
fn a_wait_defers_the_copy_to_its_turn_without_spending_a_retry() {
    let (steps, copy) = drive(LIMITED, &[Gate::Waits(3_000)]);
    assert_eq!(steps, ["health", "payload", "ask"]);
    assert_eq!(
        copy,
        CopyState::Pending {
            failures: 0,
            next_attempt_at: NOW.plus_ms(3_000)
        }
    );
}

#[test]
fn a_silent_gate_is_a_short_wait_never_a_send() {
    let (steps, copy) = drive(LIMITED, &[Gate::Silent]);
    assert_eq!(steps, ["health", "payload", "ask"]);
    assert_eq!(
        copy,
        CopyState::Pending {
            failures: 0,
            next_attempt_at: NOW.plus_ms(GATE_RETRY_MS)
        }
    );
}

#[test]
fn a_grant_that_came_too_late_is_released_unused() {
    let (steps, copy) = drive(LIMITED, &[Gate::GrantsLate]);
    assert_eq!(steps, ["health", "payload", "ask", "release"]);
    assert!(matches!(copy, CopyState::Pending { failures: 0, .. }));
}

#[test]
fn a_busy_origin_fails_over_to_the_next() {
    let (steps, copy) = drive(LIMITED_THEN_FREE, &[Gate::Waits(5_000)]);
    assert_eq!(steps, ["health", "payload", "ask", "post"]);
    assert!(matches!(copy, CopyState::Delivered { .. }));
}
