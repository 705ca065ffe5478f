#[cfg(target_arch = "wasm32")]
use wasm_bindgen_test::wasm_bindgen_test as test;

use alloc::string::String;
use alloc::vec::Vec;

use super::*;
use crate::admin::LastProbe;
use crate::attempt::AttemptResult;
use crate::origin::Origin;
use crate::time::UnixMs;

const NOW: UnixMs = UnixMs(1_700_000_123_456);

fn parse(flush: &str) -> Vec<Flushed> {
    flush
        .lines()
        .filter(|line| !line.is_empty())
        .map(|line| parse_line(line).expect("reads"))
        .collect()
}

fn counts(results: &[(AttemptResult, u64)]) -> Counts {
    let mut counts = Counts::default();
    for (result, latency) in results {
        counts.record(result, *latency);
    }
    counts
}

#[test]
fn a_latency_lands_in_the_bucket_whose_bound_is_above_it() {
    assert_eq!(Histogram::bucket(0), 0);
    assert_eq!(Histogram::bucket(7), 0);
    assert_eq!(Histogram::bucket(8), 1);
    assert_eq!(Histogram::bucket(1_000), 7);
    assert_eq!(Histogram::upper_ms(7), 1_024);
    assert_eq!(Histogram::bucket(u64::MAX), LATENCY_BUCKETS - 1);
}

#[test]
fn percentiles_are_the_bound_of_the_bucket_holding_the_rank() {
    let mut latency = Histogram::default();
    assert_eq!(latency.percentile(50), None);
    for ms in 1..=94 {
        latency.record(ms % 7);
    }
    for _ in 0..6 {
        latency.record(900);
    }
    assert_eq!(latency.percentile(50), Some(8));
    assert_eq!(latency.percentile(95), Some(1_024));
    let mut one = Histogram::default();
    one.record(20);
    assert_eq!(one.percentile(50), Some(32));
    assert_eq!(one.percentile(95), Some(32));
}

#[test]
fn each_result_counts_as_its_kind_and_merges_add() {
    let mut a = counts(&[
        (AttemptResult::Status(204), 10),
        (AttemptResult::Status(503), 20),
        (AttemptResult::Aborted(410), 5),
        (
            AttemptResult::Redirect {
                status: 302,
                location: None,
            },
            5,
        ),
    ]);
    let b = counts(&[(AttemptResult::Timeout, 3_000), (AttemptResult::Network, 1)]);
    a.merge(&b);
    assert_eq!(
        (a.attempts, a.delivered, a.refused, a.timeouts, a.network),
        (6, 1, 3, 1, 1)
    );
    assert_eq!(a.latency.total(), 6);
}

#[test]
fn counts_read_back_as_written_and_bad_text_is_refused() {
    let written = counts(&[
        (AttemptResult::Status(200), 12),
        (AttemptResult::Timeout, 5_000),
    ]);
    let text = written.encode();
    assert_eq!(text.split(' ').count(), Counts::fields());
    assert_eq!(Counts::decode(&text), Ok(written));
    assert_eq!(Counts::decode("1 1 0 0"), Err(DecodeError::NotANumber));
    assert_eq!(Counts::decode("1 1 0 0 x"), Err(DecodeError::NotANumber));
    let short = Counts::decode("2 1 1 0 0 2").expect("a short histogram reads");
    assert_eq!(short.latency.total(), 2);
    let mut long = text;
    long.push_str(" 1");
    assert_eq!(Counts::decode(&long), Err(DecodeError::TooLong));
}

#[test]
fn a_tally_flushes_once_per_origin_and_bucket_then_is_empty() {
    let mut tally = Tally::new();
    assert_eq!(tally.take(), None);
    tally.record("a", &AttemptResult::Status(204), 30, NOW);
    tally.record("a", &AttemptResult::Status(503), 40, UnixMs(NOW.0 + 1));
    tally.record("b c", &AttemptResult::Network, 2, NOW);
    tally.record("bad\nname", &AttemptResult::Network, 2, NOW);
    tally.record(
        "a",
        &AttemptResult::Status(204),
        30,
        UnixMs(NOW.0 + BUCKET_MS),
    );
    let flush = tally.take().expect("something counted");
    assert_eq!(tally.take(), None);
    let read = parse(&flush);
    let summary: Vec<(String, i64, u64)> = read
        .iter()
        .map(|line| (line.origin.clone(), line.bucket.0, line.counts.attempts))
        .collect();
    let first = bucket_of(NOW).0;
    assert_eq!(
        summary,
        [
            ("a".into(), first, 2),
            ("b c".into(), first, 1),
            ("a".into(), first + BUCKET_MS, 1)
        ]
    );
    assert_eq!(parse(""), Vec::new());
    assert_eq!(parse_line("1 2 3"), Err(DecodeError::NoOrigin));
    assert_eq!(parse_line("1 2 3\t"), Err(DecodeError::NoOrigin));
    assert_eq!(parse_line("x 1 1 0 0 0\ta"), Err(DecodeError::NotANumber));
}

#[test]
fn a_tally_holds_a_bounded_number_of_pairs() {
    let mut tally = Tally::new();
    for i in 0..(MAX_PENDING as i64 + 5) {
        tally.record(
            "a",
            &AttemptResult::Status(204),
            1,
            UnixMs(NOW.0 + i * BUCKET_MS),
        );
    }
    tally.record("a", &AttemptResult::Status(204), 1, NOW);
    let read = parse(&tally.take().expect("counted"));
    assert_eq!(read.len(), MAX_PENDING);
    assert_eq!(read.first().map(|line| line.counts.attempts), Some(2));
}

#[test]
fn the_hour_and_day_are_whole_buckets_and_older_ones_are_dropped() {
    let now = bucket_of(NOW);
    assert_eq!(oldest_kept(NOW).0, now.0 - DAY_MS + BUCKET_MS);
    assert!(keeps(now, NOW));
    assert!(keeps(oldest_kept(NOW), NOW));
    assert!(!keeps(UnixMs(oldest_kept(NOW).0 - BUCKET_MS), NOW));
    assert!(!keeps(UnixMs(now.0 + BUCKET_MS), NOW));
    assert!(!keeps(UnixMs(now.0 + 1), NOW));
    let ok = counts(&[(AttemptResult::Status(204), 100)]);
    let failed = counts(&[(AttemptResult::Status(503), 10)]);
    let rows = [
        ("a".into(), now, ok),
        ("a".into(), UnixMs(now.0 - HOUR_MS + BUCKET_MS), failed),
        ("a".into(), UnixMs(now.0 - HOUR_MS), ok),
        ("a".into(), UnixMs(now.0 - DAY_MS), ok),
        ("gone".into(), now, failed),
    ];
    let configured: Vec<Origin> = crate::origin::parse_origins(
        r#"[{"name":"b","url":"https://b.example/"},{"name":"a","url":"https://a.example/"}]"#,
    )
    .expect("valid");
    let probed = LastProbe {
        at_ms: UnixMs(NOW.0 - 30_000),
        up: true,
    };
    let probes = [("a".into(), probed), ("removed".into(), probed)];
    let view = summarize(&configured, &rows, &probes, NOW);
    let names: Vec<&str> = view.origins.iter().map(|o| o.origin.as_str()).collect();
    assert_eq!(names, ["b", "a", "gone"]);
    let b = &view.origins[0];
    assert_eq!(
        (b.hour.attempts, b.hour.success_per_mille, b.hour.p50_ms),
        (0, None, None)
    );
    let a = &view.origins[1];
    assert_eq!(
        (a.hour.attempts, a.hour.delivered, a.hour.refused),
        (2, 1, 1)
    );
    assert_eq!(a.hour.success_per_mille, Some(500));
    assert_eq!((a.hour.p50_ms, a.hour.p95_ms), (Some(16), Some(128)));
    assert_eq!((a.day.attempts, a.day.delivered), (3, 2));
    assert_eq!(a.day.success_per_mille, Some(666));
    assert_eq!(view.bucket_ms, BUCKET_MS);
    assert_eq!((b.last_probe, a.last_probe), (None, Some(probed)));
    assert_eq!(
        view.origins[2].last_probe, None,
        "a probe is shown only beside counts or a configured origin"
    );
}
