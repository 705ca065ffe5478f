//! Faults injected on purpose, so the integration tests can show the inbox survives what the
//! platform rarely does. Only the `fault-injection` build (the tests' own) has them; in the
//! build that is deployed every function here is a no-op that reads nothing.

use worker::{Env, Result};

/// The base of the inbox's alarm backoff: a second, or in the test build
/// `FAULT_ALARM_BACKOFF_MS`, so a test can watch many failed runs in a few seconds.
pub(crate) fn alarm_backoff_base_ms(env: &Env) -> u64 {
    #[cfg(feature = "fault-injection")]
    if let Some(ms) = var(env, "FAULT_ALARM_BACKOFF_MS") {
        return ms;
    }
    let _ = env;
    1_000
}

/// How long a reconciliation run holds its lease: `lease_secs`, or in the test build
/// `FAULT_RECONCILE_LEASE_SECS`, so a test can watch runs hand over within a minute.
pub(crate) fn reconcile_lease_secs(env: &Env, lease_secs: u64) -> u64 {
    #[cfg(feature = "fault-injection")]
    if let Some(secs) = var(env, "FAULT_RECONCILE_LEASE_SECS") {
        return secs;
    }
    let _ = env;
    lease_secs
}

/// How a set-aside reconciliation gap is tried again: `retry`, or in the test build
/// `FAULT_RECONCILE_GAP_TRIES` tries `FAULT_RECONCILE_GAP_RETRY_SECS` apart, so a test can watch
/// a gap given up on.
pub(crate) fn reconcile_gap_retry(
    env: &Env,
    retry: didit_edge_core::reconcile::GapRetry,
) -> didit_edge_core::reconcile::GapRetry {
    #[cfg(feature = "fault-injection")]
    if let (Some(tries), Some(secs)) = (
        var(env, "FAULT_RECONCILE_GAP_TRIES"),
        var(env, "FAULT_RECONCILE_GAP_RETRY_SECS"),
    ) {
        return didit_edge_core::reconcile::GapRetry {
            tries: u32::try_from(tries).unwrap_or(u32::MAX),
            base_secs: secs,
            max_secs: secs,
        };
    }
    let _ = env;
    retry
}

/// In the test build, fails the first `FAULT_ALARM_FAILURES` alarm runs of each inbox, as a
/// storage error would; the runs so far are counted in the inbox's own storage, through
/// `runs_so_far` and `count_run`.
pub(crate) fn alarm_run(
    env: &Env,
    runs_so_far: impl FnOnce() -> Result<i64>,
    count_run: impl FnOnce(i64) -> Result<()>,
) -> Result<()> {
    #[cfg(feature = "fault-injection")]
    if let Some(failures) = var(env, "FAULT_ALARM_FAILURES") {
        let runs = runs_so_far()?;
        if u64::try_from(runs).unwrap_or(u64::MAX) < failures {
            count_run(runs + 1)?;
            return Err("injected alarm failure (FAULT_ALARM_FAILURES)".into());
        }
    }
    #[cfg(not(feature = "fault-injection"))]
    let _ = (env, runs_so_far, count_run);
    Ok(())
}

#[cfg(feature = "fault-injection")]
fn var(env: &Env, name: &str) -> Option<u64> {
    env.var(name).ok()?.to_string().trim().parse().ok()
}
