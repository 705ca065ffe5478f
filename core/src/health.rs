//! Per-origin health as a circuit breaker with hysteresis, with time passed in.
//!
//! Consecutive failures open the breaker; after a cool-down one probe is let through
//! (half-open); consecutive successes close it again, and any failure while half-open reopens
//! it with a longer cool-down. A `Retry-After` from the origin stretches the cool-down to what
//! the origin asked for. Passive signals (delivery outcomes) and active ones (health probes)
//! feed the same machine, so both are tested here with simulated time and no IO.

use alloc::vec::Vec;
use core::fmt;
use serde::{Deserialize, Serialize};

use crate::origin::Origin;

/// Thresholds of the breaker.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BreakerPolicy {
    /// Consecutive failures that open a closed breaker.
    pub failures_to_open: u32,
    /// Consecutive successes that close a half-open breaker.
    pub successes_to_close: u32,
    /// First cool-down after opening, in ms; doubled on every reopening, up to the maximum.
    pub cool_down_ms: u64,
    /// Longest cool-down, in ms.
    pub max_cool_down_ms: u64,
}

impl Default for BreakerPolicy {
    fn default() -> Self {
        Self {
            failures_to_open: 3,
            successes_to_close: 2,
            cool_down_ms: 10_000,
            max_cool_down_ms: 300_000,
        }
    }
}

/// Where a breaker stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum BreakerState {
    /// Traffic flows; counts failures in a row.
    Closed {
        /// Failures since the last success.
        consecutive_failures: u32,
    },
    /// No traffic until the cool-down ends.
    Open {
        /// When a probe may go (Unix ms).
        until_ms: i64,
        /// The cool-down that was applied, the base for the next one.
        cool_down_ms: u64,
    },
    /// Probing: one request at a time until enough succeed.
    HalfOpen {
        /// Successes so far.
        consecutive_successes: u32,
        /// The cool-down of the last opening, doubled if this probe fails.
        cool_down_ms: u64,
        /// A probe is out and not yet answered (Unix ms when it was let through).
        probe_since_ms: Option<i64>,
    },
}

/// One origin's breaker.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Breaker {
    policy: BreakerPolicy,
    state: BreakerState,
}

/// What the breaker says about sending a request now.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Admit {
    /// Send normally.
    Yes,
    /// Send as the half-open probe; no other request goes until it is answered.
    Probe,
    /// Do not send; the origin counts as down until then (Unix ms).
    No {
        /// When the breaker will allow a probe.
        until_ms: i64,
    },
}

impl fmt::Display for BreakerState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Closed { .. } => "closed",
            Self::Open { .. } => "open",
            Self::HalfOpen { .. } => "half_open",
        })
    }
}

/// A probe that was never answered (the isolate died) is forgotten after this long, so a lost
/// probe cannot keep an origin half-open forever.
const PROBE_TIMEOUT_MS: i64 = 60_000;

impl Breaker {
    /// A closed breaker.
    pub fn new(policy: BreakerPolicy) -> Self {
        Self {
            policy,
            state: BreakerState::Closed {
                consecutive_failures: 0,
            },
        }
    }

    /// A breaker in `state`, as a snapshot shows it.
    pub fn with_state(policy: BreakerPolicy, state: BreakerState) -> Self {
        Self { policy, state }
    }

    /// The current state.
    pub fn state(&self) -> BreakerState {
        self.state
    }

    /// Applies one outcome reported at `at_ms` (`up`: a 2xx or a healthy probe). Senders go as
    /// soon as a snapshot shows the cool-down over, without asking first; admitting at the
    /// report's time turns such an outcome into the half-open probe.
    pub fn report(&mut self, up: bool, retry_after_ms: Option<u64>, at_ms: i64) {
        let _ = self.admit(at_ms);
        if up {
            self.succeeded();
        } else {
            self.failed(at_ms, retry_after_ms);
        }
    }

    /// Whether reporting this outcome at `at_ms` would leave the breaker as it is: a success
    /// to a closed breaker with no failures counted. Such a report is not worth a round trip.
    pub fn unchanged_by(&self, up: bool, at_ms: i64) -> bool {
        let mut after = *self;
        after.report(up, None, at_ms);
        after == *self
    }

    /// Whether a request may go at `now_ms`; a `Probe` answer reserves the probe slot.
    pub fn admit(&mut self, now_ms: i64) -> Admit {
        match self.state {
            BreakerState::Closed { .. } => Admit::Yes,
            BreakerState::Open { until_ms, .. } if now_ms < until_ms => Admit::No { until_ms },
            BreakerState::Open { cool_down_ms, .. } => {
                self.state = BreakerState::HalfOpen {
                    consecutive_successes: 0,
                    cool_down_ms,
                    probe_since_ms: Some(now_ms),
                };
                Admit::Probe
            }
            BreakerState::HalfOpen {
                probe_since_ms: Some(since),
                ..
            } if now_ms - since < PROBE_TIMEOUT_MS => Admit::No {
                until_ms: since + PROBE_TIMEOUT_MS,
            },
            BreakerState::HalfOpen {
                consecutive_successes,
                cool_down_ms,
                ..
            } => {
                self.state = BreakerState::HalfOpen {
                    consecutive_successes,
                    cool_down_ms,
                    probe_since_ms: Some(now_ms),
                };
                Admit::Probe
            }
        }
    }

    /// Records a success (a 2xx, or a healthy probe).
    pub fn succeeded(&mut self) {
        self.state = match self.state {
            BreakerState::Closed { .. } => BreakerState::Closed {
                consecutive_failures: 0,
            },
            BreakerState::HalfOpen {
                consecutive_successes,
                cool_down_ms,
                ..
            } => {
                let successes = consecutive_successes.saturating_add(1);
                if successes >= self.policy.successes_to_close {
                    BreakerState::Closed {
                        consecutive_failures: 0,
                    }
                } else {
                    BreakerState::HalfOpen {
                        consecutive_successes: successes,
                        cool_down_ms,
                        probe_since_ms: None,
                    }
                }
            }
            // A late success from before the breaker opened does not shorten the cool-down.
            open @ BreakerState::Open { .. } => open,
        };
    }

    /// Records a transient failure at `now_ms`; `retry_after_ms` is what the origin asked for.
    pub fn failed(&mut self, now_ms: i64, retry_after_ms: Option<u64>) {
        let open = |cool_down_ms: u64| {
            let cool_down_ms = cool_down_ms.max(retry_after_ms.unwrap_or(0));
            BreakerState::Open {
                until_ms: now_ms.saturating_add(i64::try_from(cool_down_ms).unwrap_or(i64::MAX)),
                cool_down_ms,
            }
        };
        self.state = match self.state {
            BreakerState::Closed {
                consecutive_failures,
            } => {
                let failures = consecutive_failures.saturating_add(1);
                if failures >= self.policy.failures_to_open || retry_after_ms.is_some() {
                    open(self.policy.cool_down_ms)
                } else {
                    BreakerState::Closed {
                        consecutive_failures: failures,
                    }
                }
            }
            BreakerState::HalfOpen { cool_down_ms, .. } => open(
                cool_down_ms
                    .saturating_mul(2)
                    .min(self.policy.max_cool_down_ms),
            ),
            BreakerState::Open {
                until_ms,
                cool_down_ms,
            } => {
                // Already open: only a longer Retry-After extends it.
                let asked = retry_after_ms
                    .map(|ms| now_ms.saturating_add(i64::try_from(ms).unwrap_or(i64::MAX)));
                BreakerState::Open {
                    until_ms: until_ms.max(asked.unwrap_or(until_ms)),
                    cool_down_ms,
                }
            }
        };
    }
}

impl BreakerState {
    /// Whether an origin in this state may be sent to at `now_ms`, as far as a reader of a
    /// shared snapshot can tell: closed, half-open, or open with its cool-down over. (Several
    /// inboxes may then probe at once; the breaker's owner reopens it on the first failure.)
    pub fn available(&self, now_ms: i64) -> bool {
        match self {
            Self::Closed { .. } | Self::HalfOpen { .. } => true,
            Self::Open { until_ms, .. } => now_ms >= *until_ms,
        }
    }
}

/// Orders one attempt's candidates (already in priority order) by health: origins whose
/// breaker is open and cooling down are left out, so a dead cloud is not hammered while its
/// peers take the traffic.
pub fn available(
    candidates: Vec<&Origin>,
    state_of: impl Fn(&str) -> Option<BreakerState>,
    now_ms: i64,
) -> Vec<&Origin> {
    candidates
        .into_iter()
        .filter(|origin| state_of(&origin.name).is_none_or(|state| state.available(now_ms)))
        .collect()
}

/// Whether an outcome need not be reported to the shared breakers: it would change nothing
/// in the state last seen (`None`: a closed breaker nobody has reported on).
pub fn report_changes_nothing(last_seen: Option<BreakerState>, up: bool, at_ms: i64) -> bool {
    let state = last_seen.unwrap_or(BreakerState::Closed {
        consecutive_failures: 0,
    });
    Breaker::with_state(BreakerPolicy::default(), state).unchanged_by(up, at_ms)
}

/// Parses a `Retry-After` header: delta-seconds, capped at a day. (The HTTP-date form is not
/// used by webhook receivers in practice and is treated as absent.)
pub fn retry_after_ms(header: Option<&str>) -> Option<u64> {
    let secs: u64 = header?.trim().parse().ok()?;
    Some(secs.min(86_400).saturating_mul(1000))
}

#[cfg(test)]
mod tests {
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    use super::*;

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
            [
                10_000, 10_500, 11_000, 12_000, 14_000, 18_000, 22_000, 26_000, 30_000, 34_000,
                38_000
            ]
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
}
