//! The breaker itself: closed, open for a cool-down, half-open while one probe at a time
//! finds out whether the origin is back. Every step takes the time as an argument, so the
//! whole machine runs under simulated time.

use core::fmt;
use serde::{de, Deserialize, Deserializer, Serialize};

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

/// Where a breaker stands. Stored as `{"state": "closed"|"open"|"half_open", …its fields}`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
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

/// The stored shape of a [`BreakerState`], every variant's fields side by side. Read flat
/// rather than as serde's internally tagged enum, which buffers the whole object first and
/// costs the upload several KiB; what it accepts is the same.
#[derive(Deserialize)]
struct StoredState {
    state: StateName,
    consecutive_failures: Option<u32>,
    until_ms: Option<i64>,
    cool_down_ms: Option<u64>,
    consecutive_successes: Option<u32>,
    probe_since_ms: Option<i64>,
}

/// The `state` tag.
enum StateName {
    Closed,
    Open,
    HalfOpen,
}

crate::named::by_name!(StateName {
    Closed = "closed",
    Open = "open",
    HalfOpen = "half_open",
});

impl<'de> Deserialize<'de> for BreakerState {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let stored = StoredState::deserialize(deserializer)?;
        Ok(match stored.state {
            StateName::Closed => Self::Closed {
                consecutive_failures: needed(stored.consecutive_failures, "consecutive_failures")?,
            },
            StateName::Open => Self::Open {
                until_ms: needed(stored.until_ms, "until_ms")?,
                cool_down_ms: needed(stored.cool_down_ms, "cool_down_ms")?,
            },
            StateName::HalfOpen => Self::HalfOpen {
                consecutive_successes: needed(
                    stored.consecutive_successes,
                    "consecutive_successes",
                )?,
                cool_down_ms: needed(stored.cool_down_ms, "cool_down_ms")?,
                probe_since_ms: stored.probe_since_ms,
            },
        })
    }
}

/// A field the stored state's variant requires.
fn needed<T, E: de::Error>(field: Option<T>, name: &'static str) -> Result<T, E> {
    field.ok_or_else(|| E::missing_field(name))
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
pub(super) const PROBE_TIMEOUT_MS: i64 = 60_000;

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
