//! The alerts outbox's run ([`crate::alert`] on their way to `ALERTS_URL`): which alerts go now,
//! what becomes of each answer, what is logged, and when the outbox wakes again. The Durable
//! Object performs each [`Step`] (a query, a POST, a write, a log line) and hands the answer
//! back, in the style of [`crate::reconcile::Run`]; it decides nothing itself.
//!
//! The rules:
//! - alerts off (`ALERTS_URL` unset since they were queued): nobody wants them, the outbox is
//!   emptied and sleeps;
//! - alerts broken: they wait for a fix, and the outbox looks again after
//!   [`MISCONFIGURED_RETRY_MS`];
//! - alerts on: at most [`ALERTS_PER_RUN`] due alerts are sent, soonest first, each with
//!   [`SEND_TIMEOUT_MS`]; a 2xx forgets an alert, a failure retries it on
//!   [`crate::alert::RETRY_WAITS_SECS`] and drops it (logged) when they run out;
//! - the outbox then wakes when its soonest alert is due.

use alloc::collections::VecDeque;
use alloc::string::String;
use alloc::vec::Vec;

use serde::Serialize;

use crate::alert::retry_wait_ms;
use crate::attempt::AttemptResult;
use crate::budget::MISCONFIGURED_RETRY_MS;
use crate::config::{AlertsConfig, Feature};
use crate::time::UnixMs;

/// How long an alert endpoint has to answer.
pub const SEND_TIMEOUT_MS: u32 = 10_000;
/// Most alerts one run sends, so a run stays short and within its subrequests.
pub const ALERTS_PER_RUN: u32 = 20;

/// Whether alerts are to be queued at all: `ALERTS_URL` is set. A broken setting holds them
/// until it is fixed; an unset one wants none.
pub fn queues(alerts: &Feature<AlertsConfig>) -> bool {
    *alerts != Feature::Off
}

/// The alarm to set after queueing at `now`, given the one set (`None`: leave it): the outbox
/// must look at once, unless it is about to already.
pub fn alarm_after_enqueue(set: Option<UnixMs>, now: UnixMs) -> Option<UnixMs> {
    set.is_none_or(|at| at > now).then_some(now)
}

/// When the outbox looks again after a run that failed at `now` (storage, a bug): like broken
/// settings, after [`MISCONFIGURED_RETRY_MS`], so a queued alert always has an alarm.
pub fn wake_after_failure(now: UnixMs) -> UnixMs {
    now.plus_ms(MISCONFIGURED_RETRY_MS)
}

/// One queued alert, as the outbox holds it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Queued {
    /// Its id (the `webhook-id`).
    pub id: String,
    /// Its CloudEvent.
    pub body: String,
    /// Failed attempts so far, as stored.
    pub failures: i64,
}

/// The IO a run asks for next.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Step<'c> {
    /// Delete every queued alert ([`Run::handle_cleared`]).
    Clear,
    /// Read at most `limit` alerts due at `now`, soonest first ([`Run::handle_due`]).
    ReadDue {
        /// Due at or before this.
        now: UnixMs,
        /// Most rows.
        limit: u32,
    },
    /// POST this alert, signed, to `to` ([`Run::handle_sent`]).
    Send {
        /// Where, and with which keys.
        to: &'c AlertsConfig,
        /// The alert's id.
        id: String,
        /// Its CloudEvent.
        body: String,
        /// How long the endpoint has to answer.
        timeout_ms: u32,
    },
    /// Write this change to the outbox; nothing to hand back.
    Write(Change),
    /// Log this line; nothing to hand back.
    Log(Note),
    /// Read when the soonest queued alert is due ([`Run::handle_next`]).
    ReadNext,
    /// The run is over: set the alarm for `wake_at` (`None`: none).
    Done {
        /// When the outbox looks again.
        wake_at: Option<UnixMs>,
    },
}

/// What becomes of one alert in the outbox.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Change {
    /// Delivered, or dropped: forget it.
    Forget {
        /// The alert's id.
        id: String,
    },
    /// Failed: try again at `next_at`.
    Retry {
        /// The alert's id.
        id: String,
        /// Failed attempts, this one included.
        failures: u32,
        /// When it is due again.
        next_at: UnixMs,
    },
}

/// A line for the log, as `{"event": …}` JSON.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Note {
    /// An attempt was answered with something other than a 2xx.
    AlertFailed {
        /// The alert's id.
        alert_id: String,
        /// The endpoint's status.
        status: u16,
    },
    /// The retry schedule ran out: the alert is dropped.
    AlertDropped {
        /// The alert's id.
        alert_id: String,
        /// Failed attempts.
        failures: u32,
    },
    /// A stored failure count that is no count (below zero or too large). The alert gets one
    /// last attempt, as if its schedule were spent: it is neither lost unsent nor retried for
    /// a day on a count nobody can trust.
    AlertFailuresUnreadable {
        /// The alert's id.
        alert_id: String,
        /// What was stored.
        stored: i64,
    },
}

impl Note {
    /// Whether this is an error (else information).
    pub fn is_error(&self) -> bool {
        !matches!(self, Self::AlertFailed { .. })
    }

    /// The line as JSON.
    pub fn to_json(&self) -> String {
        // Strings and numbers into a String: serializing cannot fail.
        serde_json::to_string(self).unwrap_or_default()
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    Clear,
    ReadDue,
    Sending,
    ReadNext,
    Done(Option<UnixMs>),
}

/// One run of the outbox, between its alarm and the next.
#[derive(Debug)]
pub struct Run<'c> {
    alerts: Option<&'c AlertsConfig>,
    now: UnixMs,
    phase: Phase,
    /// Due alerts not sent yet, with their failures after this attempt.
    due: VecDeque<(Queued, u32)>,
    out: VecDeque<Step<'c>>,
}

impl<'c> Run<'c> {
    /// A run at `now` under the alerts setting in force.
    pub fn begin(alerts: &'c Feature<AlertsConfig>, now: UnixMs) -> Self {
        let phase = match alerts {
            Feature::Off => Phase::Clear,
            Feature::Broken => Phase::Done(Some(now.plus_ms(MISCONFIGURED_RETRY_MS))),
            Feature::On(_) => Phase::ReadDue,
        };
        Self {
            alerts: alerts.on(),
            now,
            phase,
            due: VecDeque::new(),
            out: VecDeque::new(),
        }
    }

    /// The next step.
    pub fn poll(&mut self) -> Step<'c> {
        if let Some(step) = self.out.pop_front() {
            return step;
        }
        match self.phase {
            Phase::Clear => Step::Clear,
            Phase::ReadDue => Step::ReadDue {
                now: self.now,
                limit: ALERTS_PER_RUN,
            },
            Phase::Sending => match (self.due.front(), self.alerts) {
                (Some((queued, _)), Some(to)) => Step::Send {
                    to,
                    id: queued.id.clone(),
                    body: queued.body.clone(),
                    timeout_ms: SEND_TIMEOUT_MS,
                },
                _ => {
                    self.phase = Phase::ReadNext;
                    Step::ReadNext
                }
            },
            Phase::ReadNext => Step::ReadNext,
            Phase::Done(wake_at) => Step::Done { wake_at },
        }
    }

    /// The outbox was emptied: the run is over, with no alarm.
    pub fn handle_cleared(&mut self) {
        self.phase = Phase::Done(None);
    }

    /// The due alerts, soonest first.
    pub fn handle_due(&mut self, due: Vec<Queued>) {
        for queued in due {
            let failures = match u32::try_from(queued.failures) {
                Ok(failures) => failures.saturating_add(1),
                Err(_) => {
                    self.out.push_back(Step::Log(Note::AlertFailuresUnreadable {
                        alert_id: queued.id.clone(),
                        stored: queued.failures,
                    }));
                    u32::MAX
                }
            };
            self.due.push_back((queued, failures));
        }
        self.phase = Phase::Sending;
    }

    /// The answer to the alert sent last, at `now`.
    pub fn handle_sent(&mut self, result: &AttemptResult, now: UnixMs) {
        let Some((queued, failures)) = self.due.pop_front() else {
            return;
        };
        let id = queued.id;
        if result.is_delivered() {
            self.out.push_back(Step::Write(Change::Forget { id }));
            return;
        }
        match retry_wait_ms(failures) {
            Some(wait_ms) => self.out.push_back(Step::Write(Change::Retry {
                id: id.clone(),
                failures,
                next_at: now.plus_ms(wait_ms),
            })),
            None => {
                self.out
                    .push_back(Step::Write(Change::Forget { id: id.clone() }));
                self.out.push_back(Step::Log(Note::AlertDropped {
                    alert_id: id.clone(),
                    failures,
                }));
            }
        }
        if let Some(status) = result.status() {
            self.out.push_back(Step::Log(Note::AlertFailed {
                alert_id: id,
                status,
            }));
        }
    }

    /// When the soonest queued alert is due (`None`: the outbox is empty).
    pub fn handle_next(&mut self, soonest: Option<UnixMs>) {
        self.phase = Phase::Done(soonest);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::secret::SigningSecrets;
    use alloc::vec;
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    const NOW: UnixMs = UnixMs(1_000_000);

    fn on() -> Feature<AlertsConfig> {
        let secrets =
            SigningSecrets::parse("whsec_ZGlkaXQtZWRnZS1sb2NhbC1kZW1vLWtleS0wMDE=").expect("key");
        Feature::On(AlertsConfig {
            url: "https://alerts.example/hook".into(),
            signing_secrets: secrets,
        })
    }

    fn queued(id: &str, failures: i64) -> Queued {
        Queued {
            id: id.into(),
            body: alloc::format!("{{\"id\":\"{id}\"}}"),
            failures,
        }
    }

    /// Runs to the end, answering every send with `answer(id)`; returns the steps seen
    /// (sends as their ids) and when it wakes.
    fn drive(
        alerts: &Feature<AlertsConfig>,
        due: Vec<Queued>,
        answer: impl Fn(&str) -> AttemptResult,
        soonest: Option<UnixMs>,
    ) -> (Vec<Step<'_>>, Option<UnixMs>) {
        let mut run = Run::begin(alerts, NOW);
        let mut due = Some(due);
        let mut seen = Vec::new();
        for _ in 0..200 {
            let step = run.poll();
            match &step {
                Step::Clear => run.handle_cleared(),
                Step::ReadDue { now, limit } => {
                    assert_eq!((*now, *limit), (NOW, ALERTS_PER_RUN));
                    run.handle_due(due.take().expect("read once"));
                }
                Step::Send { id, timeout_ms, .. } => {
                    assert_eq!(*timeout_ms, SEND_TIMEOUT_MS);
                    let result = answer(id);
                    run.handle_sent(&result, NOW.plus_ms(7));
                }
                Step::ReadNext => run.handle_next(soonest),
                Step::Done { wake_at } => return (seen, *wake_at),
                Step::Write(_) | Step::Log(_) => {}
            }
            seen.push(step);
        }
        panic!("the run never ended")
    }

    #[test]
    fn alerts_switched_off_empty_the_outbox_and_sleep() {
        let (steps, wake_at) = drive(&Feature::Off, vec![], |_| unreachable!(), None);
        assert_eq!(steps, [Step::Clear]);
        assert_eq!(wake_at, None);
        assert!(!queues(&Feature::Off));
    }

    #[test]
    fn broken_alerts_wait_a_minute_and_send_nothing() {
        let (steps, wake_at) = drive(&Feature::Broken, vec![], |_| unreachable!(), None);
        assert!(steps.is_empty(), "{steps:?}");
        assert_eq!(wake_at, Some(UnixMs(1_060_000)));
        assert!(queues(&Feature::Broken), "held until fixed");
        assert!(queues(&on()));
    }

    #[test]
    fn a_delivered_alert_is_forgotten_and_a_failed_one_retried_on_the_schedule() {
        let alerts = on();
        let (steps, wake_at) = drive(
            &alerts,
            vec![queued("a", 0), queued("b", 2)],
            |id| match id {
                "a" => AttemptResult::Status(204),
                _ => AttemptResult::Status(503),
            },
            Some(UnixMs(5)),
        );
        let writes: Vec<&Step<'_>> = steps
            .iter()
            .filter(|s| matches!(s, Step::Write(_) | Step::Log(_)))
            .collect();
        assert_eq!(
            writes,
            [
                &Step::Write(Change::Forget { id: "a".into() }),
                &Step::Write(Change::Retry {
                    id: "b".into(),
                    failures: 3,
                    next_at: NOW.plus_ms(7 + 120_000),
                }),
                &Step::Log(Note::AlertFailed {
                    alert_id: "b".into(),
                    status: 503
                }),
            ]
        );
        assert_eq!(wake_at, Some(UnixMs(5)), "when the soonest is due");
        assert_eq!(steps.last(), Some(&Step::ReadNext));
    }

    #[test]
    fn an_alert_whose_schedule_ran_out_is_dropped_and_logged() {
        let alerts = on();
        let (steps, _) = drive(
            &alerts,
            vec![queued("late", 10)],
            |_| AttemptResult::Timeout,
            None,
        );
        let after_send: Vec<&Step<'_>> = steps.iter().skip(2).collect();
        assert_eq!(
            after_send,
            [
                &Step::Write(Change::Forget { id: "late".into() }),
                &Step::Log(Note::AlertDropped {
                    alert_id: "late".into(),
                    failures: 11
                }),
                &Step::ReadNext,
            ],
            "no status, no alert_failed line"
        );
        let line = Note::AlertDropped {
            alert_id: "late".into(),
            failures: 11,
        };
        assert!(line.is_error());
        assert_eq!(
            line.to_json(),
            r#"{"event":"alert_dropped","alert_id":"late","failures":11}"#
        );
    }

    #[test]
    fn an_unreadable_failure_count_gets_one_last_logged_try() {
        let alerts = on();
        let (steps, _) = drive(
            &alerts,
            vec![queued("odd", -3), queued("ok", 0)],
            |_| AttemptResult::Status(500),
            None,
        );
        assert_eq!(
            steps[1],
            Step::Log(Note::AlertFailuresUnreadable {
                alert_id: "odd".into(),
                stored: -3
            })
        );
        assert!(steps.contains(&Step::Write(Change::Forget { id: "odd".into() })));
        assert!(steps.contains(&Step::Write(Change::Retry {
            id: "ok".into(),
            failures: 1,
            next_at: NOW.plus_ms(7 + 5_000),
        })));
        let (steps, _) = drive(
            &alerts,
            vec![queued("odd", i64::MAX)],
            |_| AttemptResult::Status(200),
            None,
        );
        assert!(
            steps.contains(&Step::Write(Change::Forget { id: "odd".into() })),
            "delivered on its last try"
        );
    }

    #[test]
    fn the_outbox_wakes_at_once_after_queueing_unless_it_is_due_sooner() {
        assert_eq!(alarm_after_enqueue(None, NOW), Some(NOW));
        assert_eq!(alarm_after_enqueue(Some(UnixMs(NOW.0 + 1)), NOW), Some(NOW));
        assert_eq!(alarm_after_enqueue(Some(NOW), NOW), None);
        assert_eq!(alarm_after_enqueue(Some(UnixMs(3)), NOW), None);
        assert_eq!(wake_after_failure(NOW), UnixMs(1_060_000));
    }
}
