//! One delivery attempt of one consumer's event: which origins to try, in what order, and what
//! the attempt comes to.
//!
//! Sans-IO, in the way of quinn-proto: the adapter asks [`Plan::next_origin`], sends, feeds the
//! result back with [`Plan::record`], and repeats until there is nothing left to send; then
//! [`Plan::finish`] gives the [`Verdict`] (for [`crate::delivery::Progress`]) and the log of
//! what happened, one [`LogEntry`] per origin tried.

use alloc::string::String;
use alloc::vec::Vec;

use crate::config::Origin;
use crate::delivery::{AttemptResult, DeadReason};
use crate::health::BreakerState;

/// What one attempt came to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// An origin took the event.
    Delivered {
        /// The origin's name.
        origin: String,
    },
    /// Every origin tried failed transiently (or none takes the event right now): retry on
    /// the schedule.
    Failed,
    /// Nothing was sent: every origin that could take the event is cooling down until then.
    /// Waiting for a breaker is not a failed attempt.
    Deferred {
        /// When the first of them may be tried again (Unix ms).
        until_ms: i64,
    },
    /// Stop retrying: the event becomes a dead letter.
    GiveUp(DeadReason),
}

/// What happened at one origin, or why nothing was sent: the dead-letter attempt log.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogEntry {
    /// When (Unix ms).
    pub at_ms: i64,
    /// The origin tried, if any was.
    pub origin: Option<String>,
    /// Its HTTP status, if it answered.
    pub status: Option<u16>,
    /// A stable code for what went wrong (`timeout`, `server_error`, `no_origin`, …); `None`
    /// for a delivery.
    pub error: Option<&'static str>,
}

/// One attempt in progress.
#[derive(Debug)]
pub struct Plan<'o> {
    /// Origins still to try, best last (so the next is a `pop`).
    queue: Vec<&'o Origin>,
    /// Origins of the consumer that have not refused the event (before this attempt).
    willing: usize,
    /// Refusals during this attempt.
    refused_now: usize,
    log: Vec<LogEntry>,
    verdict: Option<Verdict>,
}

impl<'o> Plan<'o> {
    /// Plans an attempt at `now_ms`. `candidates` are the consumer's origins for this event in
    /// the order to try them ([`crate::route::origins_for`]), `refused` the names of those that
    /// refused it before, and `state_of` each origin's breaker state as last seen.
    pub fn new<S: AsRef<str>>(
        candidates: Vec<&'o Origin>,
        refused: &[S],
        state_of: impl Fn(&str) -> Option<BreakerState>,
        now_ms: i64,
    ) -> Self {
        let mut plan = Self::empty();
        if candidates.is_empty() {
            plan.nothing_sent(now_ms, "no_origin", Verdict::Failed);
            return plan;
        }
        let willing: Vec<&Origin> = candidates
            .into_iter()
            .filter(|o| !refused.iter().any(|r| r.as_ref() == o.name))
            .collect();
        plan.willing = willing.len();
        if willing.is_empty() {
            plan.nothing_sent(
                now_ms,
                "every_origin_refused",
                Verdict::GiveUp(DeadReason::RefusedByEveryOrigin),
            );
            return plan;
        }
        let reopening = willing
            .iter()
            .filter_map(|o| match state_of(&o.name) {
                Some(BreakerState::Open { until_ms, .. }) if until_ms > now_ms => Some(until_ms),
                _ => None,
            })
            .min();
        plan.queue = crate::health::available(willing, state_of, now_ms);
        plan.queue.reverse();
        if plan.queue.is_empty() {
            // Not an attempt, so not logged: an origin down for days would otherwise fill the
            // log with a line per cool-down.
            plan.verdict = Some(Verdict::Deferred {
                until_ms: reopening.unwrap_or(now_ms),
            });
        }
        plan
    }

    /// An attempt that cannot send anything because the stored event has lost its payload
    /// (which retention never does to an undelivered event): it fails, visibly, on the schedule.
    pub fn without_payload(now_ms: i64) -> Self {
        let mut plan = Self::empty();
        plan.nothing_sent(now_ms, "no_payload", Verdict::Failed);
        plan
    }

    fn empty() -> Self {
        Self {
            queue: Vec::new(),
            willing: 0,
            refused_now: 0,
            log: Vec::new(),
            verdict: None,
        }
    }

    fn nothing_sent(&mut self, now_ms: i64, error: &'static str, verdict: Verdict) {
        self.log.push(LogEntry {
            at_ms: now_ms,
            origin: None,
            status: None,
            error: Some(error),
        });
        self.verdict = Some(verdict);
    }

    /// The next origin to send to, or `None` when the attempt is over.
    pub fn next_origin(&mut self) -> Option<&'o Origin> {
        if self.verdict.is_some() {
            return None;
        }
        self.queue.pop()
    }

    /// Records how the request to `origin` ended at `at_ms`. Report its health
    /// ([`AttemptResult::health_signal`]) and keep its refusal ([`AttemptResult::is_refusal`])
    /// alongside; the plan only decides what the attempt comes to.
    pub fn record(&mut self, origin: &Origin, result: AttemptResult, at_ms: i64) {
        self.log.push(LogEntry {
            at_ms,
            origin: Some(origin.name.clone()),
            status: result.status(),
            error: result.error_code(),
        });
        if result.is_delivered() {
            self.verdict = Some(Verdict::Delivered {
                origin: origin.name.clone(),
            });
        } else if let AttemptResult::Aborted(_) = result {
            self.verdict = Some(Verdict::GiveUp(DeadReason::AbortedByOrigin));
        } else if result.is_refusal() {
            self.refused_now += 1;
        }
    }

    /// What the attempt came to, and its log.
    pub fn finish(self) -> (Verdict, Vec<LogEntry>) {
        let verdict = self.verdict.unwrap_or(if self.refused_now >= self.willing {
            Verdict::GiveUp(DeadReason::RefusedByEveryOrigin)
        } else {
            Verdict::Failed
        });
        (verdict, self.log)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::string::ToString;
    use alloc::vec;
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    fn origin(name: &str) -> Origin {
        crate::config::parse_origins(&alloc::format!(
            r#"[{{"name":"{name}","url":"https://{name}.example/"}}]"#
        ))
        .expect("valid")
        .remove(0)
    }

    fn closed(_: &str) -> Option<BreakerState> {
        None
    }

    /// Runs a plan against simulated origins answering `answers` in turn.
    fn run(plan: &mut Plan<'_>, answers: &[(&str, AttemptResult)]) -> Vec<String> {
        let mut sent = Vec::new();
        let mut now = 1_000;
        while let Some(target) = plan.next_origin() {
            let result = answers
                .iter()
                .find(|(name, _)| *name == target.name)
                .map_or(AttemptResult::Network, |(_, r)| *r);
            sent.push(target.name.clone());
            now += 10;
            plan.record(target, result, now);
        }
        sent
    }

    #[test]
    fn fails_over_in_order_until_one_takes_it() {
        let (a, b, c) = (origin("a"), origin("b"), origin("c"));
        let mut plan = Plan::new(vec![&a, &b, &c], &[] as &[&str], closed, 1_000);
        let sent = run(
            &mut plan,
            &[
                ("a", AttemptResult::Timeout),
                ("b", AttemptResult::Status(204)),
                ("c", AttemptResult::Status(200)),
            ],
        );
        assert_eq!(sent, ["a", "b"], "c is not needed once b has it");
        let (verdict, log) = plan.finish();
        assert_eq!(verdict, Verdict::Delivered { origin: "b".into() });
        assert_eq!(
            log,
            [
                LogEntry {
                    at_ms: 1_010,
                    origin: Some("a".into()),
                    status: None,
                    error: Some("timeout")
                },
                LogEntry {
                    at_ms: 1_020,
                    origin: Some("b".into()),
                    status: Some(204),
                    error: None
                },
            ]
        );
    }

    #[test]
    fn all_failing_transiently_is_a_failed_attempt() {
        let (a, b) = (origin("a"), origin("b"));
        let mut plan = Plan::new(vec![&a, &b], &[] as &[&str], closed, 1_000);
        let sent = run(
            &mut plan,
            &[
                ("a", AttemptResult::Status(503)),
                ("b", AttemptResult::Status(404)),
            ],
        );
        assert_eq!(sent, ["a", "b"]);
        let (verdict, log) = plan.finish();
        assert_eq!(verdict, Verdict::Failed, "a is still willing to retry");
        assert_eq!(log[1].error, Some("refused"));
    }

    #[test]
    fn an_abort_stops_the_attempt_and_gives_up() {
        let (a, b) = (origin("a"), origin("b"));
        let mut plan = Plan::new(vec![&a, &b], &[] as &[&str], closed, 1_000);
        let sent = run(&mut plan, &[("a", AttemptResult::Aborted(422))]);
        assert_eq!(sent, ["a"], "b is not tried after an abort");
        assert_eq!(
            plan.finish().0,
            Verdict::GiveUp(DeadReason::AbortedByOrigin)
        );
    }

    #[test]
    fn refusals_add_up_to_giving_up() {
        let (a, b) = (origin("a"), origin("b"));
        // `a` refused in an earlier attempt: only `b` is sent to, and it refuses too.
        let mut plan = Plan::new(vec![&a, &b], &["a".to_string()], closed, 1_000);
        let sent = run(&mut plan, &[("b", AttemptResult::Status(410))]);
        assert_eq!(sent, ["b"]);
        assert_eq!(
            plan.finish().0,
            Verdict::GiveUp(DeadReason::RefusedByEveryOrigin)
        );

        let mut plan = Plan::new(vec![&a, &b], &["a", "b"], closed, 1_000);
        assert_eq!(run(&mut plan, &[]), Vec::<String>::new());
        let (verdict, log) = plan.finish();
        assert_eq!(verdict, Verdict::GiveUp(DeadReason::RefusedByEveryOrigin));
        assert_eq!(log[0].error, Some("every_origin_refused"));
    }

    #[test]
    fn open_breakers_are_skipped_and_all_open_defers_to_the_first_reopening() {
        let (a, b, c) = (origin("a"), origin("b"), origin("c"));
        let open_until = |name: &str| {
            let until_ms = match name {
                "a" => 9_000,
                "b" => 5_000,
                _ => return None,
            };
            Some(BreakerState::Open {
                until_ms,
                cool_down_ms: 1_000,
            })
        };
        let mut plan = Plan::new(vec![&a, &b, &c], &[] as &[&str], open_until, 1_000);
        assert_eq!(run(&mut plan, &[("c", AttemptResult::Status(200))]), ["c"]);

        let mut plan = Plan::new(vec![&a, &b], &[] as &[&str], open_until, 1_000);
        assert_eq!(run(&mut plan, &[]), Vec::<String>::new());
        let (verdict, log) = plan.finish();
        assert_eq!(verdict, Verdict::Deferred { until_ms: 5_000 });
        assert!(log.is_empty(), "waiting is not an attempt: {log:?}");

        // Once a cool-down is over the origin is tried (the half-open probe).
        let mut plan = Plan::new(vec![&a, &b], &[] as &[&str], open_until, 6_000);
        assert_eq!(run(&mut plan, &[("b", AttemptResult::Status(200))]), ["b"]);
    }

    #[test]
    fn a_lost_payload_fails_visibly() {
        let mut plan = Plan::without_payload(7);
        assert!(plan.next_origin().is_none());
        let (verdict, log) = plan.finish();
        assert_eq!(verdict, Verdict::Failed);
        assert_eq!(log[0].error, Some("no_payload"));
    }

    #[test]
    fn no_origin_is_a_failure_so_a_configuration_fix_delivers_it() {
        let mut plan = Plan::new(Vec::new(), &[] as &[&str], closed, 1_000);
        assert!(plan.next_origin().is_none());
        let (verdict, log) = plan.finish();
        assert_eq!(verdict, Verdict::Failed);
        assert_eq!(log[0].error, Some("no_origin"));
    }
}
