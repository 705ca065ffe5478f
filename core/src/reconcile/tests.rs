use super::api::*;
use super::*;
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
    }
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
            Change::ForgetCreatedBefore(_) => None,
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
                created_at: NOW,
            },
            SessionRow {
                session_id: "s2".into(),
                kind: SessionKind::Business,
                status: "Declined".into(),
                created_at: NOW,
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
    assert!(matches!(run.poll(), Step::List { path } if path.contains("business")));
    run.handle_page(Answer::Ok(&empty_with_next));
    assert_eq!(run.poll(), Step::Done);
    let (state, _) = run.finish(NOW);
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
}

#[test]
fn a_sweep_starts_when_due_and_never_beside_another_run() {
    let mut run = begin(State::default(), settings(), NOW).expect("first run");
    let sweep = run.state().sweep.clone().expect("a sweep");
    // Sessions created before reconciliation was switched on are not its business.
    assert_eq!((sweep.from, sweep.started_at), (NOW, NOW));
    assert_eq!(run.state().activated_at, Some(NOW));
    let leased = run.state().clone();
    assert_eq!(
        begin(leased.clone(), settings(), UnixSecs(NOW.0 + 10)).err(),
        Some(NotNow::Busy(UnixSecs(NOW.0 + LEASE_SECS)))
    );
    // A run that died holds the lease only so long.
    assert!(begin(leased, settings(), UnixSecs(NOW.0 + LEASE_SECS)).is_ok());

    assert!(matches!(run.poll(), Step::List { .. }));
    run.handle_page(Answer::Ok(&empty_page()));
    assert!(matches!(run.poll(), Step::List { path } if path.contains("session_kind=business")));
    run.handle_page(Answer::Ok(&empty_page()));
    assert_eq!(run.poll(), Step::Done);
    let (state, next) = run.finish(UnixSecs(NOW.0 + 1));
    assert_eq!(state.checkpoint, Some(NOW));
    assert_eq!(state.sweep, None);
    assert_eq!(state.lease_until, None);
    assert_eq!(next, UnixSecs(NOW.0 + 300));
    assert_eq!(
        begin(state.clone(), settings(), UnixSecs(NOW.0 + 299)).err(),
        Some(NotNow::Idle(UnixSecs(NOW.0 + 300)))
    );
    let later = begin(state, settings(), UnixSecs(NOW.0 + 90_000)).expect("due");
    let sweep = later.state().sweep.clone().expect("a sweep");
    assert_eq!(sweep.from, UnixSecs(NOW.0 + 90_000 - 86_400));
}

/// Runs a fresh state's first run through its first KYC page, `rows`.
fn first_page(rows: &[String]) -> Run {
    let activated = State {
        activated_at: Some(UnixSecs(NOW.0 - 100_000)),
        ..State::default()
    };
    let mut run = begin(activated, settings(), NOW).expect("run");
    assert!(matches!(run.poll(), Step::List { .. }));
    run.handle_page(Answer::Ok(&page_json(rows, rows.len(), false)));
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
    assert_eq!(
        run.poll(),
        Step::Recall {
            session_ids: vec!["known".into(), "same".into(), "missing".into()]
        }
    );
    run.handle_recalled([(
        "same".to_string(),
        Seen {
            status: "Declined".into(),
            gap_since: None,
            checked_at: NOW,
        },
    )]);
    assert_eq!(
        run.poll(),
        Step::AskInbox {
            inbox: "session:known".into(),
            webhook_type: "status.updated",
            status: "Approved".into()
        }
    );
    run.handle_inbox(Ok(true));
    assert!(matches!(run.poll(), Step::AskInbox { inbox, .. } if inbox == "session:missing"));
    run.handle_inbox(Ok(false));
    // Not settled: remembered as a gap, not fetched.
    assert!(matches!(run.poll(), Step::List { path } if path.contains("business")));
    assert_eq!(
        remembered(&mut run),
        vec![
            (
                "known".to_string(),
                Seen {
                    status: "Approved".into(),
                    gap_since: None,
                    checked_at: NOW
                }
            ),
            (
                "missing".to_string(),
                Seen {
                    status: "Declined".into(),
                    gap_since: Some(NOW),
                    checked_at: NOW
                }
            ),
        ]
    );
}

#[test]
fn a_settled_gap_is_fetched_and_injected_once() {
    let mut run = first_page(&[row_json("s1", "Declined", UnixSecs(NOW.0 - 50))]);
    assert!(matches!(run.poll(), Step::Recall { .. }));
    run.handle_recalled([(
        "s1".to_string(),
        Seen {
            status: "Declined".into(),
            gap_since: Some(UnixSecs(NOW.0 - 600)),
            checked_at: UnixSecs(NOW.0 - 600),
        },
    )]);
    assert!(matches!(run.poll(), Step::AskInbox { .. }));
    run.handle_inbox(Ok(false));
    assert_eq!(
        run.poll(),
        Step::FetchDecision {
            path: "/session/s1/decision/".into()
        }
    );
    let decision = r#"{"session_id":"s1","status":"Declined","vendor_data":"user-1","workflow_id":"wf","id_verifications":[{"node_id":"n1","status":"Declined"}]}"#;
    run.handle_decision(Answer::Ok(decision));
    let Step::Inject { body } = run.poll() else {
        panic!("an injection");
    };
    let written: serde_json::Value = serde_json::from_str(&body).expect("json");
    assert_eq!(written["webhook_type"], "status.updated");
    assert_eq!(written["status"], "Declined");
    assert_eq!(written["timestamp"], NOW.0);
    assert_eq!(written["vendor_data"], "user-1");
    assert_eq!(
        written["decision"],
        serde_json::from_str::<serde_json::Value>(decision).expect("json")
    );
    run.handle_injected(Ok(true));
    assert!(matches!(run.poll(), Step::List { .. }));
    let (_, seen): (String, Seen) = remembered(&mut run).pop().expect("remembered");
    assert_eq!(seen.gap_since, None);
    run.handle_page(Answer::Ok(&empty_page()));
    assert_eq!(run.poll(), Step::Done);
    let (state, _) = run.finish(NOW);
    let report = state.last_run.expect("report");
    assert_eq!(
        (report.counts.gaps_found, report.counts.events_injected),
        (1, 1)
    );
    assert_eq!(report.ended, RunEnd::SweepDone);
}

#[test]
fn a_failing_api_delays_the_next_run_as_long_as_it_asks() {
    let mut run = first_page(&[]);
    assert!(matches!(run.poll(), Step::List { .. }));
    run.handle_page(Answer::Status {
        status: 429,
        retry_after: Some("120"),
    });
    assert_eq!(run.poll(), Step::Done);
    let (state, next) = run.finish(NOW);
    assert_eq!(next, UnixSecs(NOW.0 + 120));
    assert_eq!(state.failures, 1);
    let sweep = state.sweep.clone().expect("still under way");
    assert_eq!((sweep.kind, sweep.offset), (SessionKind::Business, 0));
    assert_eq!(
        begin(state.clone(), settings(), UnixSecs(NOW.0 + 119)).err(),
        Some(NotNow::Waiting(UnixSecs(NOW.0 + 120)))
    );
    // Without a Retry-After the wait doubles with each failure, up to half an hour.
    let mut state = state;
    let mut waits = Vec::new();
    let mut now = UnixSecs(NOW.0 + 120);
    for _ in 0..8 {
        let mut run = begin(state, settings(), now).expect("due");
        run.poll();
        run.handle_page(Answer::Status {
            status: 503,
            retry_after: None,
        });
        let (next_state, next) = run.finish(now);
        waits.push(next.0 - now.0);
        now = next;
        state = next_state;
    }
    assert_eq!(waits, vec![60, 120, 240, 480, 960, 1800, 1800, 1800]);
    let report = state.last_run.clone().expect("report");
    assert_eq!(report.errors, vec!["Didit's API answered 503".to_string()]);
    // One good page ends the streak.
    let mut run = begin(state, settings(), now).expect("due");
    run.poll();
    run.handle_page(Answer::Ok(&empty_page()));
    assert_eq!(run.poll(), Step::Done);
    let (state, _) = run.finish(now);
    assert_eq!(state.failures, 0);
    assert!(state.checkpoint.is_some());
}

#[test]
fn a_run_out_of_budget_leaves_the_page_to_the_next_run() {
    let rows: Vec<String> = (0..5)
        .map(|n| row_json(&format!("s{n}"), "Approved", NOW))
        .collect();
    let mut run = first_page(&rows);
    run.requests_left = 2;
    assert!(matches!(run.poll(), Step::Recall { .. }));
    run.handle_recalled([]);
    for _ in 0..2 {
        assert!(matches!(run.poll(), Step::AskInbox { .. }));
        run.handle_inbox(Ok(true));
    }
    assert_eq!(run.poll(), Step::Done);
    assert_eq!(remembered(&mut run).len(), 2);
    let (state, next) = run.finish(NOW);
    assert_eq!(
        state.last_run.as_ref().map(|r| r.ended),
        Some(RunEnd::BudgetUsed)
    );
    assert_eq!(state.sweep.as_ref().map(|s| s.offset), Some(0));
    assert_eq!(next, UnixSecs(NOW.0 + CONTINUE_AFTER_SECS));
    // The cron coming sooner does not hurry it.
    assert_eq!(
        begin(state.clone(), settings(), UnixSecs(NOW.0 + 1)).err(),
        Some(NotNow::Idle(next))
    );
    let run = begin(state, settings(), next).expect("continues");
    assert_eq!(run.state().sweep.as_ref().map(|s| s.offset), Some(0));
}

#[test]
fn a_decision_gone_or_back_in_progress_injects_nothing() {
    for (answer, remembers) in [
        (
            Answer::Status {
                status: 404,
                retry_after: None,
            },
            true,
        ),
        (
            Answer::Ok(r#"{"session_id":"s1","status":"In Progress"}"#),
            false,
        ),
        (
            Answer::Ok(r#"{"session_id":"other","status":"Approved"}"#),
            false,
        ),
        (Answer::Ok("not json"), false),
    ] {
        let mut run = first_page(&[row_json("s1", "Approved", NOW)]);
        run.poll();
        run.handle_recalled([(
            "s1".to_string(),
            Seen {
                status: "Approved".into(),
                gap_since: Some(UnixSecs(0)),
                checked_at: UnixSecs(0),
            },
        )]);
        run.poll();
        run.handle_inbox(Ok(false));
        assert!(matches!(run.poll(), Step::FetchDecision { .. }));
        run.handle_decision(answer);
        assert!(matches!(run.poll(), Step::List { .. }), "{answer:?}");
        let known = remembered(&mut run)
            .into_iter()
            .any(|(_, seen)| seen.gap_since.is_none());
        assert_eq!(known, remembers, "{answer:?}");
    }
}

#[test]
fn an_event_from_the_api_says_so_and_is_named_like_its_webhook() {
    use crate::intake::{Identified, Policy};
    use crate::risk::RiskRules;
    let row = SessionRow {
        session_id: "kyb-1".into(),
        kind: SessionKind::Business,
        status: "Approved".into(),
        created_at: NOW,
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
        .classify(&Policy {
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
    run.poll();
    let known = |checked_at| Seen {
        status: "Approved".into(),
        gap_since: None,
        checked_at,
    };
    run.handle_recalled([
        ("fresh".to_string(), known(UnixSecs(NOW.0 - 3599))),
        ("stale".to_string(), known(UnixSecs(NOW.0 - 3600))),
    ]);
    assert!(matches!(run.poll(), Step::AskInbox { inbox, .. } if inbox == "session:stale"));
    run.handle_inbox(Ok(false));
    assert_eq!(
        remembered(&mut run),
        vec![(
            "stale".to_string(),
            Seen {
                status: "Approved".into(),
                gap_since: Some(NOW),
                checked_at: NOW
            }
        )]
    );
}
