#[cfg(target_arch = "wasm32")]
use wasm_bindgen_test::wasm_bindgen_test as test;

use alloc::rc::Rc;
use alloc::vec::Vec;

use super::breaker::PROBE_TIMEOUT_MS;
use super::*;
use crate::budget::SubrequestBudget;

fn policy() -> BreakerPolicy {
    BreakerPolicy {
        failures_to_open: 3,
        successes_to_close: 2,
        cool_down_ms: 1_000,
        max_cool_down_ms: 4_000,
    }
}

#[test]
fn opens_after_consecutive_failures_only() {
    let mut breaker = Breaker::new(policy());
    breaker.failed(0, None);
    breaker.failed(1, None);
    breaker.succeeded(); // a success in between resets the count
    breaker.failed(2, None);
    breaker.failed(3, None);
    assert_eq!(breaker.admit(4), Admit::Yes);
    breaker.failed(4, None);
    assert_eq!(
        breaker.state(),
        BreakerState::Open {
            until_ms: 1_004,
            cool_down_ms: 1_000
        }
    );
    assert_eq!(breaker.admit(500), Admit::No { until_ms: 1_004 });
}

#[test]
fn half_open_lets_one_probe_and_closes_after_enough_successes() {
    let mut breaker = Breaker::new(policy());
    for t in 0..3 {
        breaker.failed(t, None);
    }
    assert_eq!(breaker.admit(1_002), Admit::Probe);
    assert!(
        matches!(breaker.admit(1_003), Admit::No { .. }),
        "only one probe at a time"
    );
    breaker.succeeded();
    assert_eq!(breaker.admit(1_004), Admit::Probe);
    breaker.succeeded();
    assert_eq!(
        breaker.state(),
        BreakerState::Closed {
            consecutive_failures: 0
        }
    );
    assert_eq!(breaker.admit(1_005), Admit::Yes);
}

#[test]
fn failed_probe_reopens_with_a_doubled_capped_cool_down() {
    let mut breaker = Breaker::new(policy());
    for t in 0..3 {
        breaker.failed(t, None);
    }
    let mut now = 1_002;
    let mut cool_downs = Vec::new();
    for _ in 0..4 {
        assert_eq!(breaker.admit(now), Admit::Probe);
        breaker.failed(now, None);
        let BreakerState::Open {
            until_ms,
            cool_down_ms,
        } = breaker.state()
        else {
            panic!("not open")
        };
        cool_downs.push(cool_down_ms);
        now = until_ms;
    }
    assert_eq!(cool_downs, [2_000, 4_000, 4_000, 4_000]);
}

#[test]
fn retry_after_opens_at_once_for_as_long_as_asked() {
    let mut breaker = Breaker::new(policy());
    breaker.failed(0, retry_after_ms(Some("30")));
    assert_eq!(
        breaker.state(),
        BreakerState::Open {
            until_ms: 30_000,
            cool_down_ms: 30_000
        }
    );
    breaker.failed(10, retry_after_ms(Some("60")));
    assert_eq!(breaker.admit(59_000), Admit::No { until_ms: 60_010 });
    assert_eq!(retry_after_ms(Some("Wed, 21 Oct 2015 07:28:00 GMT")), None);
    assert_eq!(retry_after_ms(Some("999999")), Some(86_400_000));
}

#[test]
fn a_lost_probe_does_not_block_forever() {
    let mut breaker = Breaker::new(policy());
    for t in 0..3 {
        breaker.failed(t, None);
    }
    assert_eq!(breaker.admit(1_002), Admit::Probe);
    assert!(matches!(
        breaker.admit(1_002 + PROBE_TIMEOUT_MS - 1),
        Admit::No { .. }
    ));
    assert_eq!(breaker.admit(1_002 + PROBE_TIMEOUT_MS), Admit::Probe);
}

#[test]
fn snapshot_readers_skip_origins_cooling_down() {
    let origins = crate::origin::parse_origins(
        r#"[{"name":"a","url":"https://a"},{"name":"b","url":"https://b"},{"name":"c","url":"https://c"}]"#,
    )
    .expect("origins");
    let open_a = BreakerState::Open {
        until_ms: 1_000,
        cool_down_ms: 1_000,
    };
    let state_of = |name: &str| (name == "a").then_some(open_a);
    let names = |now| {
        available(origins.iter().collect(), state_of, now)
            .into_iter()
            .map(|o| o.name.clone())
            .collect::<Vec<_>>()
    };
    assert_eq!(names(999), ["b", "c"]);
    assert_eq!(names(1_000), ["a", "b", "c"]);
}

/// A simulated origin that is down from 10 s to 40 s, probed every 500 ms: the breaker opens
/// within three failures, lets only spaced probes through while down, and closes soon after
/// the origin is back.
#[test]
fn simulated_outage() {
    let mut breaker = Breaker::new(policy());
    let origin_up = |t: i64| !(10_000..40_000).contains(&t);
    let (mut sent_while_down, mut closed_at) = (Vec::new(), None);
    for step in 0..120 {
        let now = step * 500;
        match breaker.admit(now) {
            Admit::No { .. } => continue,
            Admit::Yes | Admit::Probe => {
                if !origin_up(now) {
                    sent_while_down.push(now);
                    breaker.failed(now, None);
                } else {
                    breaker.succeeded();
                    if now >= 40_000
                        && closed_at.is_none()
                        && matches!(breaker.state(), BreakerState::Closed { .. })
                    {
                        closed_at = Some(now);
                    }
                }
            }
        }
    }
    // Three failures open it; then probes after cool-downs of 1, 2, then 4 s (the cap),
    // instead of the 60 requests an unprotected sender would make in those 30 s.
    assert_eq!(
        sent_while_down,
        [10_000, 10_500, 11_000, 12_000, 14_000, 18_000, 22_000, 26_000, 30_000, 34_000, 38_000]
    );
    // First probe after recovery at 42 s, the second success closes it.
    assert_eq!(closed_at, Some(42_500));
}

#[test]
fn only_outcomes_that_move_a_breaker_need_reporting() {
    let closed = |consecutive_failures| BreakerState::Closed {
        consecutive_failures,
    };
    assert!(report_changes_nothing(None, true, 0));
    assert!(report_changes_nothing(Some(closed(0)), true, 0));
    assert!(!report_changes_nothing(Some(closed(0)), false, 0));
    assert!(!report_changes_nothing(Some(closed(2)), true, 0));
    let half_open = BreakerState::HalfOpen {
        consecutive_successes: 0,
        cool_down_ms: 1_000,
        probe_since_ms: None,
    };
    assert!(!report_changes_nothing(Some(half_open), true, 0));
    let cooled = BreakerState::Open {
        until_ms: 10,
        cool_down_ms: 10,
    };
    assert!(
        !report_changes_nothing(Some(cooled), true, 20),
        "the probe's success counts"
    );
}

fn report(origin: &str, up: bool, at_ms: i64) -> Report {
    Report {
        origin: origin.into(),
        up,
        retry_after_ms: None,
        at_ms: UnixMs(at_ms),
        probe: false,
    }
}

#[test]
fn an_unreadable_breaker_is_a_fresh_one_and_says_so() {
    let closed = Breaker::new(BreakerPolicy::default());
    assert_eq!(Restored::from_stored(None), Restored::Fresh(closed));
    assert_eq!(
        Restored::from_stored(Some(r#"{"state":"melted"}"#)),
        Restored::Unreadable(closed)
    );
    let mut open = Breaker::new(policy());
    open.failed(0, Some(5_000));
    let text = serde_json::to_string(&open).expect("json");
    assert_eq!(Restored::from_stored(Some(&text)), Restored::Stored(open));
    assert_eq!(Restored::from_stored(Some(&text)).breaker(), open);

    let (snapshot, unreadable) = snapshot_of([
        (String::from("a"), text),
        (String::from("b"), String::from("not json")),
    ]);
    assert_eq!(snapshot.get("a"), Some(&open.state()));
    assert_eq!(snapshot.get("b"), None, "left out: available");
    assert_eq!(unreadable, ["b"]);
}

#[test]
fn a_snapshot_is_reused_for_two_seconds_then_fetched_if_the_budget_allows() {
    let mut cache = SnapshotCache::new();
    let mut budget = SubrequestBudget::new(2);
    assert_eq!(cache.lookup(UnixMs(0), &mut budget), Lookup::Fetch);
    assert_eq!(budget.left(), 1, "a fetch takes a subrequest");
    let mut fetched = Snapshot::new();
    fetched.insert(
        "a".into(),
        BreakerState::Closed {
            consecutive_failures: 1,
        },
    );
    let held = cache.handle_fetched(Some(fetched.clone()), UnixMs(1_000));
    assert_eq!(*held, fetched);
    assert_eq!(
        cache.lookup(UnixMs(2_999), &mut budget),
        Lookup::Use(held.clone())
    );
    assert_eq!(budget.left(), 1, "a cached snapshot costs nothing");
    assert_eq!(cache.lookup(UnixMs(3_000), &mut budget), Lookup::Fetch);
    assert_eq!(
        cache.lookup(UnixMs(3_000), &mut budget),
        Lookup::Use(held),
        "over budget: the stale one"
    );
    assert_eq!(
        SnapshotCache::new().lookup(UnixMs(0), &mut budget),
        Lookup::Use(Rc::default()),
        "over budget with nothing held: every origin available"
    );
}

#[test]
fn unreadable_health_fails_open_and_keeps_what_was_held() {
    let mut cache = SnapshotCache::new();
    let mut fetched = Snapshot::new();
    fetched.insert(
        "a".into(),
        BreakerState::Open {
            until_ms: 9_000,
            cool_down_ms: 9_000,
        },
    );
    cache.handle_fetched(Some(fetched.clone()), UnixMs(0));
    assert!(cache.handle_fetched(None, UnixMs(5_000)).is_empty());
    let mut budget = SubrequestBudget::new(0);
    assert_eq!(
        cache.lookup(UnixMs(6_000), &mut budget),
        Lookup::Use(Rc::new(fetched))
    );
}

#[test]
fn the_held_snapshot_takes_each_reported_step() {
    let mut cache = SnapshotCache::new();
    cache.handle_reported(&report("a", false, 0));
    assert_eq!(cache, SnapshotCache::new(), "nothing held, nothing stepped");
    cache.handle_fetched(Some(Snapshot::new()), UnixMs(0));
    for at in [0, 1, 2] {
        cache.handle_reported(&report("a", false, at));
    }
    let mut budget = SubrequestBudget::new(0);
    let Lookup::Use(snapshot) = cache.lookup(UnixMs(3), &mut budget) else {
        panic!("held")
    };
    let mut shared = Breaker::new(BreakerPolicy::default());
    for at in [0, 1, 2] {
        shared.report(false, None, at);
    }
    assert_eq!(snapshot.get("a"), Some(&shared.state()));
    assert!(matches!(shared.state(), BreakerState::Open { .. }));
}

#[test]
fn a_report_is_what_the_shared_object_and_a_local_copy_both_apply() {
    let mut shared = Breaker::new(policy());
    let mut local = Breaker::with_state(policy(), shared.state());
    for (up, at) in [
        (false, 0),
        (false, 10),
        (false, 20),
        (true, 1_500),
        (true, 1_600),
    ] {
        shared.report(up, None, at);
        local.report(up, None, at);
    }
    assert_eq!(shared, local);
    assert_eq!(
        shared.state(),
        BreakerState::Closed {
            consecutive_failures: 0
        },
        "opened after three failures, closed by two successes after the cool-down"
    );
}

#[test]
fn stored_states_read_back_and_a_missing_field_is_refused() {
    let states = [
        BreakerState::Closed {
            consecutive_failures: 2,
        },
        BreakerState::Open {
            until_ms: 5,
            cool_down_ms: 10_000,
        },
        BreakerState::HalfOpen {
            consecutive_successes: 1,
            cool_down_ms: 20_000,
            probe_since_ms: None,
        },
        BreakerState::HalfOpen {
            consecutive_successes: 0,
            cool_down_ms: 20_000,
            probe_since_ms: Some(7),
        },
    ];
    for state in states {
        let stored = serde_json::to_string(&state).expect("json");
        assert_eq!(
            serde_json::from_str::<BreakerState>(&stored).ok(),
            Some(state)
        );
    }
    let tag_last = r#"{"until_ms":5,"cool_down_ms":10,"state":"open"}"#;
    assert_eq!(
        serde_json::from_str::<BreakerState>(tag_last).ok(),
        Some(BreakerState::Open {
            until_ms: 5,
            cool_down_ms: 10
        })
    );
    for broken in [
        r#"{"state":"open","until_ms":5}"#,
        r#"{"state":"closed"}"#,
        r#"{"state":"ajar","consecutive_failures":0}"#,
        r#"{"consecutive_failures":0}"#,
    ] {
        assert!(
            serde_json::from_str::<BreakerState>(broken).is_err(),
            "{broken}"
        );
    }
}
