use super::*;
use alloc::collections::BTreeMap;
use alloc::string::ToString;
use alloc::vec;
#[cfg(target_arch = "wasm32")]
use wasm_bindgen_test::wasm_bindgen_test as test;

fn origin(name: &str) -> Origin {
    crate::origin::parse_origins(&alloc::format!(
        r#"[{{"name":"{name}","url":"https://{name}.example/"}}]"#
    ))
    .expect("valid")
    .remove(0)
}

fn closed(_: &str) -> Option<BreakerState> {
    None
}

const NONE: &[&str] = &[];

/// Runs a plan against simulated origins answering `answers` in turn.
fn run(plan: &mut Plan<'_>, answers: &[(&str, AttemptResult)]) -> Vec<String> {
    let mut sent = Vec::new();
    let mut now = 1_000;
    while let Some(target) = plan.next_origin(now) {
        let result = answers
            .iter()
            .find(|(name, _)| *name == target.name)
            .map_or(AttemptResult::Network, |(_, r)| r.clone());
        sent.push(target.name.clone());
        now += 10;
        plan.record(target, result, now);
    }
    sent
}

#[test]
fn fails_over_in_order_until_one_takes_it() {
    let (a, b, c) = (origin("a"), origin("b"), origin("c"));
    let mut plan = Plan::new(vec![&a, &b, &c], NONE, closed, 1_000);
    let sent = run(
        &mut plan,
        &[
            ("a", AttemptResult::Timeout),
            ("b", AttemptResult::Status(204)),
            ("c", AttemptResult::Status(200)),
        ],
    );
    assert_eq!(sent, ["a", "b"], "c is not needed once b has it");
    let (verdict, log) = plan.finish();
    assert_eq!(verdict, Verdict::Delivered { origin: "b".into() });
    assert_eq!(
        log,
        [
            LogEntry {
                at_ms: 1_010,
                origin: Some("a".into()),
                status: None,
                error: Some("timeout"),
                location: None,
                latency_ms: Some(10),
            },
            LogEntry {
                at_ms: 1_020,
                origin: Some("b".into()),
                status: Some(204),
                error: None,
                location: None,
                latency_ms: Some(10),
            },
        ]
    );
}

#[test]
fn any_non_2xx_answer_is_a_failed_try_not_the_end() {
    let (a, b, c) = (origin("a"), origin("b"), origin("c"));
    let mut plan = Plan::new(vec![&a, &b, &c], NONE, closed, 1_000);
    let sent = run(
        &mut plan,
        &[
            ("a", AttemptResult::Status(401)),
            ("b", AttemptResult::Status(410)),
            ("c", AttemptResult::Status(503)),
        ],
    );
    assert_eq!(sent, ["a", "b", "c"]);
    let (verdict, log) = plan.finish();
    assert_eq!(verdict, Verdict::Failed, "the schedule goes on");
    let codes: Vec<_> = log.iter().map(|e| (e.status, e.error)).collect();
    assert_eq!(
        codes,
        [
            (Some(401), Some("rejected")),
            (Some(410), Some("rejected")),
            (Some(503), Some("server_error"))
        ]
    );
}

#[test]
fn a_redirect_is_a_failed_try_whose_log_names_where_it_pointed() {
    let a = origin("a");
    let mut plan = Plan::new(vec![&a], NONE, closed, 1_000);
    let redirect = AttemptResult::from_response(302, None, Some("/landing"));
    assert!(!redirect.is_delivered());
    run(&mut plan, &[("a", redirect)]);
    let (verdict, log) = plan.finish();
    assert_eq!(verdict, Verdict::Failed);
    assert_eq!(
        (log[0].status, log[0].error, log[0].location.as_deref()),
        (Some(302), Some("redirect"), Some("/landing"))
    );
    let long = "x".repeat(2 * MAX_LOGGED_LOCATION);
    let AttemptResult::Redirect { location, .. } =
        AttemptResult::from_response(301, None, Some(&long))
    else {
        panic!("a redirect");
    };
    assert_eq!(location.map(|l| l.len()), Some(MAX_LOGGED_LOCATION));
}

#[test]
fn origins_that_rejected_the_last_attempt_are_tried_last_not_skipped() {
    let (a, b) = (origin("a"), origin("b"));
    let mut plan = Plan::new(vec![&a, &b], &["a".to_string()], closed, 1_000);
    let sent = run(&mut plan, &[("b", AttemptResult::Status(400))]);
    assert_eq!(sent, ["b", "a"]);
    let mut plan = Plan::new(vec![&a, &b], &["a", "b"], closed, 1_000);
    let sent = run(&mut plan, &[("a", AttemptResult::Status(200))]);
    assert_eq!(
        sent,
        ["a"],
        "every origin rejected it: all are tried, in order"
    );
    assert_eq!(plan.finish().0, Verdict::Delivered { origin: "a".into() });
}

#[test]
fn an_abort_stops_the_attempt_and_gives_up() {
    let (a, b) = (origin("a"), origin("b"));
    let mut plan = Plan::new(vec![&a, &b], NONE, closed, 1_000);
    let sent = run(&mut plan, &[("a", AttemptResult::Aborted(422))]);
    assert_eq!(sent, ["a"], "b is not tried after an abort");
    assert_eq!(
        plan.finish().0,
        Verdict::GiveUp(DeadReason::AbortedByOrigin)
    );
}

#[test]
fn open_breakers_are_skipped_and_all_open_defers_to_the_first_reopening() {
    let (a, b, c) = (origin("a"), origin("b"), origin("c"));
    let open_until = |name: &str| {
        let until_ms = match name {
            "a" => 9_000,
            "b" => 5_000,
            _ => return None,
        };
        Some(BreakerState::Open {
            until_ms,
            cool_down_ms: 1_000,
        })
    };
    let mut plan = Plan::new(vec![&a, &b, &c], NONE, open_until, 1_000);
    assert_eq!(run(&mut plan, &[("c", AttemptResult::Status(200))]), ["c"]);

    let mut plan = Plan::new(vec![&a, &b], NONE, open_until, 1_000);
    assert_eq!(run(&mut plan, &[]), Vec::<String>::new());
    let (verdict, log) = plan.finish();
    assert_eq!(verdict, Verdict::Deferred { until_ms: 5_000 });
    assert!(log.is_empty(), "waiting is not an attempt: {log:?}");

    // Once a cool-down is over the origin is tried (the half-open probe).
    let mut plan = Plan::new(vec![&a, &b], NONE, open_until, 6_000);
    assert_eq!(run(&mut plan, &[("b", AttemptResult::Status(200))]), ["b"]);
}

#[test]
fn copies_deferred_to_a_reopening_come_back_spread_over_half_its_cool_down() {
    let a = origin("a");
    let open = |cool_down_ms: u64| {
        move |_: &str| {
            Some(BreakerState::Open {
                until_ms: 50_000,
                cool_down_ms,
            })
        }
    };
    let deferred_to = |cool_down_ms: u64, seed: u64| {
        let plan = Plan::new(vec![&a], NONE, open(cool_down_ms), 1_000).spread_reopening(seed);
        match plan.finish().0 {
            Verdict::Deferred { until_ms } => until_ms,
            other => panic!("{other:?}"),
        }
    };
    let times: Vec<i64> = (0..1_000u64)
        .map(|k| deferred_to(10_000, k.wrapping_mul(0x9E37_79B9_7F4A_7C15)))
        .collect();
    // Never before the reopening, never past half the cool-down after it, and spread: no
    // millisecond holds more than a few of a thousand copies.
    assert!(
        times.iter().all(|t| (50_000..=55_000).contains(t)),
        "{times:?}"
    );
    let mut per_ms = BTreeMap::new();
    for t in &times {
        *per_ms.entry(*t).or_insert(0) += 1;
    }
    assert!(per_ms.values().all(|n| *n <= 4), "{per_ms:?}");
    assert!(times.iter().min() < Some(&50_500) && times.iter().max() > Some(&54_500));
    // A long cool-down is spread over at most MAX_REOPENING_SPREAD_MS.
    let longest = (0..1_000u64)
        .map(|k| deferred_to(300_000, k.wrapping_mul(0x9E37_79B9_7F4A_7C15)))
        .max();
    assert!(longest <= Some(50_000 + MAX_REOPENING_SPREAD_MS as i64));
    // Only a breaker's deferral is spread: a busy gate's turn or a stop is kept exactly.
    let mut plan = Plan::new(vec![&a], NONE, closed, 1_000);
    plan.stop(1_500);
    assert_eq!(
        plan.spread_reopening(12_345).finish().0,
        Verdict::Deferred { until_ms: 1_500 }
    );
}

#[test]
fn the_cap_applies_after_cooling_origins_are_left_out() {
    let names = ["p0", "p1", "p2", "p3", "p4"];
    let origins: Vec<Origin> = names.iter().map(|n| origin(n)).collect();
    let refs: Vec<&Origin> = origins.iter().collect();
    let first_four_open = |name: &str| {
        (name != "p4").then_some(BreakerState::Open {
            until_ms: 9_000,
            cool_down_ms: 1_000,
        })
    };
    let mut plan = Plan::new(refs.clone(), NONE, first_four_open, 1_000);
    assert_eq!(
        run(&mut plan, &[("p4", AttemptResult::Status(200))]),
        ["p4"]
    );
    // Healthy but rejecting: the fifth is tried first next time, within the cap.
    let mut plan = Plan::new(refs.clone(), &names[..4], closed, 1_000);
    assert_eq!(
        run(&mut plan, &[("p4", AttemptResult::Status(200))]),
        ["p4"]
    );
    let plan = Plan::new(refs, NONE, closed, 1_000);
    assert_eq!(plan.remaining(), MAX_ORIGINS_PER_ATTEMPT);
}

#[test]
fn stopping_before_any_try_defers_without_a_failure() {
    let (a, b) = (origin("a"), origin("b"));
    let mut plan = Plan::new(vec![&a, &b], NONE, closed, 1_000);
    plan.stop(1_500);
    assert!(plan.next_origin(1_000).is_none());
    assert_eq!(
        plan.finish(),
        (Verdict::Deferred { until_ms: 1_500 }, vec![])
    );
    let mut plan = Plan::new(vec![&a, &b], NONE, closed, 1_000);
    let first = plan.next_origin(1_000).expect("a");
    plan.record(first, AttemptResult::Status(500), 1_010);
    plan.stop(1_020);
    assert!(plan.next_origin(1_000).is_none());
    assert_eq!(plan.finish().0, Verdict::Failed, "a did fail");
}

#[test]
fn a_lost_payload_fails_visibly() {
    let mut plan = Plan::without_payload(7);
    assert!(plan.next_origin(1_000).is_none());
    let (verdict, log) = plan.finish();
    assert_eq!(verdict, Verdict::Failed);
    assert_eq!(log[0].error, Some("no_payload"));
}

#[test]
fn no_origin_is_a_failure_so_a_configuration_fix_delivers_it() {
    let mut plan = Plan::new(Vec::new(), NONE, closed, 1_000);
    assert!(plan.next_origin(1_000).is_none());
    let (verdict, log) = plan.finish();
    assert_eq!(verdict, Verdict::Failed);
    assert_eq!(log[0].error, Some("no_origin"));
}

#[test]
fn abort_needs_the_header_and_a_non_2xx() {
    use AttemptResult::*;
    for (status, header, result) in [
        (500, Some("abort-message"), Aborted(500)),
        (400, Some("Abort-Message"), Aborted(400)),
        (429, Some("disable, abort-message"), Aborted(429)),
        (302, Some("abort-message"), Aborted(302)),
        (200, Some("abort-message"), Status(200)),
        (500, Some("disable"), Status(500)),
        (500, Some("abort-messages"), Status(500)),
        (500, None, Status(500)),
    ] {
        assert_eq!(AttemptResult::from_response(status, header, None), result);
    }
    assert_eq!(Aborted(500).health_signal(), None);
    assert!(!Aborted(400).is_rejection());
    assert!(!Aborted(400).is_delivered());
}

#[test]
fn error_codes_for_the_attempt_log() {
    use AttemptResult::*;
    for (result, code) in [
        (Status(204), None),
        (Status(503), Some("server_error")),
        (Status(408), Some("server_error")),
        (Status(429), Some("throttled")),
        (Status(404), Some("rejected")),
        (
            Redirect {
                status: 302,
                location: None,
            },
            Some("redirect"),
        ),
        (Status(102), Some("unexpected_status")),
        (Aborted(500), Some("aborted")),
        (Timeout, Some("timeout")),
        (Network, Some("network")),
    ] {
        assert_eq!(result.error_code(), code, "{result:?}");
    }
    assert_eq!(Timeout.status(), None);
    assert_eq!(Aborted(418).status(), Some(418));
}

#[test]
fn only_trouble_counts_against_an_origins_health() {
    use AttemptResult::*;
    for (result, signal, rejection) in [
        (Status(204), Some(true), false),
        (Status(503), Some(false), false),
        (Status(429), Some(false), false),
        (Status(408), Some(false), false),
        (Timeout, Some(false), false),
        (Network, Some(false), false),
        (Status(400), None, true),
        (Status(401), None, true),
        (
            Redirect {
                status: 301,
                location: None,
            },
            None,
            true,
        ),
        (Aborted(503), None, false),
    ] {
        assert_eq!(result.health_signal(), signal, "{result:?}");
        assert_eq!(result.is_rejection(), rejection, "{result:?}");
    }
}

#[test]
fn only_2xx_delivers() {
    for (status, delivered) in [
        (199, false),
        (200, true),
        (299, true),
        (300, false),
        (429, false),
    ] {
        assert_eq!(
            AttemptResult::from_response(status, None, None).is_delivered(),
            delivered,
            "{status}"
        );
    }
}

#[test]
fn dead_reasons_read_back_what_they_wrote() {
    for reason in [
        DeadReason::RetriesExhausted,
        DeadReason::AbortedByOrigin,
        DeadReason::RefusedByEveryOrigin,
    ] {
        assert_eq!(reason.as_str().parse(), Ok(reason));
    }
    assert_eq!("other".parse::<DeadReason>(), Err(UnknownDeadReason));
}

#[test]
fn a_probe_is_healthy_only_on_a_2xx() {
    for (result, healthy) in [
        (AttemptResult::Status(204), true),
        (AttemptResult::Status(404), false),
        (
            AttemptResult::from_response(302, None, Some("/login")),
            false,
        ),
        (AttemptResult::Status(503), false),
        (AttemptResult::Timeout, false),
    ] {
        assert_eq!(result.probe_signal(), healthy, "{result:?}");
    }
}

#[test]
fn a_busy_origin_is_skipped_and_an_attempt_that_sent_nothing_is_deferred() {
    let (a, b) = (origin("a"), origin("b"));
    // Both busy: nothing sent, no retry spent, back at the earliest turn.
    let mut plan = Plan::new(vec![&a, &b], NONE, closed, 1_000);
    assert_eq!(plan.peek().map(|o| o.name.as_str()), Some("a"));
    assert!(plan.next_origin(1_000).is_some());
    plan.busy(9_000);
    assert!(plan.next_origin(1_000).is_some());
    plan.busy(4_000);
    assert!(plan.next_origin(1_000).is_none());
    let (verdict, log) = plan.finish();
    assert_eq!(verdict, Verdict::Deferred { until_ms: 4_000 });
    assert!(log.is_empty());
    // The first busy, the second tried and failed: the attempt failed, as when a breaker is
    // open and the rest fail.
    let mut plan = Plan::new(vec![&a, &b], NONE, closed, 1_000);
    plan.next_origin(1_000);
    plan.busy(9_000);
    let second = plan.next_origin(1_000).expect("b");
    plan.sending(1_500);
    plan.record(second, AttemptResult::Status(503), 1_600);
    let (verdict, log) = plan.finish();
    assert_eq!(verdict, Verdict::Failed);
    assert_eq!(log[0].latency_ms, Some(100));
}
