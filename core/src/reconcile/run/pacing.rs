//! What a run may still spend, and what happens when it cannot: the subrequest budget, the
//! requests and decision reads allowed to Didit's API, the lease every step must fit in, and
//! the back-off Didit's API gets after a failure (the whole run's, or one session's).

use crate::reconcile::api::ApiError;
use crate::reconcile::memory::Failure;
use crate::reconcile::{
    after, RunEnd, BACKOFF_BASE_SECS, BACKOFF_MAX_SECS, INBOX_FAILURES_PER_RUN, LEASE_MARGIN_SECS,
    STEP_TIMEOUT_SECS,
};

use super::Run;

impl Run {
    /// Whether `steps` more steps, each up to [`STEP_TIMEOUT_SECS`], end before the lease does
    /// (less [`LEASE_MARGIN_SECS`] to store the last of them).
    pub(super) fn lease_allows(&self, steps: i64) -> bool {
        self.state.lease_until.is_none_or(|until| {
            self.secs()
                .0
                .saturating_add(steps.saturating_mul(STEP_TIMEOUT_SECS))
                .saturating_add(LEASE_MARGIN_SECS)
                <= until.0
        })
    }

    /// Whether `cost` subrequests (one of them to Didit's API when `api`) and `steps` steps
    /// fit what is left of the run.
    /// After a 5xx or a timeout Didit's API hears nothing more from this run: the next run
    /// comes after the back-off (steps that need no API request go on meanwhile).
    pub(super) fn affords(&self, cost: u32, api: bool, steps: i64) -> bool {
        self.requests_left >= cost
            && (!api || (self.api_requests_left > 0 && !self.api_paused))
            && self.lease_allows(steps)
    }

    /// Ends the run because `cost` subrequests (an API request when `api`) do not fit.
    pub(super) fn out_of_budget(&mut self, api: bool) {
        self.end(if api && self.api_paused {
            RunEnd::Api
        } else {
            RunEnd::BudgetUsed
        });
    }

    /// Takes `cost` subrequests from the budget, or ends the run when they do not fit.
    pub(super) fn spend(&mut self, cost: u32, api: bool, steps: i64) -> bool {
        if !self.affords(cost, api, steps) {
            self.out_of_budget(api);
            return false;
        }
        self.requests_left -= cost;
        if api {
            self.api_requests_left -= 1;
        }
        self.counts.requests += u64::from(cost);
        true
    }

    /// Subrequests one injection costs: the claim, and the stream's publishes.
    pub(super) fn inject_cost(&self) -> u32 {
        1u32.saturating_add(self.settings.publishes_per_event)
    }

    /// The API failed at `now`: the run ends and the next waits, counted from that answer,
    /// longer after each failed run in a row and never less than Didit's `Retry-After`.
    pub(super) fn api_failed(&mut self, error: ApiError) {
        if !self.api_failed {
            self.api_failed = true;
            self.state.failures = self.state.failures.saturating_add(1);
        }
        let exponent = self.state.failures.saturating_sub(1).min(16);
        let backoff = BACKOFF_BASE_SECS
            .saturating_mul(1 << exponent)
            .min(BACKOFF_MAX_SECS);
        let asked = match &error {
            ApiError::Unavailable {
                retry_after_secs: Some(secs),
                ..
            } => *secs,
            _ => 0,
        };
        self.state.wait_until = Some(after(self.secs(), backoff.max(asked)));
        self.note_error(error.describe());
        self.end(RunEnd::Api);
    }

    /// Counts a given-up gap and decides whether the run goes on.
    pub(super) fn after_failure(&mut self, failure: Failure) {
        if failure == Failure::InboxUnreachable {
            self.inbox_failures_in_a_row = self.inbox_failures_in_a_row.saturating_add(1);
        }
        if failure.backs_off() {
            // One session's 5xx or timeout: the API rests for the back-off, counted from this
            // answer (no streak: the list answered), and the run goes on without it.
            self.api_paused = true;
            let until = after(self.secs(), BACKOFF_BASE_SECS);
            self.state.wait_until = Some(self.state.wait_until.map_or(until, |at| at.max(until)));
        }
        if self.inbox_failures_in_a_row >= INBOX_FAILURES_PER_RUN {
            self.end(RunEnd::Inbox);
        }
    }
}
