//! When to try a delivery again.

use alloc::vec::Vec;
use core::fmt;

/// The production default: quick retries for blips, then hours apart, then every 10 hours for
/// as long as the event stays undelivered (in the spirit of Svix's 5 s … 10 h schedule).
pub const DEFAULT_RETRY_SCHEDULE: &str = "5,30,120,600,1800,3600,7200,18000,36000";

/// Seconds to wait after the 1st, 2nd, … failed attempt; after the last entry, the last
/// interval repeats.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RetrySchedule(Vec<u32>);

/// Why a schedule was refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RetryScheduleError {
    /// The schedule has no entries.
    Empty,
    /// An entry is not a whole number of seconds (1-based position).
    NotSeconds(usize),
    /// An entry is zero, which would retry in a tight loop (1-based position).
    Zero(usize),
}

impl fmt::Display for RetryScheduleError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Empty => f.write_str("has no entries"),
            Self::NotSeconds(at) => write!(f, "entry {at} is not a whole number of seconds"),
            Self::Zero(at) => write!(f, "entry {at} is 0; every wait must be at least 1 second"),
        }
    }
}

impl RetrySchedule {
    /// Parses comma-separated seconds, e.g. `5,30,120`.
    pub fn parse(text: &str) -> Result<Self, RetryScheduleError> {
        if text.trim().is_empty() {
            return Err(RetryScheduleError::Empty);
        }
        let mut waits = Vec::new();
        for (index, entry) in text.split(',').enumerate() {
            let secs: u32 = entry
                .trim()
                .parse()
                .map_err(|_| RetryScheduleError::NotSeconds(index + 1))?;
            if secs == 0 {
                return Err(RetryScheduleError::Zero(index + 1));
            }
            waits.push(secs);
        }
        Ok(Self(waits))
    }

    /// Seconds to wait after `failures` failed attempts (`failures` ≥ 1; 0 means no wait).
    pub fn wait_after(&self, failures: u32) -> u64 {
        let Some(index) = (failures as usize).checked_sub(1) else {
            return 0;
        };
        let last = self.0.len().saturating_sub(1);
        self.0
            .get(index.min(last))
            .map_or(0, |&secs| u64::from(secs))
    }
}

impl Default for RetrySchedule {
    fn default() -> Self {
        Self(Vec::from([
            5, 30, 120, 600, 1800, 3600, 7200, 18_000, 36_000,
        ]))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    #[test]
    fn waits_follow_the_schedule_then_repeat_the_last() {
        let schedule = RetrySchedule::parse(" 1, 2 ,30").expect("valid");
        let waits: Vec<u64> = (0..6).map(|n| schedule.wait_after(n)).collect();
        assert_eq!(waits, [0, 1, 2, 30, 30, 30]);
        assert_eq!(schedule.wait_after(u32::MAX), 30);
    }

    #[test]
    fn default_constant_and_default_value_agree() {
        assert_eq!(
            RetrySchedule::parse(DEFAULT_RETRY_SCHEDULE),
            Ok(RetrySchedule::default())
        );
    }

    #[test]
    fn refuses_bad_schedules() {
        assert_eq!(RetrySchedule::parse(""), Err(RetryScheduleError::Empty));
        assert_eq!(
            RetrySchedule::parse("5,x"),
            Err(RetryScheduleError::NotSeconds(2))
        );
        assert_eq!(
            RetrySchedule::parse("5,,6"),
            Err(RetryScheduleError::NotSeconds(2))
        );
        assert_eq!(RetrySchedule::parse("0"), Err(RetryScheduleError::Zero(1)));
        assert_eq!(
            RetrySchedule::parse("-1"),
            Err(RetryScheduleError::NotSeconds(1))
        );
    }
}
