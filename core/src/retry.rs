//! When to try a delivery again, and when to give up on it.
//!
//! The schedule is finite on purpose: an event that no origin has taken after days of trying
//! needs a person, so it becomes a dead letter (kept, listed and replayable) rather than being
//! retried forever where nobody looks.

use alloc::vec::Vec;
use core::fmt;

/// The production default: quick retries for blips, then exponentially further apart, then
/// every 12 hours; 16 retries over about 4.2 days (at least 3.3 days with the default jitter).
pub const DEFAULT_RETRY_SCHEDULE: &str = "5,30,120,600,1800,3600,7200,14400,28800,43200x7";

/// Default jitter: each wait is drawn within ±20 % of its nominal length, so events that
/// failed together (one origin outage) do not all come back in the same second.
pub const DEFAULT_RETRY_JITTER_PERCENT: u8 = 20;

/// Largest accepted jitter: beyond half, a wait could shrink to almost nothing.
pub const MAX_RETRY_JITTER_PERCENT: u8 = 50;

/// Most retries a schedule may hold, so that `43200x99999999` cannot keep an event for years.
pub const MAX_RETRIES: u32 = 1_000;

/// Seconds to wait after the 1st, 2nd, … failed attempt; once every wait is used, the event
/// is a dead letter.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RetrySchedule {
    /// Runs of equal waits: (seconds, how many times).
    runs: Vec<(u32, u32)>,
    jitter_percent: u8,
}

/// Why a schedule was refused.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum RetryScheduleError {
    /// The schedule has no entries.
    Empty,
    /// An entry is not `seconds` or `secondsxcount` (1-based position).
    NotSeconds(usize),
    /// An entry is zero seconds or repeats zero times (1-based position).
    Zero(usize),
    /// The schedule holds more than [`MAX_RETRIES`] retries.
    TooManyRetries,
}

impl fmt::Display for RetryScheduleError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Empty => f.write_str("has no entries"),
            Self::NotSeconds(at) => write!(
                f,
                "entry {at} is not a whole number of seconds (optionally `x` a count, as in `3600x4`)"
            ),
            Self::Zero(at) => write!(
                f,
                "entry {at} is 0; every wait must be at least 1 second and repeat at least once"
            ),
            Self::TooManyRetries => write!(f, "holds more than {MAX_RETRIES} retries"),
        }
    }
}

impl core::error::Error for RetryScheduleError {}

fn positive(text: &str) -> Option<Result<u32, ()>> {
    match text.trim().parse::<u32>() {
        Ok(0) => Some(Err(())),
        Ok(value) => Some(Ok(value)),
        Err(_) => None,
    }
}

impl RetrySchedule {
    /// Parses comma-separated waits in seconds, each optionally repeated: `5,30,3600x4`.
    /// The jitter starts at [`DEFAULT_RETRY_JITTER_PERCENT`].
    pub fn parse(text: &str) -> Result<Self, RetryScheduleError> {
        if text.trim().is_empty() {
            return Err(RetryScheduleError::Empty);
        }
        let mut runs = Vec::new();
        let mut retries: u32 = 0;
        for (index, entry) in text.split(',').enumerate() {
            let position = index + 1;
            let (secs, count) = match entry.split_once(['x', 'X']) {
                Some((secs, count)) => (secs, Some(count)),
                None => (entry, None),
            };
            let parse = |text| match positive(text) {
                None => Err(RetryScheduleError::NotSeconds(position)),
                Some(Err(())) => Err(RetryScheduleError::Zero(position)),
                Some(Ok(value)) => Ok(value),
            };
            let secs = parse(secs)?;
            let count = count.map_or(Ok(1), parse)?;
            retries = retries
                .checked_add(count)
                .filter(|&total| total <= MAX_RETRIES)
                .ok_or(RetryScheduleError::TooManyRetries)?;
            runs.push((secs, count));
        }
        Ok(Self {
            runs,
            jitter_percent: DEFAULT_RETRY_JITTER_PERCENT,
        })
    }

    /// The same waits with a different jitter (clamped to [`MAX_RETRY_JITTER_PERCENT`]).
    pub fn with_jitter_percent(mut self, percent: u8) -> Self {
        self.jitter_percent = percent.min(MAX_RETRY_JITTER_PERCENT);
        self
    }

    /// How many retries follow the first attempt.
    pub fn retries(&self) -> u32 {
        self.runs.iter().map(|&(_, count)| count).sum()
    }

    /// The nominal wait in seconds after `failures` failed attempts (`failures` ≥ 1), or
    /// `None` once the schedule is used up.
    pub fn nominal_wait_secs(&self, failures: u32) -> Option<u32> {
        let mut left = failures.checked_sub(1)?;
        for &(secs, count) in &self.runs {
            if left < count {
                return Some(secs);
            }
            left -= count;
        }
        None
    }

    /// Milliseconds to wait after `failures` failed attempts, jittered by `seed` (pass a fresh
    /// random number), or `None` when the event should become a dead letter.
    pub fn wait_after_ms(&self, failures: u32, seed: u64) -> Option<u64> {
        let nominal_ms = u64::from(self.nominal_wait_secs(failures)?) * 1000;
        let spread_ms = nominal_ms * u64::from(self.jitter_percent) / 100;
        // Uniform in [nominal − spread, nominal + spread].
        let offset = seed % (2 * spread_ms + 1);
        Some((nominal_ms - spread_ms + offset).max(1))
    }

    /// The nominal time from the first attempt to the last, in seconds.
    pub fn nominal_span_secs(&self) -> u64 {
        self.runs
            .iter()
            .map(|&(secs, count)| u64::from(secs) * u64::from(count))
            .sum()
    }
}

impl Default for RetrySchedule {
    fn default() -> Self {
        Self {
            runs: Vec::from([
                (5, 1),
                (30, 1),
                (120, 1),
                (600, 1),
                (1_800, 1),
                (3_600, 1),
                (7_200, 1),
                (14_400, 1),
                (28_800, 1),
                (43_200, 7),
            ]),
            jitter_percent: DEFAULT_RETRY_JITTER_PERCENT,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    #[test]
    fn waits_follow_the_schedule_then_run_out() {
        let schedule = RetrySchedule::parse(" 1, 2 ,30x2")
            .expect("valid")
            .with_jitter_percent(0);
        let waits: Vec<Option<u64>> = (0..6).map(|n| schedule.wait_after_ms(n, 7)).collect();
        assert_eq!(
            waits,
            [
                None,
                Some(1_000),
                Some(2_000),
                Some(30_000),
                Some(30_000),
                None
            ]
        );
        assert_eq!(schedule.wait_after_ms(u32::MAX, 7), None);
        assert_eq!(schedule.retries(), 4);
        assert_eq!(schedule.nominal_span_secs(), 63);
    }

    #[test]
    fn jitter_stays_within_its_percentage_and_spreads() {
        let schedule = RetrySchedule::parse("100").expect("valid");
        let waits: Vec<u64> = (0..2_000u64)
            .map(|seed| {
                schedule
                    .wait_after_ms(1, seed.wrapping_mul(0x9E37_79B9_7F4A_7C15))
                    .expect("within the schedule")
            })
            .collect();
        assert!(waits.iter().all(|w| (80_000..=120_000).contains(w)));
        let below = waits.iter().filter(|&&w| w < 95_000).count();
        let above = waits.iter().filter(|&&w| w > 105_000).count();
        // Each side of the middle band holds about 3/8 of the draws.
        assert!(below > 500 && above > 500, "{below} below, {above} above");
        assert_eq!(schedule.wait_after_ms(1, 0), Some(80_000));
        assert_eq!(
            schedule.with_jitter_percent(90).wait_after_ms(1, 0),
            Some(50_000),
            "jitter is capped at 50 %"
        );
    }

    #[test]
    fn the_default_spans_at_least_three_days_even_with_jitter_against_it() {
        let schedule = RetrySchedule::default();
        assert_eq!(
            RetrySchedule::parse(DEFAULT_RETRY_SCHEDULE),
            Ok(schedule.clone())
        );
        let shortest_ms: u64 = (1..=schedule.retries())
            .map(|n| schedule.wait_after_ms(n, 0).expect("within the schedule"))
            .sum();
        assert!(shortest_ms >= 3 * 86_400_000, "{shortest_ms} ms");
        assert_eq!(schedule.retries(), 16);
        assert_eq!(schedule.wait_after_ms(17, 0), None);
        // Exponential at first: each early wait is several times the one before.
        let early: Vec<u32> = (1..=9)
            .map(|n| schedule.nominal_wait_secs(n).expect("within"))
            .collect();
        assert!(early.windows(2).all(|w| w[1] >= 2 * w[0]), "{early:?}");
    }

    #[test]
    fn refuses_bad_schedules() {
        use RetryScheduleError::*;
        for (text, error) in [
            ("", Empty),
            ("5,x", NotSeconds(2)),
            ("5,,6", NotSeconds(2)),
            ("0", Zero(1)),
            ("5,3x0", Zero(2)),
            ("-1", NotSeconds(1)),
            ("5x", NotSeconds(1)),
            ("5x2x3", NotSeconds(1)),
            ("1x1000,1", TooManyRetries),
            ("1x4294967295,1x5", TooManyRetries),
        ] {
            assert_eq!(RetrySchedule::parse(text), Err(error), "{text:?}");
        }
        assert_eq!(
            RetrySchedule::parse("1x1000").map(|s| s.retries()),
            Ok(1_000)
        );
    }
}
