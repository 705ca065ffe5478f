use super::api::*;
use super::*;
use crate::inbox::Knowledge;
use crate::time::UnixMicros;
use alloc::format;
use alloc::string::ToString;
use alloc::vec;
#[cfg(target_arch = "wasm32")]
use wasm_bindgen_test::wasm_bindgen_test as test;

const NOW: UnixSecs = UnixSecs(1_700_000_000);

fn settings() -> Settings {
    Settings {
        lookback_secs: 86_400,
        interval_secs: 300,
        settle_secs: 600,
        recheck_secs: 3600,
        requests_per_run: 40,
        memory_secs: 7 * 86_400,
        publishes_per_event: 0,
        alerts: false,
        lease_secs: LEASE_SECS,
        gap_retry: GapRetry::default(),
    }
}

/// `NOW` plus `secs`, as the adapter's clock gives it.
fn at(secs: i64) -> UnixMs {
    UnixMs((NOW.0 + secs) * 1000)
}

fn gap(status: &str, since: i64) -> Seen {
    Seen {
        status: status.into(),
        gap_since: Some(UnixSecs(since)),
        checked_at: UnixSecs(since),
        set_aside: None,
    }
}

fn known(status: &str, checked_at: i64) -> Seen {
    Seen {
        status: status.into(),
        gap_since: None,
        checked_at: UnixSecs(checked_at),
        set_aside: None,
    }
}

const DECLINED: &str = r#"{"session_id":"s1","status":"Declined","vendor_data":"user-1","workflow_id":"wf","id_verifications":[{"node_id":"n1","status":"Declined"}]}"#;

fn decision_of(id: &str, status: &str) -> String {
    format!(r#"{{"session_id":"{id}","status":"{status}","id_verifications":[]}}"#)
}

fn row_json(id: &str, status: &str, created_at: UnixSecs) -> String {
    format!(
        r#"{{"session_id":"{id}","session_number":7,"status":"{status}","created_at":"{}","full_name":"Jane Doe","portrait_image":"https://example.com/p","vendor_data":"user-1","session_kind":"user"}}"#,
        crate::time::to_rfc3339(created_at.0)
    )
}

fn page_json(rows: &[String], count: usize, next: bool) -> String {
    format!(
        r#"{{"count":{count},"next":{},"previous":null,"results":[{}]}}"#,
        if next {
            r#""https://verification.didit.me/v3/sessions/?offset=100""#
        } else {
            "null"
        },
        rows.join(",")
    )
}

fn empty_page() -> String {
    page_json(&[], 0, false)
}

fn remembered(run: &mut Run) -> Vec<(String, Seen)> {
    run.drain_changes()
        .filter_map(|change| match change {
            Change::Remember {
                session_id, seen, ..
            } => Some((session_id, seen)),
            _ => None,
        })
        .collect()
}

#[test]
fn paths_are_the_documented_routes() {
    assert_eq!(
        list_path(SessionKind::User, UnixSecs(0), NOW, 200),
        "/sessions/?session_kind=user&date_from=1970-01-01T00:00:00Z&date_to=2023-11-14T22:13:20Z&limit=100&offset=200"
    );
    assert_eq!(
        decision_path("5b3720ed-d429-42ef-b67f-37ea805f48ee"),
        "/session/5b3720ed-d429-42ef-b67f-37ea805f48ee/decision/"
    );
    assert_eq!(decision_path("a/b?c d"), "/session/a%2Fb%3Fc%20d/decision/");
}

#[test]
fn reads_a_documented_page_and_only_what_it_needs() {
    let body = page_json(
        &[
            row_json("s1", "Approved", NOW),
            r#"{"session_id":"s2","status":"Declined","created_at":1700000000.5,"session_kind":"business"}"#.to_string(),
            r#"{"session_id":"","status":"Declined","created_at":1}"#.to_string(),
            r#"{"session_id":"s4","status":"Declined","created_at":"yesterday"}"#.to_string(),
        ],
        4,
        false,
    );
    let page = parse_page(&body, SessionKind::User, 0).expect("page");
    assert_eq!(page.len, 4);
    assert!(!page.has_next);
    assert_eq!(page.unreadable_rows, 2);
    assert_eq!(
        page.rows,
        vec![
            SessionRow {
                session_id: "s1".into(),
                kind: SessionKind::User,
                status: "Approved".into(),
                created_at: NOW.micros(),
            },
            SessionRow {
                session_id: "s2".into(),
                kind: SessionKind::Business,
                status: "Declined".into(),
                created_at: UnixMicros(NOW.micros().0 + 500_000),
            },
        ]
    );
}

#[test]
fn a_page_that_cannot_move_the_walk_on_ends_it_and_says_so() {
    let empty_with_next = page_json(&[], 10, true);
    let page = parse_page(&empty_with_next, SessionKind::User, 0).expect("page");
    assert!(!page.has_next);
    assert_eq!(
        page.inconsistency,
        Some("an empty session page with a next page")
    );
    let short = page_json(&[row_json("s1", "Approved", NOW)], 150, false);
    let page = parse_page(&short, SessionKind::User, 100).expect("page");
    assert_eq!(page.rows.len(), 1);
    assert_eq!(
        page.inconsistency,
        Some("a last session page short of the count it gives")
    );
    // KYB counts are capped at 100: a count beyond the rows is not a missing page.
    let page = parse_page(&short, SessionKind::Business, 100).expect("page");
    assert_eq!(page.inconsistency, None);
    for bad in ["", "[]", "{}", r#"{"results":{}}"#, "<html>"] {
        assert!(parse_page(bad, SessionKind::User, 0).is_err(), "{bad}");
    }
    // A run goes on to the next kind, and the report names what was odd.
    let mut run = first_page(&[]);
    assert!(matches!(run.poll(at(1)), Step::List { path } if path.contains("business")));
    run.handle_page(Answer::Ok(&empty_with_next), at(1));
    assert_eq!(run.poll(at(1)), Step::Done);
    let (state, _) = run.finish(at(1));
    let report = state.last_run.expect("report");
    assert_eq!(report.ended, RunEnd::SweepDone);
    assert_eq!(
        report.errors,
        vec!["Didit's API sent an empty session page with a next page".to_string()]
    );
}

#[test]
fn answers_are_read_as_the_sdk_reads_them() {
    assert_eq!(Answer::Ok("x").body(NOW), Ok("x"));
    for status in [408, 429, 500, 502, 503, 504] {
        assert!(matches!(
            Answer::Status { status, retry_after: None }.body(NOW),
            Err(ApiError::Unavailable { status: Some(s), retry_after_secs: None }) if s == status
        ));
    }
    for status in [400, 401, 403, 404] {
        assert_eq!(
            Answer::Status {
                status,
                retry_after: Some("5")
            }
            .body(NOW),
            Err(ApiError::Refused { status })
        );
    }
    assert_eq!(
        Answer::Unreachable.body(NOW),
        Err(ApiError::Unavailable {
            status: None,
            retry_after_secs: None
        })
    );
    assert_eq!(retry_after_secs("120", NOW), Some(120));
    assert_eq!(retry_after_secs("999999", NOW), Some(MAX_RETRY_AFTER_SECS));
    assert_eq!(
        retry_after_secs("Tue, 14 Nov 2023 22:15:20 GMT", NOW),
        Some(120)
    );
    assert_eq!(
        retry_after_secs("Tue, 14 Nov 2023 22:00:00 GMT", NOW),
        Some(0)
    );
    assert_eq!(retry_after_secs("soon", NOW), None);
    assert!(matches!(
        Answer::TooLarge.body(NOW),
        Err(ApiError::Unreadable { .. })
    ));
}

#[test]
fn a_sweep_starts_when_due_and_never_beside_another_run() {
    let mut run = begin(State::default(), settings(), at(0)).expect("first run");
    let sweep = run.state().sweep.clone().expect("a sweep");
    // Sessions created before reconciliation was switched on are not its business.
    assert_eq!((sweep.from, sweep.started_at), (NOW, NOW));
    assert_eq!(run.state().switched_on(), Some(NOW.micros()));
    let leased = run.state().clone();
    assert_eq!(
        begin(leased.clone(), settings(), at(10)).err(),
        Some(NotNow::Busy(UnixSecs(NOW.0 + LEASE_SECS as i64)))
    );
    // A run that died holds the lease only so long.
    assert!(begin(leased, settings(), at(LEASE_SECS as i64)).is_ok());

    assert!(matches!(run.poll(at(0)), Step::List { .. }));
    run.handle_page(Answer::Ok(&empty_page()), at(0));
    assert!(
        matches!(run.poll(at(0)), Step::List { path } if path.contains("session_kind=business"))
    );
    run.handle_page(Answer::Ok(&empty_page()), at(1));
    assert_eq!(run.poll(at(1)), Step::Done);
    let (state, next) = run.finish(at(1));
    assert_eq!(state.checkpoint, Some(NOW));
    assert_eq!(state.sweep, None);
    assert_eq!(state.lease_until, None);
    assert_eq!(next, UnixSecs(NOW.0 + 300));
    assert_eq!(
        begin(state.clone(), settings(), at(299)).err(),
        Some(NotNow::Idle(UnixSecs(NOW.0 + 300)))
    );
    let later = begin(state, settings(), at(90_000)).expect("due");
    let sweep = later.state().sweep.clone().expect("a sweep");
    assert_eq!(sweep.from, UnixSecs(NOW.0 + 90_000 - 86_400));
}

#[test]
fn a_state_stored_before_microseconds_keeps_its_switch_on_second() {
    let stored = format!(
        r#"{{"activated_at":{},"checkpoint":null,"sweep":null,"failures":0,"wait_until":null,"lease_until":null,"last_run":null}}"#,
        NOW.0
    );
    let state: State = serde_json::from_str(&stored).expect("an older state");
    // The end of that second: nothing created before the switch-on is ever fetched.
    assert_eq!(
        state.switched_on(),
        Some(UnixMicros(NOW.micros().0 + 999_999))
    );
    let run = begin(state, settings(), at(1)).expect("due");
    let written = serde_json::to_string(run.state()).expect("json");
    assert!(!written.contains("activated_at"), "{written}");
    let again: State = serde_json::from_str(&written).expect("read back");
    assert_eq!(
        again.switched_on(),
        Some(UnixMicros(NOW.micros().0 + 999_999))
    );
}

#[test]
fn the_switch_on_is_exact_to_the_microsecond() {
    // Switched on at NOW + 0.5 s: a session created a microsecond before, in the same
    // second, is never asked about; one created at that microsecond is.
    let switched_on = UnixMs(NOW.0 * 1000 + 500);
    let mut run = begin(State::default(), settings(), switched_on).expect("first run");
    assert_eq!(
        run.state().switched_on(),
        Some(UnixMicros(NOW.0 * 1_000_000 + 500_000))
    );
    let row = |id: &str, micros: i64| {
        format!(
            r#"{{"session_id":"{id}","status":"Approved","created_at":"{}","session_kind":"user"}}"#,
            crate::time::to_rfc3339_micros(UnixMicros(NOW.0 * 1_000_000 + micros))
        )
    };
    let Step::List { path } = run.poll(switched_on) else {
        panic!("a list");
    };
    assert!(path.contains("date_from=2023-11-14T22:13:20Z"), "{path}");
    let rows = [
        row("before", 499_999),
        row("at", 500_000),
        row("after", 500_001),
    ];
    run.handle_page(Answer::Ok(&page_json(&rows, 3, false)), switched_on);
    let Step::Recall { session_ids, .. } = run.poll(switched_on) else {
        panic!("a recall");
    };
    assert_eq!(session_ids, ["at", "after"]);
}

/// Runs a state switched on long ago through its first KYC page, `rows`, at `NOW`.
fn first_page(rows: &[String]) -> Run {
    first_page_with(settings(), rows)
}

fn first_page_with(settings: Settings, rows: &[String]) -> Run {
    let switched_on = State {
        switched_on: Some(UnixSecs(NOW.0 - 100_000).micros()),
        ..State::default()
    };
    let mut run = begin(switched_on, settings, at(0)).expect("run");
    assert!(matches!(run.poll(at(0)), Step::List { .. }));
    run.handle_page(Answer::Ok(&page_json(rows, rows.len(), false)), at(0));
    run
}

#[test]
fn only_results_the_edge_may_not_hold_cost_a_question() {
    let mut run = first_page(&[
        row_json("started", "In Progress", NOW),
        row_json("new", "Not Started", NOW),
        row_json("known", "Approved", NOW),
        row_json("same", "Declined", NOW),
        row_json("missing", "Declined", NOW),
    ]);
    let Step::Recall {
        session_ids,
        erasure_keys,
    } = run.poll(at(0))
    else {
        panic!("a recall");
    };
    assert_eq!(session_ids, ["known", "same", "missing"]);
    assert_eq!(
        erasure_keys[2],
        memory::session_erasure_key(SessionKind::User, "missing")
    );
    run.handle_recalled([("same".to_string(), known("Declined", NOW.0))], []);
    assert_eq!(
        run.poll(at(0)),
        Step::AskInbox {
            inbox: "session:known".into(),
            webhook_type: "status.updated",
            status: "Approved".into()
        }
    );
    run.handle_inbox(Ok(Knowledge::Held), at(0));
    assert!(matches!(run.poll(at(0)), Step::AskInbox { inbox, .. } if inbox == "session:missing"));
    run.handle_inbox(Ok(Knowledge::Missing), at(0));
    // Not settled: remembered as a gap, not fetched.
    assert!(matches!(run.poll(at(0)), Step::List { path } if path.contains("business")));
    assert_eq!(
        remembered(&mut run),
        vec![
            ("known".to_string(), known("Approved", NOW.0)),
            ("missing".to_string(), gap("Declined", NOW.0)),
        ]
    );
}

#[test]
fn a_settled_gap_is_fetched_and_injected_once() {
    let mut run = first_page(&[row_json("s1", "Declined", UnixSecs(NOW.0 - 50))]);
    assert!(matches!(run.poll(at(0)), Step::Recall { .. }));
    run.handle_recalled([("s1".to_string(), gap("Declined", NOW.0 - 600))], []);
    assert!(matches!(run.poll(at(0)), Step::AskInbox { .. }));
    run.handle_inbox(Ok(Knowledge::Missing), at(1));
    assert_eq!(
        run.poll(at(1)),
        Step::FetchDecision {
            path: "/session/s1/decision/".into()
        }
    );
    run.handle_decision(Answer::Ok(DECLINED), at(2));
    let Step::Inject { body } = run.poll(at(2)) else {
        panic!("an injection");
    };
    let written: serde_json::Value = serde_json::from_str(&body).expect("json");
    assert_eq!(written["webhook_type"], "status.updated");
    assert_eq!(written["status"], "Declined");
    assert_eq!(written["timestamp"], NOW.0 + 1, "when it was asked for");
    assert_eq!(written["vendor_data"], "user-1");
    assert_eq!(
        written["decision"],
        serde_json::from_str::<serde_json::Value>(DECLINED).expect("json")
    );
    run.handle_injected(Ok(Injected::Accepted), at(3));
    assert!(matches!(run.poll(at(3)), Step::List { .. }));
    let (_, seen): (String, Seen) = remembered(&mut run).pop().expect("remembered");
    assert_eq!(seen, known("Declined", NOW.0 + 3));
    run.handle_page(Answer::Ok(&empty_page()), at(3));
    assert_eq!(run.poll(at(3)), Step::Done);
    let (state, _) = run.finish(at(3));
    let report = state.last_run.expect("report");
    assert_eq!(
        (report.counts.gaps_found, report.counts.events_injected),
        (1, 1)
    );
    assert_eq!(report.ended, RunEnd::SweepDone);
}

#[test]
fn a_failing_api_delays_the_next_run_counted_from_the_answer() {
    let mut run = first_page(&[]);
    // The answer comes late in the run: the wait counts from it, not from the run's start.
    assert!(matches!(run.poll(at(200)), Step::List { .. }));
    run.handle_page(
        Answer::Status {
            status: 429,
            retry_after: Some("120"),
        },
        at(200),
    );
    assert_eq!(run.poll(at(200)), Step::Done);
    let (state, next) = run.finish(at(200));
    assert_eq!(next, UnixSecs(NOW.0 + 320));
    assert_eq!(state.failures, 1);
    let sweep = state.sweep.clone().expect("still under way");
    assert_eq!((sweep.kind, sweep.offset), (SessionKind::Business, 0));
    assert_eq!(
        begin(state.clone(), settings(), at(319)).err(),
        Some(NotNow::Waiting(UnixSecs(NOW.0 + 320)))
    );
    // A date counts from the answer too (it is absolute).
    let mut dated = begin(state.clone(), settings(), at(320)).expect("due");
    dated.poll(at(330));
    dated.handle_page(
        Answer::Status {
            status: 429,
            retry_after: Some("Tue, 14 Nov 2023 22:23:20 GMT"),
        },
        at(330),
    );
    assert_eq!(dated.finish(at(330)).1, UnixSecs(NOW.0 + 600));
    // Without a Retry-After the wait doubles with each failed run, up to half an hour, and
    // counts from the failure (here 14 s into each run, as after a timeout).
    let mut state = state;
    let mut waits = Vec::new();
    let mut now = NOW.0 + 320;
    for _ in 0..8 {
        let mut run = begin(state, settings(), UnixMs(now * 1000)).expect("due");
        run.poll(UnixMs(now * 1000));
        let failed_at = UnixMs((now + 14) * 1000);
        run.handle_page(Answer::Unreachable, failed_at);
        let (next_state, next) = run.finish(failed_at);
        waits.push(next.0 - (now + 14));
        now = next.0;
        state = next_state;
    }
    assert_eq!(waits, vec![60, 120, 240, 480, 960, 1800, 1800, 1800]);
    let report = state.last_run.clone().expect("report");
    assert_eq!(
        report.errors,
        vec!["Didit's API did not answer".to_string()]
    );
    // A clean run ends the streak.
    let mut run = begin(state, settings(), UnixMs(now * 1000)).expect("due");
    run.poll(UnixMs(now * 1000));
    run.handle_page(Answer::Ok(&empty_page()), UnixMs(now * 1000));
    assert_eq!(run.poll(UnixMs(now * 1000)), Step::Done);
    let (state, _) = run.finish(UnixMs(now * 1000));
    assert_eq!(state.failures, 0);
    assert!(state.checkpoint.is_some());
}

#[test]
fn a_run_out_of_budget_leaves_the_page_to_the_next_run() {
    let rows: Vec<String> = (0..5)
        .map(|n| row_json(&format!("s{n}"), "Approved", NOW))
        .collect();
    let mut three = settings();
    three.requests_per_run = 3;
    let mut run = first_page_with(three, &rows);
    assert!(matches!(run.poll(at(0)), Step::Recall { .. }));
    run.handle_recalled([], []);
    for _ in 0..2 {
        assert!(matches!(run.poll(at(0)), Step::AskInbox { .. }));
        run.handle_inbox(Ok(Knowledge::Held), at(0));
    }
    assert_eq!(run.poll(at(0)), Step::Done);
    assert_eq!(remembered(&mut run).len(), 2);
    let (state, next) = run.finish(at(0));
    assert_eq!(
        state.last_run.as_ref().map(|r| r.ended),
        Some(RunEnd::BudgetUsed)
    );
    assert_eq!(state.sweep.as_ref().map(|s| s.offset), Some(0));
    assert_eq!(next, UnixSecs(NOW.0 + CONTINUE_AFTER_SECS));
    // The cron coming sooner does not hurry it.
    assert_eq!(
        begin(state.clone(), settings(), at(1)).err(),
        Some(NotNow::Idle(next))
    );
    let run = begin(state, settings(), UnixMs(next.0 * 1000)).expect("continues");
    assert_eq!(run.state().sweep.as_ref().map(|s| s.offset), Some(0));
}

/// A run that has the settled gaps `ids` (Approved) in hand, up to the first one's fetch.
fn gaps_page(settings: Settings, ids: &[&str]) -> Run {
    let rows: Vec<String> = ids.iter().map(|id| row_json(id, "Approved", NOW)).collect();
    let mut run = first_page_with(settings, &rows);
    run.poll(at(0));
    run.handle_recalled(
        ids.iter().map(|id| (id.to_string(), gap("Approved", 0))),
        [],
    );
    run
}

/// Asks the inbox about the next gap (missing) and returns the fetch it leads to.
fn to_fetch(run: &mut Run, now: UnixMs) -> String {
    assert!(matches!(run.poll(now), Step::AskInbox { .. }));
    run.handle_inbox(Ok(Knowledge::Missing), now);
    match run.poll(now) {
        Step::FetchDecision { path } => path,
        other => panic!("{other:?}"),
    }
}

#[test]
fn one_session_whose_decision_cannot_be_read_never_holds_up_the_others() {
    for (answer, code) in [
        (
            Answer::Status {
                status: 403,
                retry_after: None,
            },
            "decision_refused",
        ),
        (
            Answer::Status {
                status: 404,
                retry_after: None,
            },
            "decision_not_found",
        ),
        (
            Answer::Status {
                status: 410,
                retry_after: None,
            },
            "decision_refused",
        ),
        (Answer::TooLarge, "decision_too_large"),
        (Answer::Ok("not json"), "decision_unreadable"),
        (
            Answer::Ok(r#"{"session_id":"other","status":"Approved"}"#),
            "decision_unreadable",
        ),
    ] {
        let mut run = gaps_page(settings(), &["bad", "good"]);
        assert_eq!(to_fetch(&mut run, at(0)), "/session/bad/decision/");
        run.handle_decision(answer, at(1));
        // The same run goes on to the next gap.
        assert_eq!(
            to_fetch(&mut run, at(1)),
            "/session/good/decision/",
            "{code}"
        );
        run.handle_decision(Answer::Ok(&decision_of("good", "Approved")), at(2));
        assert!(matches!(run.poll(at(2)), Step::Inject { .. }));
        run.handle_injected(Ok(Injected::Accepted), at(2));
        let bad = remembered(&mut run)
            .into_iter()
            .find(|(id, _)| id == "bad")
            .expect("bad remembered");
        let set_aside = bad.1.set_aside.expect("set aside");
        assert_eq!(set_aside.failure.code(), code);
        assert_eq!(
            (set_aside.tries, set_aside.retry_at),
            (1, Some(UnixSecs(NOW.0 + 1 + 300)))
        );
        assert_eq!(bad.1.gap_since, Some(UnixSecs(0)), "still a gap");
    }
}

#[test]
fn a_5xx_or_no_answer_sets_the_session_aside_and_backs_off_from_the_answer() {
    for answer in [
        Answer::Status {
            status: 500,
            retry_after: None,
        },
        Answer::Status {
            status: 408,
            retry_after: None,
        },
        Answer::Unreachable,
    ] {
        let mut run = gaps_page(settings(), &["bad", "good", "known"]);
        to_fetch(&mut run, at(0));
        run.handle_decision(answer, at(15));
        let (bad, seen) = remembered(&mut run).pop().expect("remembered");
        assert_eq!(bad, "bad");
        assert!(seen.set_aside.is_some());
        // The run goes on, asking no more of Didit's API: the next gap waits for the next run.
        assert!(
            matches!(run.poll(at(15)), Step::AskInbox { inbox, .. } if inbox == "session:good")
        );
        run.handle_inbox(Ok(Knowledge::Missing), at(15));
        assert_eq!(run.poll(at(15)), Step::Done, "{answer:?}");
        let (good, seen) = remembered(&mut run).pop().expect("remembered");
        assert_eq!(
            (good.as_str(), seen.set_aside),
            ("good", None),
            "not set aside"
        );
        let (state, next) = run.finish(at(15));
        assert_eq!(state.failures, 0, "the list answered: no streak");
        assert_eq!(
            next,
            UnixSecs(NOW.0 + 15 + 30),
            "the back-off counts from the answer"
        );
        assert_eq!(state.last_run.map(|r| r.ended), Some(RunEnd::Api));
    }
    // A 429 is the key's limit, not the session's: no try is counted.
    let mut run = gaps_page(settings(), &["bad", "good"]);
    to_fetch(&mut run, at(0));
    run.handle_decision(
        Answer::Status {
            status: 429,
            retry_after: Some("90"),
        },
        at(5),
    );
    let (_, seen) = remembered(&mut run).pop().expect("remembered");
    assert_eq!(seen.set_aside, None);
    assert_eq!(run.finish(at(5)).1, UnixSecs(NOW.0 + 95));
}

#[test]
fn a_set_aside_gap_waits_for_its_own_try_and_is_given_up_with_an_alert() {
    let mut alerting = settings();
    alerting.alerts = true;
    let rows = [
        row_json("bad", "Approved", NOW),
        row_json("other", "Approved", NOW),
    ];
    let mut run = first_page_with(alerting, &rows);
    run.poll(at(0));
    let waiting = Seen {
        set_aside: Some(SetAside {
            tries: 3,
            failure: Failure::DecisionNotFound,
            retry_at: Some(UnixSecs(NOW.0 + 1)),
        }),
        ..gap("Approved", 0)
    };
    run.handle_recalled(
        [
            ("bad".to_string(), waiting.clone()),
            ("other".to_string(), known("Approved", NOW.0)),
        ],
        [],
    );
    // Not due yet (and the other is known): nothing is asked.
    assert!(matches!(run.poll(at(0)), Step::List { .. }));

    // Due, and its last try fails: given up, and the alert goes out before it is remembered.
    let last = Seen {
        set_aside: Some(SetAside {
            tries: memory::MAX_TRIES - 1,
            ..waiting.set_aside.expect("set aside")
        }),
        ..waiting
    };
    let mut run = first_page_with(alerting, &rows[..1]);
    run.poll(at(0));
    run.handle_recalled([("bad".to_string(), last)], []);
    to_fetch(&mut run, at(2));
    run.handle_decision(
        Answer::Status {
            status: 404,
            retry_after: None,
        },
        at(2),
    );
    let Step::Alert { alert } = run.poll(at(2)) else {
        panic!("an alert");
    };
    assert_eq!(alert.event_type(), "didit-edge.reconciliation.gave_up");
    let event: serde_json::Value = serde_json::from_str(&alert.to_cloud_event()).expect("json");
    assert_eq!(event["data"]["failure"], "decision_not_found");
    assert_eq!(event["data"]["tries"], memory::MAX_TRIES);
    assert_eq!(event["data"]["gap"], memory::gap_reference("bad").as_str());
    assert_eq!(memory::gap_reference("bad").len(), 16);
    assert!(!alert.to_cloud_event().contains("\"bad\""), "no session id");
    assert!(
        remembered(&mut run).is_empty(),
        "not before the alert is queued"
    );
    run.handle_alerted(Ok(()), at(3));
    let (_, seen) = remembered(&mut run).pop().expect("remembered");
    assert!(seen.set_aside.is_some_and(|s| s.gave_up()));
    assert!(matches!(run.poll(at(3)), Step::List { .. }));
    let (state, _) = run.finish(at(3));
    assert_eq!(state.last_run.map(|r| r.counts.gave_up), Some(1));

    // A given-up gap is never asked about again (until its status changes).
    let mut run = first_page_with(alerting, &rows[..1]);
    run.poll(at(0));
    run.handle_recalled([("bad".to_string(), seen)], []);
    assert!(matches!(run.poll(at(250)), Step::List { .. }));
}

#[test]
fn an_alert_that_cannot_be_queued_leaves_the_gap_to_try_again() {
    let mut alerting = settings();
    alerting.alerts = true;
    let mut run = first_page_with(alerting, &[row_json("bad", "Approved", NOW)]);
    run.poll(at(0));
    let last = Seen {
        set_aside: Some(SetAside {
            tries: memory::MAX_TRIES - 1,
            failure: Failure::DecisionNotFound,
            retry_at: Some(UnixSecs(0)),
        }),
        ..gap("Approved", 0)
    };
    run.handle_recalled([("bad".to_string(), last)], []);
    to_fetch(&mut run, at(1));
    run.handle_decision(
        Answer::Status {
            status: 404,
            retry_after: None,
        },
        at(1),
    );
    assert!(matches!(run.poll(at(1)), Step::Alert { .. }));
    run.handle_alerted(Err(()), at(2));
    let (_, seen) = remembered(&mut run).pop().expect("remembered");
    let set_aside = seen.set_aside.expect("set aside");
    assert!(!set_aside.gave_up());
    assert_eq!(set_aside.tries, memory::MAX_TRIES - 1);
}

#[test]
fn inboxes_failing_for_several_sessions_in_a_row_end_the_run() {
    let mut run = gaps_page(settings(), &["a", "b", "c", "d"]);
    for _ in 0..INBOX_FAILURES_PER_RUN {
        assert!(matches!(run.poll(at(0)), Step::AskInbox { .. }));
        run.handle_inbox(Err(()), at(0));
    }
    assert_eq!(run.poll(at(0)), Step::Done);
    let set_aside = remembered(&mut run)
        .into_iter()
        .filter(|(_, seen)| {
            seen.set_aside
                .is_some_and(|s| s.failure == Failure::InboxUnreachable)
        })
        .count();
    assert_eq!(set_aside, 3);
    assert_eq!(
        run.finish(at(0)).0.last_run.map(|r| r.ended),
        Some(RunEnd::Inbox)
    );
}

#[test]
fn broken_delivery_settings_hold_gaps_without_counting_a_try() {
    let mut run = gaps_page(settings(), &["a", "b"]);
    to_fetch(&mut run, at(0));
    run.handle_decision(Answer::Ok(&decision_of("a", "Approved")), at(0));
    assert!(matches!(run.poll(at(0)), Step::Inject { .. }));
    run.handle_injected(Err(InjectFailure::SettingsBroken), at(0));
    assert_eq!(run.poll(at(0)), Step::Done);
    let (_, seen) = remembered(&mut run).pop().expect("remembered");
    assert_eq!(
        seen,
        Seen {
            checked_at: NOW,
            ..gap("Approved", 0)
        }
    );
    assert_eq!(
        run.finish(at(0)).0.last_run.map(|r| r.ended),
        Some(RunEnd::Held)
    );
}

#[test]
fn a_run_hands_out_no_step_that_could_outlast_its_lease() {
    let mut run = gaps_page(settings(), &["a", "b", "c"]);
    let lease = run.state().lease_until.expect("leased").0 - NOW.0;
    // An inbox question fits while one step and the margin do.
    let last_ask = lease - STEP_TIMEOUT_SECS - LEASE_MARGIN_SECS;
    assert!(matches!(run.poll(at(last_ask)), Step::AskInbox { .. }));
    // A fetch needs room for its injection too.
    run.handle_inbox(Ok(Knowledge::Missing), at(last_ask));
    assert_eq!(run.poll(at(last_ask)), Step::Done);
    let (state, _) = run.finish(at(last_ask));
    assert_eq!(state.last_run.map(|r| r.ended), Some(RunEnd::BudgetUsed));
    assert_eq!(state.lease_until, None);
    // A slow API: each answer takes 14 s; the run stops in time, whatever the budget says.
    let mut many = settings();
    many.requests_per_run = 1_000;
    let rows: Vec<String> = (0..100)
        .map(|n| row_json(&format!("s{n}"), "Approved", NOW))
        .collect();
    let mut run = first_page_with(many, &rows);
    run.poll(at(0));
    run.handle_recalled([], []);
    let mut now = 0;
    while let Step::AskInbox { .. } = run.poll(at(now)) {
        now += 14;
        assert!(
            now <= lease - LEASE_MARGIN_SECS,
            "answered after the lease: {now}"
        );
        run.handle_inbox(Ok(Knowledge::Held), at(now));
    }
}

#[test]
fn every_subrequest_a_run_causes_is_counted() {
    let mut publishing = settings();
    publishing.publishes_per_event = 2;
    publishing.requests_per_run = 6;
    let mut run = gaps_page(publishing, &["a", "b"]);
    // List 1 + ask 1 + fetch 1 + inject (claim 1 + publishes 2) = 6: the run has room for one.
    to_fetch(&mut run, at(0));
    run.handle_decision(Answer::Ok(&decision_of("a", "Approved")), at(0));
    assert!(matches!(run.poll(at(0)), Step::Inject { .. }));
    run.handle_injected(Ok(Injected::Accepted), at(0));
    assert_eq!(run.poll(at(0)), Step::Done);
    let (state, _) = run.finish(at(0));
    let report = state.last_run.expect("report");
    assert_eq!(
        (report.counts.requests, report.ended),
        (6, RunEnd::BudgetUsed)
    );
    // Without room for its publishes, a gap is not fetched at all.
    publishing.requests_per_run = 5;
    let mut run = gaps_page(publishing, &["a"]);
    assert!(matches!(run.poll(at(0)), Step::AskInbox { .. }));
    run.handle_inbox(Ok(Knowledge::Missing), at(0));
    assert_eq!(run.poll(at(0)), Step::Done);
}

#[test]
fn api_requests_per_run_stay_within_didits_rate_limit() {
    let mut many = settings();
    many.requests_per_run = 1_000;
    // A page per request: the run stops at API_REQUESTS_PER_RUN.
    let switched_on = State {
        switched_on: Some(UnixSecs(NOW.0 - 100_000).micros()),
        ..State::default()
    };
    let mut run = begin(switched_on, many, at(0)).expect("run");
    let mut pages = 0;
    let busy = [row_json("busy", "In Progress", NOW)];
    while let Step::List { .. } = run.poll(at(0)) {
        pages += 1;
        run.handle_page(Answer::Ok(&page_json(&busy, 10_000, true)), at(0));
    }
    assert_eq!(pages, API_REQUESTS_PER_RUN);
    // At most 60 a run, runs at least 15 s apart: 240 a minute, under Didit's 600.
    let per_minute = i64::from(API_REQUESTS_PER_RUN) * 60 / CONTINUE_AFTER_SECS;
    assert!(per_minute <= 600);
    let (state, next) = run.finish(at(0));
    assert_eq!(
        next.0 - state.last_run.expect("run").finished_at.0,
        CONTINUE_AFTER_SECS
    );
}

#[test]
fn sessions_older_than_the_inboxes_memory_are_never_asked_about() {
    let mut short = settings();
    short.lookback_secs = 10 * 86_400;
    short.memory_secs = 2 * 86_400;
    // The sweep itself starts within the memory.
    let switched_on = State {
        switched_on: Some(UnixSecs(0).micros()),
        ..State::default()
    };
    let run = begin(switched_on, short, at(0)).expect("run");
    let sweep = run.state().sweep.clone().expect("sweep");
    assert_eq!(
        sweep.from,
        UnixSecs(NOW.0 - 2 * 86_400 + MEMORY_MARGIN_SECS as i64)
    );
    // And a row that grows old while a long sweep runs is left alone.
    let old = UnixSecs(NOW.0 - 2 * 86_400 + MEMORY_MARGIN_SECS as i64 + 10);
    let mut run = begin(
        State {
            switched_on: Some(UnixSecs(0).micros()),
            ..State::default()
        },
        short,
        at(0),
    )
    .expect("run");
    run.poll(at(0));
    run.handle_page(
        Answer::Ok(&page_json(&[row_json("old", "Approved", old)], 1, false)),
        at(0),
    );
    run.poll(at(0));
    run.handle_recalled([], []);
    assert!(matches!(run.poll(at(11)), Step::List { .. }), "not asked");
    let (state, _) = run.finish(at(11));
    assert_eq!(state.last_run.map(|r| r.counts.beyond_memory), Some(1));
}

#[test]
fn an_erased_subject_is_never_asked_about_fetched_or_remembered() {
    let key = memory::session_erasure_key(SessionKind::User, "gone");
    // Marked: skipped without a question.
    let mut marked = first_page(&[row_json("gone", "Approved", NOW)]);
    marked.poll(at(0));
    marked.handle_recalled([("gone".to_string(), gap("Approved", 0))], [key.clone()]);
    assert!(matches!(marked.poll(at(0)), Step::List { .. }));
    let mut run = gaps_page(settings(), &["gone"]);
    // The inbox says so: the session is forgotten and marked, never fetched.
    assert!(matches!(run.poll(at(0)), Step::AskInbox { .. }));
    run.handle_inbox(Ok(Knowledge::Erased), at(0));
    assert!(matches!(run.poll(at(0)), Step::List { .. }));
    let changes: Vec<Change> = run.drain_changes().collect();
    assert_eq!(
        changes,
        vec![
            Change::Forget {
                session_id: "gone".into()
            },
            Change::MarkErased {
                key: key.clone(),
                at: NOW
            },
        ]
    );
    // Erased while its decision was being read: the answer is dropped, nothing remembered.
    let mut run = gaps_page(settings(), &["gone", "next"]);
    to_fetch(&mut run, at(0));
    run.handle_erased(&key);
    run.handle_decision(Answer::Ok(&decision_of("gone", "Approved")), at(1));
    assert_eq!(to_fetch(&mut run, at(1)), "/session/next/decision/");
    assert!(remembered(&mut run).iter().all(|(id, _)| id != "gone"));
    // And by the inbox, when the injection reaches it after the erasure.
    let mut run = gaps_page(settings(), &["gone"]);
    to_fetch(&mut run, at(0));
    run.handle_decision(Answer::Ok(&decision_of("gone", "Approved")), at(0));
    assert!(matches!(run.poll(at(0)), Step::Inject { .. }));
    run.handle_injected(Ok(Injected::Erased), at(0));
    let changes: Vec<Change> = run.drain_changes().collect();
    assert!(changes.contains(&Change::MarkErased { key, at: NOW }));
    assert!(!changes.iter().any(|c| matches!(c, Change::Remember { .. })));
}

#[test]
fn a_finished_sweep_forgets_what_left_its_window() {
    let mut run = first_page(&[]);
    run.poll(at(0));
    run.handle_page(Answer::Ok(&empty_page()), at(0));
    assert_eq!(run.poll(at(0)), Step::Done);
    let changes: Vec<Change> = run.drain_changes().collect();
    let from = run.state().checkpoint.map(|_| ());
    assert!(from.is_some());
    assert_eq!(
        changes,
        vec![
            Change::ForgetCreatedBefore(UnixSecs(NOW.0 - 86_400)),
            Change::ForgetErasedBefore(UnixSecs(NOW.0 - 7 * 86_400 + MEMORY_MARGIN_SECS as i64)),
        ]
    );
}

#[test]
fn a_decision_back_in_progress_injects_nothing() {
    let mut run = gaps_page(settings(), &["s1"]);
    to_fetch(&mut run, at(0));
    run.handle_decision(
        Answer::Ok(r#"{"session_id":"s1","status":"In Progress"}"#),
        at(0),
    );
    assert!(matches!(run.poll(at(0)), Step::List { .. }));
    assert!(remembered(&mut run).is_empty());
}

#[test]
fn an_event_from_the_api_says_so_and_is_named_like_its_webhook() {
    use crate::intake::{ClassifyPolicy, Identified};
    use crate::risk::RiskRules;
    let row = SessionRow {
        session_id: "kyb-1".into(),
        kind: SessionKind::Business,
        status: "Approved".into(),
        created_at: NOW.micros(),
    };
    let reconciled = event::from_decision(
        r#"{"session_id":"kyb-1","session_kind":"business","status":"Approved","vendor_data":"biz-1","registry_checks":[]}"#,
        &row,
        NOW,
    )
    .expect("event");
    let identified = Identified::from_api(reconciled.body.as_bytes(), NOW.0).expect("named");
    assert_eq!(identified.inbox(), "business_session:kyb-1");
    assert_eq!(identified.status.as_deref(), Some("Approved"));
    assert_eq!(identified.alias, None);
    let origins =
        crate::origin::parse_origins(r#"[{"name":"main","url":"https://main"}]"#).expect("origins");
    let classified = identified
        .classify(&ClassifyPolicy {
            risk_rules: &RiskRules::default(),
            origins: &origins,
        })
        .expect("classified");
    let event: serde_json::Value =
        serde_json::from_str(classified.cloud_event.get()).expect("json");
    assert_eq!(
        event["data"]["verification"],
        serde_json::json!({
            "source": "api",
            "header": null,
            "covers": "payload",
            "secret_index": null,
            "authenticated_by": "tls+x-api-key"
        })
    );
    assert_eq!(event["data"]["subject"]["kind"], "business_session");
    assert_eq!(event["data"]["status_code"], "approved");
}

#[test]
fn an_answer_is_trusted_only_until_the_recheck() {
    // Approved, Resubmitted, Approved between two sweeps looks unchanged in the list: after the
    // recheck time the inbox is asked again, and tells.
    let mut run = first_page(&[
        row_json("fresh", "Approved", NOW),
        row_json("stale", "Approved", NOW),
    ]);
    run.poll(at(0));
    run.handle_recalled(
        [
            ("fresh".to_string(), known("Approved", NOW.0 - 3599)),
            ("stale".to_string(), known("Approved", NOW.0 - 3600)),
        ],
        [],
    );
    assert!(matches!(run.poll(at(0)), Step::AskInbox { inbox, .. } if inbox == "session:stale"));
    run.handle_inbox(Ok(Knowledge::Missing), at(0));
    assert_eq!(
        remembered(&mut run),
        vec![("stale".to_string(), gap("Approved", NOW.0))]
    );
}

#[test]
fn a_due_retry_is_asked_after_the_pages_other_sessions() {
    let rows = [
        row_json("retry", "Approved", NOW),
        row_json("fresh", "Approved", NOW),
    ];
    let mut run = first_page(&rows);
    run.poll(at(0));
    let due = Seen {
        set_aside: Some(SetAside {
            tries: 1,
            failure: Failure::DecisionUnavailable { status: Some(500) },
            retry_at: Some(UnixSecs(NOW.0 - 1)),
        }),
        ..gap("Approved", 0)
    };
    run.handle_recalled(
        [
            ("retry".to_string(), due),
            ("fresh".to_string(), gap("Approved", 0)),
        ],
        [],
    );
    // The fresh gap goes first, so the retry failing again cannot keep it waiting.
    assert_eq!(to_fetch(&mut run, at(0)), "/session/fresh/decision/");
    run.handle_decision(Answer::Ok(&decision_of("fresh", "Approved")), at(0));
    assert!(matches!(run.poll(at(0)), Step::Inject { .. }));
    run.handle_injected(Ok(Injected::Accepted), at(0));
    assert_eq!(to_fetch(&mut run, at(0)), "/session/retry/decision/");
}

#[test]
fn a_retried_gap_keeps_when_it_was_first_seen_through_an_inbox_failure() {
    let mut run = first_page(&[row_json("s1", "Approved", NOW)]);
    run.poll(at(0));
    let due = Seen {
        set_aside: Some(SetAside {
            tries: 1,
            failure: Failure::InboxUnreachable,
            retry_at: Some(UnixSecs(NOW.0 - 1)),
        }),
        ..gap("Approved", 7)
    };
    run.handle_recalled([("s1".to_string(), due)], []);
    assert!(matches!(run.poll(at(0)), Step::AskInbox { .. }));
    run.handle_inbox(Err(()), at(0));
    let (_, seen) = remembered(&mut run).pop().expect("remembered");
    assert_eq!(
        seen.gap_since,
        Some(UnixSecs(7)),
        "not waiting to settle all over again"
    );
    assert_eq!(seen.set_aside.map(|s| s.tries), Some(2));
}
