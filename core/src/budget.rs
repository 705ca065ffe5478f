//! How much one invocation may still do: the platform caps the subrequests (fetches and
//! Durable Object calls) of each invocation, and a call over the cap fails as if the network
//! had. Counting them lets an alarm stop cleanly and hand over to the next one instead of
//! booking its own limit as an origin's failure.

/// How soon an object whose settings are broken looks again (an inbox's alarm, the alerts
/// outbox): soon enough to notice a fix, rare enough not to spin. Nothing is sent, and nothing
/// forgotten, meanwhile.
pub const MISCONFIGURED_RETRY_MS: u64 = 60_000;

/// Subrequests left to one invocation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SubrequestBudget {
    limit: u32,
    left: u32,
}

impl SubrequestBudget {
    /// A budget of `limit` subrequests.
    pub fn new(limit: u32) -> Self {
        Self { limit, left: limit }
    }

    /// How many have been taken.
    pub fn used(&self) -> u32 {
        self.limit - self.left
    }

    /// The budget's size.
    pub fn limit(&self) -> u32 {
        self.limit
    }

    /// Whether `count` more subrequests fit.
    pub fn allows(&self, count: u32) -> bool {
        self.left >= count
    }

    /// Takes `count` subrequests if they fit.
    pub fn take(&mut self, count: u32) -> bool {
        if self.allows(count) {
            self.left -= count;
            true
        } else {
            false
        }
    }

    /// How many are left.
    pub fn left(&self) -> u32 {
        self.left
    }
}

/// How long an inbox waits before running its alarm again after `consecutive_failures` runs
/// that failed (storage errors, a bug): `base_ms`, doubling, at most five minutes. The
/// platform retries a failing alarm only a few times and then drops it, so the inbox re-arms
/// itself instead, and pending work always has an alarm.
pub fn alarm_backoff_ms(consecutive_failures: u32, base_ms: u64) -> u64 {
    const MAX_MS: u64 = 300_000;
    let doublings = consecutive_failures.saturating_sub(1).min(32);
    base_ms.saturating_mul(1u64 << doublings).clamp(1, MAX_MS)
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec::Vec;
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    #[test]
    fn a_budget_refuses_what_does_not_fit() {
        let mut budget = SubrequestBudget::new(3);
        assert!(budget.take(2));
        assert!(!budget.take(2), "one left");
        assert!(budget.allows(1) && !budget.allows(2));
        assert!(budget.take(1));
        assert_eq!((budget.left(), budget.used(), budget.limit()), (0, 3, 3));
        assert!(budget.take(0));
    }

    #[test]
    fn alarm_backoff_doubles_up_to_five_minutes() {
        let waits: Vec<u64> = (1..=10).map(|n| alarm_backoff_ms(n, 1_000)).collect();
        assert_eq!(
            waits,
            [1_000, 2_000, 4_000, 8_000, 16_000, 32_000, 64_000, 128_000, 256_000, 300_000]
        );
        assert_eq!(alarm_backoff_ms(u32::MAX, 1_000), 300_000);
        assert_eq!(alarm_backoff_ms(0, 1_000), 1_000);
        assert_eq!(alarm_backoff_ms(3, 0), 1);
    }
}
