#[cfg(target_arch = "wasm32")]
use wasm_bindgen_test::wasm_bindgen_test as test;

use alloc::borrow::Cow;
use alloc::string::{String, ToString};
use alloc::vec::Vec;
use alloc::{format, vec};

use super::*;
use crate::admin::lookup_request;
use crate::identity::SubjectKind;
use crate::rejection::Rejection;

const BASE: &str = "https://verification.didit.me/v3";
const DAY_MS: i64 = 86_400_000;
/// 2026-12-07T10:00:00Z.
const NOW_MS: i64 = 1_796_637_600_000;

fn list() -> String {
    serde_json::json!([
        {"uuid": "d-old", "label": "staging", "url": "https://old.example/webhooks/didit",
         "enabled": true, "webhook_version": "v3", "subscribed_events": ["status.updated"],
         "deliveries_count": 3, "failed_deliveries_count": 0, "average_response_time_ms": null,
         "error_rate_percentage": 0.0, "last_delivery_at": null, "health_status": "healthy",
         "created_at": "2026-01-01T00:00:00Z", "updated_at": "2026-01-01T00:00:00Z"},
        {"uuid": "d-edge", "label": "edge", "url": "https://User:pw@Edge.Example:443/webhooks/didit?token=t#x",
         "enabled": true, "webhook_version": "v3", "subscribed_events": ["status.updated", 7, "data.updated"],
         "deliveries_count": 120, "failed_deliveries_count": 6, "average_response_time_ms": 41.5,
         "error_rate_percentage": 5.0, "last_delivery_at": "2026-12-07T09:59:00Z",
         "health_status": "degraded", "daily_points": [{"date": "2026-12-07", "count": 3}],
         "secret_shared_key": "never-shown"},
        {"uuid": "d-off", "url": "https://edge.example/other", "enabled": false},
        {"label": "no uuid"},
        "not an object"
    ])
    .to_string()
}

#[test]
fn the_list_reads_into_a_view_without_secrets_or_credentials() {
    let destinations = parse_destinations(&list()).expect("a list");
    assert_eq!(
        destinations
            .iter()
            .map(|d| d.uuid.as_str())
            .collect::<Vec<_>>(),
        ["d-old", "d-edge", "d-off"]
    );
    let edge = &destinations[1];
    assert_eq!(
        edge.url.as_deref(),
        Some("https://Edge.Example:443/webhooks/didit")
    );
    assert_eq!(edge.subscribed_events, ["status.updated", "data.updated"]);
    assert_eq!(
        (edge.deliveries_count, edge.failed_deliveries_count),
        (Some(120), Some(6))
    );
    assert_eq!(edge.average_response_time_ms, Some(41.5));
    assert_eq!(destinations[0].average_response_time_ms, None);
    assert_eq!(edge.health_status.as_deref(), Some("degraded"));
    let written = serde_json::to_string(&destinations).expect("writes");
    for hidden in ["never-shown", "pw", "token=t", "secret"] {
        assert!(!written.contains(hidden), "{hidden} in {written}");
    }
    assert_eq!(destinations[2].label, None);
}

#[test]
fn a_list_that_is_not_an_array_is_unreadable() {
    for body in ["{}", "null", "", "[", "{\"results\": []}"] {
        assert_eq!(
            parse_destinations(body).map(|_| ()).map_err(|e| e.code()),
            Err("didit_unreadable"),
            "{body}"
        );
    }
    assert_eq!(parse_destinations("[]"), Ok(Vec::new()));
}

#[test]
fn this_edge_is_the_enabled_destinations_on_the_requests_host_or_the_one_configured() {
    let mut destinations = parse_destinations(&list()).expect("a list");
    let by = select_destinations(
        &mut destinations,
        None,
        "https://edge.example/admin/didit/deliveries",
    );
    assert_eq!(by, ChosenBy::SameHost);
    let marked = |destinations: &[Destination]| -> Vec<String> {
        destinations
            .iter()
            .filter(|d| d.this_edge)
            .map(|d| d.uuid.clone())
            .collect()
    };
    assert_eq!(marked(&destinations), ["d-edge"], "d-off is disabled");
    select_destinations(&mut destinations, None, "http://edge.example/admin");
    assert!(marked(&destinations).is_empty(), "another scheme");
    select_destinations(&mut destinations, None, "https://edge.example:8443/admin");
    assert!(marked(&destinations).is_empty(), "another port");
    select_destinations(&mut destinations, None, "not a url");
    assert!(marked(&destinations).is_empty());
    let by = select_destinations(&mut destinations, Some("d-off"), "https://edge.example/");
    assert_eq!(
        (by, marked(&destinations)),
        (ChosenBy::Setting, vec!["d-off".into()])
    );
}

#[test]
fn an_origin_is_scheme_host_and_port() {
    assert_eq!(
        origin_of("HTTP://a:b@Host.example:80/x?y").as_deref(),
        Some("http://host.example")
    );
    assert_eq!(
        origin_of("http://127.0.0.1:8787/admin").as_deref(),
        Some("http://127.0.0.1:8787")
    );
    for url in ["ftp://x/", "https:///path", "//x", ""] {
        assert_eq!(origin_of(url), None, "{url}");
    }
}

fn row(session: &str, at: &str, status: Option<u16>) -> serde_json::Value {
    serde_json::json!({
        "uuid": format!("a-{at}"), "session_id": session, "request_url": "https://edge.example/webhooks/didit",
        "response_status": status, "response_time_ms": 12, "status": if status == Some(200) { "success" } else { "failed" },
        "webhook_type": "status.updated", "created_at": at,
    })
}

fn page(rows: Vec<serde_json::Value>, next: Option<&str>) -> String {
    serde_json::json!({"count": rows.len(), "next": next, "previous": null, "results": rows})
        .to_string()
}

#[test]
fn a_deliveries_page_reads_leniently() {
    let body = serde_json::json!({"next": 3, "results": [
        {"session_id": "s1", "created_at": "2026-12-07T09:00:00.250Z", "response_status": 70000,
         "response_time_ms": 12.7, "webhook_type": 5},
        {"created_at": "yesterday", "response_time_ms": -1.0},
        1
    ]})
    .to_string();
    let page = parse_deliveries_page(&body, "d").expect("a page");
    assert_eq!(page.next, None, "a next that is not a string");
    let [first, second] = &page.results[..] else {
        panic!("two rows: {:?}", page.results)
    };
    assert_eq!(first.at_ms, Some(NOW_MS - 3_600_000 + 250));
    assert_eq!(
        (
            first.response_status,
            first.response_time_ms,
            &first.webhook_type
        ),
        (None, Some(12), &None)
    );
    assert_eq!((second.at_ms, second.response_time_ms), (None, None));
    for body in ["[]", "{\"results\": {}}", "{", "{\"next\": null}"] {
        assert!(parse_deliveries_page(body, "d").is_err(), "{body}");
    }
}

fn lookup_at(created_secs: i64, received_ms: &[i64]) -> String {
    let events: Vec<_> = received_ms
        .iter()
        .map(|at| serde_json::json!({"created_at": created_secs, "received": {"at_ms": at}}))
        .collect();
    serde_json::json!({"subject_kind": "session", "events": events}).to_string()
}

#[test]
fn the_days_read_are_those_of_the_timeline_or_the_last_two() {
    // Created just before midnight, received (after a refused try) just after.
    let midnight = NOW_MS - NOW_MS.rem_euclid(DAY_MS);
    let window = DayWindow::of_lookup(
        Some(&lookup_at(midnight / 1000 - 60, &[midnight + 120_000])),
        NOW_MS,
    );
    let today = NOW_MS / DAY_MS;
    assert_eq!(
        (window.first_day, window.last_day, window.from_timeline),
        (today - 1, today, true)
    );
    for unknown in [None, Some("subject_not_found"), Some("{\"events\": []}")] {
        let window = DayWindow::of_lookup(unknown, NOW_MS);
        assert_eq!(
            (window.first_day, window.last_day, window.from_timeline),
            (today - 1, today, false),
            "{unknown:?}"
        );
    }
    // A timeline spanning far more than a month keeps its latest days.
    let window = DayWindow::of_lookup(Some(&lookup_at(0, &[NOW_MS])), NOW_MS);
    assert_eq!(window.last_day - window.first_day, MAX_WINDOW_DAYS - 1);
    // A receipt "in the future" of a skewed clock still ends at today.
    let window = DayWindow::of_lookup(Some(&lookup_at(i64::MAX, &[i64::MAX])), NOW_MS);
    assert_eq!(window.last_day, today);
}

fn scan(window_days: i64) -> SessionScan {
    let mut destinations = parse_destinations(&list()).expect("a list");
    select_destinations(&mut destinations, Some("d-edge"), "https://edge.example/");
    let today = NOW_MS / DAY_MS;
    SessionScan::new(
        "s1",
        &destinations,
        DayWindow {
            first_day: today - window_days,
            last_day: today,
            from_timeline: true,
        },
    )
}

#[test]
fn a_scan_follows_next_pages_and_keeps_the_sessions_rows_oldest_first() {
    let mut scan = scan(1);
    assert_eq!(
        scan.next_path(),
        Some("/webhook/destinations/d-edge/deliveries/?limit=100&date_from=2026-12-06&date_to=2026-12-07")
    );
    let next = format!("{BASE}/webhook/destinations/d-edge/deliveries/?limit=100&offset=100");
    let first = page(
        vec![
            row("s1", "2026-12-07T09:05:00Z", Some(200)),
            row("s2", "2026-12-07T09:04:00Z", Some(200)),
            row("s1", "2026-12-07T09:01:00Z", Some(503)),
        ],
        Some(&next),
    );
    scan.handle_page(&first, BASE).expect("read");
    assert_eq!(
        scan.next_path(),
        Some("/webhook/destinations/d-edge/deliveries/?limit=100&offset=100")
    );
    scan.handle_page(
        &page(vec![row("s1", "2026-12-07T09:00:00Z", Some(401))], None),
        BASE,
    )
    .expect("read");
    assert_eq!(scan.next_path(), None);
    let found = scan.finish();
    assert!(found.complete && !found.budget_reached);
    assert_eq!(found.pages_read, 2);
    assert_eq!(found.destinations, ["d-edge"]);
    assert_eq!(
        found
            .attempts
            .iter()
            .map(|a| a.response_status)
            .collect::<Vec<_>>(),
        [Some(401), Some(503), Some(200)]
    );
    let written = serde_json::to_string(&found).expect("writes");
    assert!(!written.contains("request_url") && !written.contains("s2"));
}

#[test]
fn a_scan_stops_at_its_budget_and_says_so() {
    let mut scan = scan(0);
    let looping = format!("{BASE}/webhook/destinations/d-edge/deliveries/?offset=1");
    let mut pages = 0;
    while scan.next_path().is_some() {
        scan.handle_page(
            &page(
                vec![row("s1", "2026-12-07T09:00:00Z", Some(503))],
                Some(&looping),
            ),
            BASE,
        )
        .expect("read");
        pages += 1;
    }
    assert_eq!(pages, PAGE_BUDGET);
    let found = scan.finish();
    assert!(!found.complete && found.budget_reached);
    assert_eq!(found.attempts.len(), PAGE_BUDGET as usize);
}

#[test]
fn a_next_page_elsewhere_is_not_followed() {
    for elsewhere in [
        "https://evil.example/v3/webhook/destinations/d-edge/deliveries/?offset=100",
        "https://verification.didit.me/v3evil/x",
        "/v3/webhook/relative",
    ] {
        let mut scan = scan(0);
        scan.handle_page(&page(Vec::new(), Some(elsewhere)), BASE)
            .expect("read");
        assert_eq!(scan.next_path(), None, "{elsewhere}");
        let found = scan.finish();
        assert!(!found.complete && !found.budget_reached, "{elsewhere}");
    }
}

#[test]
fn no_destination_of_this_edge_reads_nothing() {
    let destinations = parse_destinations(&list()).expect("a list");
    let scan = SessionScan::new("s1", &destinations, DayWindow::of_lookup(None, NOW_MS));
    assert_eq!(scan.next_path(), None);
    let found = scan.finish();
    assert!(found.destinations.is_empty() && found.complete);
    assert_eq!(found.days_from, "recent_days");
}

#[test]
fn a_destination_id_is_escaped_in_the_path() {
    let mut destinations =
        parse_destinations(r#"[{"uuid": "a/../b?c", "enabled": true}]"#).expect("a list");
    select_destinations(&mut destinations, Some("a/../b?c"), "https://x/");
    let scan = SessionScan::new("s1", &destinations, DayWindow::of_lookup(None, NOW_MS));
    assert!(scan
        .next_path()
        .is_some_and(|path| path.starts_with("/webhook/destinations/a%2F..%2Fb%3Fc/deliveries/?")));
}

#[test]
fn a_session_is_named_as_a_lookup_names_it() {
    let subject = deliveries_request(
        lookup_request(br#"{"subject_kind":"business_session","subject_id":"b1"}"#)
            .expect("a target"),
    )
    .expect("a session");
    assert_eq!(
        (subject.kind, subject.id),
        (SubjectKind::BusinessSession, Cow::from("b1"))
    );
    let long = format!(
        r#"{{"subject_kind":"session","subject_id":"{}"}}"#,
        "a".repeat(257)
    );
    for body in [
        &br#"{"subject_kind":"user","subject_id":"u1"}"#[..],
        br#"{"subject_kind":"session","subject_id":"s1","event_id":"evt_1"}"#,
        br#"{"event_id":"evt_1"}"#,
        long.as_bytes(),
    ] {
        let refused = deliveries_request(lookup_request(body).expect("a target"));
        assert!(
            matches!(refused, Err(Rejection::InvalidSubject { .. })),
            "{body:?}"
        );
    }
}

#[test]
fn didits_answers_become_stable_codes() {
    let now = UnixSecs(NOW_MS / 1000);
    let code = |answer| answer_body(answer, now).map_err(|e| (e.status(), e.code()));
    use crate::reconcile::api::Answer;
    assert_eq!(code(Answer::Ok("[]")), Ok("[]"));
    for status in [401, 403] {
        let refused = answer_body(
            Answer::Status {
                status,
                retry_after: None,
            },
            now,
        )
        .expect_err("refused");
        assert_eq!(
            (refused.status(), refused.code()),
            (403, "didit_key_not_allowed")
        );
        assert!(format!("{refused}").contains(NEEDED_SCOPES));
    }
    let limited = answer_body(
        Answer::Status {
            status: 429,
            retry_after: Some("7"),
        },
        now,
    )
    .expect_err("limited");
    assert_eq!(
        limited,
        DiditViewError::RateLimited {
            retry_after_secs: Some(7)
        }
    );
    assert_eq!(limited.status(), 429);
    assert!(format!("{limited}").contains("7 s"));
    assert_eq!(
        code(Answer::Status {
            status: 503,
            retry_after: None
        }),
        Err((502, "didit_unreachable"))
    );
    assert_eq!(code(Answer::Unreachable), Err((502, "didit_unreachable")));
    assert_eq!(
        code(Answer::Status {
            status: 404,
            retry_after: None
        }),
        Err((502, "didit_refused"))
    );
    assert_eq!(code(Answer::TooLarge), Err((502, "didit_unreadable")));
    let rejection = Rejection::Didit(DiditViewError::KeyNotAllowed { status: 403 });
    assert_eq!(
        (rejection.status(), rejection.code()),
        (403, "didit_key_not_allowed")
    );
}
