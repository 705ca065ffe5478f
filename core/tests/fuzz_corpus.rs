//! Replays the committed fuzz corpus (`fuzz/corpus/<target>/`, seeded from the fixtures and
//! grown by `cargo fuzz`) and every input fuzzing ever found failing (`fuzz/regressions/<target>/`,
//! kept apart because libFuzzer rewrites and minimizes the corpus) through the same target
//! bodies the fuzzer runs, on stable, so CI guards them without nightly.

#[allow(dead_code)]
#[path = "../../fuzz/targets.rs"]
mod targets;

use std::path::Path;

fn replay(target: &str, run: fn(&[u8])) {
    let fuzz = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz");
    let corpus = replay_dir(&fuzz.join("corpus").join(target), run);
    assert!(corpus > 0, "{target}: the corpus is empty");
    let regressions = fuzz.join("regressions").join(target);
    if regressions.exists() {
        replay_dir(&regressions, run);
    }
}

/// Runs every file of `dir`; the number run.
fn replay_dir(dir: &Path, run: fn(&[u8])) -> usize {
    let mut inputs = 0;
    for entry in std::fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        let path = entry.expect("corpus entry").path();
        let data = std::fs::read(&path).expect("corpus file");
        let outcome = std::panic::catch_unwind(|| run(&data));
        assert!(outcome.is_ok(), "{} fails", path.display());
        inputs += 1;
    }
    inputs
}

#[test]
fn intake_corpus() {
    replay("intake", targets::intake);
}

#[test]
fn canonical_corpus() {
    replay("canonical", targets::canonical);
}

#[test]
fn envelope_corpus() {
    replay("envelope", targets::envelope);
}

#[test]
fn stream_token_corpus() {
    replay("stream_token", targets::stream_token);
}

#[test]
fn config_corpus() {
    replay("config", targets::config);
}

#[test]
fn admin_query_corpus() {
    replay("admin_query", targets::admin_query);
}

#[test]
fn didit_api_corpus() {
    replay("didit_api", targets::didit_api);
}

#[test]
fn didit_view_corpus() {
    replay("didit_view", targets::didit_view);
}

#[test]
fn access_corpus() {
    replay("access", targets::access);
}
