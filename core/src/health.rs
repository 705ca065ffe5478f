//! Per-origin health as a circuit breaker with hysteresis, with time passed in.
//!
//! Consecutive failures open the breaker; after a cool-down one probe is let through
//! (half-open); consecutive successes close it again, and any failure while half-open reopens
//! it with a longer cool-down. A `Retry-After` from the origin stretches the cool-down to what
//! the origin asked for. Passive signals (delivery outcomes) and active ones (health probes)
//! feed the same machine, so both are tested here with simulated time and no IO.

use alloc::collections::BTreeMap;
use alloc::rc::Rc;
use alloc::string::String;
use alloc::vec::Vec;
use core::fmt;
use serde::{Deserialize, Serialize};

use crate::budget::SubrequestBudget;
use crate::origin::Origin;
use crate::time::UnixMs;

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

/// Every origin's breaker state, by origin name, as the shared health object answers. An
/// origin it does not list has a closed breaker nobody has reported on.
pub type Snapshot = BTreeMap<String, BreakerState>;

/// One outcome of one origin, reported to the shared breakers.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Report {
    /// The origin.
    pub origin: String,
    /// A 2xx or a healthy probe.
    pub up: bool,
    /// What the origin asked for with `Retry-After`.
    pub retry_after_ms: Option<u64>,
    /// When the outcome came.
    pub at_ms: UnixMs,
}

/// A breaker as read back from storage.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Restored {
    /// Nothing was stored: a closed breaker nobody has reported on.
    Fresh(Breaker),
    /// What was stored.
    Stored(Breaker),
    /// What was stored cannot be read (written by an unknown release, or damaged). It is
    /// replaced by a fresh, closed breaker, which the next report overwrites: health only
    /// orders origins, and a closed breaker sends traffic as if no report had come (the side
    /// delivery fails safe on). The caller logs it, so the loss of that origin's history shows.
    Unreadable(Breaker),
}

impl Restored {
    /// Reads a stored breaker (`None`: no row).
    pub fn from_stored(stored: Option<&str>) -> Self {
        match stored {
            None => Self::Fresh(Breaker::new(BreakerPolicy::default())),
            Some(text) => match serde_json::from_str(text) {
                Ok(breaker) => Self::Stored(breaker),
                Err(_) => Self::Unreadable(Breaker::new(BreakerPolicy::default())),
            },
        }
    }

    /// The breaker to go on with.
    pub fn breaker(self) -> Breaker {
        match self {
            Self::Fresh(breaker) | Self::Stored(breaker) | Self::Unreadable(breaker) => breaker,
        }
    }
}

/// The snapshot of every stored `(origin, breaker)`, and the origins whose breaker could not
/// be read. Those are left out, so they count as closed ([`Restored::Unreadable`]): an
/// unreadable breaker never keeps traffic from an origin. The caller logs them.
pub fn snapshot_of(stored: impl IntoIterator<Item = (String, String)>) -> (Snapshot, Vec<String>) {
    let mut snapshot = Snapshot::new();
    let mut unreadable = Vec::new();
    for (origin, text) in stored {
        match Restored::from_stored(Some(&text)) {
            Restored::Stored(breaker) => {
                snapshot.insert(origin, breaker.state());
            }
            Restored::Fresh(_) | Restored::Unreadable(_) => unreadable.push(origin),
        }
    }
    (snapshot, unreadable)
}

/// How long an isolate reuses a snapshot: delivery asks no round trip per event, and a change
/// elsewhere is seen within this.
pub const SNAPSHOT_CACHE_MS: u64 = 2_000;

/// What [`SnapshotCache::lookup`] says to do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Lookup {
    /// Use this snapshot.
    Use(Rc<Snapshot>),
    /// Fetch a fresh one (one subrequest, taken) and hand it to
    /// [`SnapshotCache::handle_fetched`].
    Fetch,
}

/// One isolate's last snapshot and when it was fetched. Health only orders origins: whenever
/// it cannot be had (unreadable, or no subrequest left), every origin counts as available and
/// delivery goes on (fail open), rather than holding events back on a guess.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SnapshotCache {
    held: Option<(UnixMs, Rc<Snapshot>)>,
}

impl SnapshotCache {
    /// Nothing held yet.
    pub const fn new() -> Self {
        Self { held: None }
    }

    /// At `now`: the held snapshot while it is younger than [`SNAPSHOT_CACHE_MS`]; else a
    /// fetch, if `budget` has a subrequest for it; else the held one however old (or none: every
    /// origin available).
    pub fn lookup(&self, now: UnixMs, budget: &mut SubrequestBudget) -> Lookup {
        if let Some((at, snapshot)) = &self.held {
            if now.0.saturating_sub(at.0) < SNAPSHOT_CACHE_MS as i64 {
                return Lookup::Use(snapshot.clone());
            }
        }
        if budget.take(1) {
            return Lookup::Fetch;
        }
        Lookup::Use(
            self.held
                .as_ref()
                .map(|(_, s)| s.clone())
                .unwrap_or_default(),
        )
    }

    /// A fetch's outcome at `now` (`None`: health could not be read). A snapshot is held from
    /// then; without one, every origin counts as available for this attempt, and what was held
    /// stays held.
    pub fn handle_fetched(&mut self, fetched: Option<Snapshot>, now: UnixMs) -> Rc<Snapshot> {
        match fetched {
            Some(snapshot) => {
                let snapshot = Rc::new(snapshot);
                self.held = Some((now, snapshot.clone()));
                snapshot
            }
            None => Rc::default(),
        }
    }

    /// A report this isolate made: the held snapshot takes the step the shared breaker takes
    /// (by the same [`BreakerPolicy::default`]), so the next attempt here sees it without
    /// asking again. An origin the snapshot does not list starts closed.
    pub fn handle_reported(&mut self, report: &Report) {
        if let Some((_, snapshot)) = self.held.as_mut() {
            let state = snapshot
                .get(&report.origin)
                .copied()
                .unwrap_or(BreakerState::Closed {
                    consecutive_failures: 0,
                });
            let mut breaker = Breaker::with_state(BreakerPolicy::default(), state);
            breaker.report(report.up, report.retry_after_ms, report.at_ms.0);
            Rc::make_mut(snapshot).insert(report.origin.clone(), breaker.state());
        }
    }
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

    fn report(origin: &str, up: bool, at_ms: i64) -> Report {
        Report {
            origin: origin.into(),
            up,
            retry_after_ms: None,
            at_ms: UnixMs(at_ms),
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
}
