//! How the shared health object records one [`Report`]: read the origin's breaker, step it,
//! queue the alert the change is worth, then write it. The Durable Object performs each
//! [`Step`] and hands the answer back; it decides nothing itself.
//!
//! The alert is queued before the change is recorded: if queueing fails, nothing is recorded,
//! and the next outcome reports the change again. Other reports may land while the alert is
//! being queued, so the breaker is then read again and the report applied to what they left.

use alloc::string::String;

use crate::admin::LastProbe;
use crate::alert::{breaker_alert, Alert};
use crate::health::{Breaker, Report, Restored};

/// The IO a recording asks for next.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Step {
    /// Read the origin's stored breaker ([`Recording::handle_loaded`] with
    /// [`Restored::from_stored`]).
    Load {
        /// The origin.
        origin: String,
    },
    /// Log that the origin's stored breaker could not be read and was taken as a fresh one
    /// ([`Restored::Unreadable`]); nothing to hand back.
    LogUnreadable {
        /// The origin.
        origin: String,
    },
    /// Queue this alert; an error ends the recording with nothing written
    /// ([`Recording::handle_alerted`]).
    Alert(Alert),
    /// Write the origin's breaker; nothing to hand back.
    Store {
        /// The origin.
        origin: String,
        /// Its breaker after the report.
        breaker: Breaker,
    },
    /// Write the origin's last probe (a probe's report only, after its breaker); nothing to
    /// hand back.
    StoreProbe {
        /// The origin.
        origin: String,
        /// The probe's outcome.
        probe: LastProbe,
    },
    /// Recorded.
    Done,
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Phase {
    Load,
    Alert(Alert),
    Store(Breaker),
    Probe,
    Done,
}

/// One report on its way into the shared breakers.
#[derive(Clone, Debug)]
pub struct Recording {
    report: Report,
    phase: Phase,
    unreadable: bool,
    alerted: bool,
}

impl Recording {
    /// Starts recording `report`.
    pub fn new(report: Report) -> Self {
        Self {
            report,
            phase: Phase::Load,
            unreadable: false,
            alerted: false,
        }
    }

    /// The next step.
    pub fn poll(&mut self) -> Step {
        if core::mem::take(&mut self.unreadable) {
            return Step::LogUnreadable {
                origin: self.report.origin.clone(),
            };
        }
        match core::mem::replace(&mut self.phase, Phase::Done) {
            Phase::Load => {
                self.phase = Phase::Load;
                Step::Load {
                    origin: self.report.origin.clone(),
                }
            }
            Phase::Alert(alert) => {
                self.phase = Phase::Alert(alert.clone());
                Step::Alert(alert)
            }
            Phase::Store(breaker) => {
                if self.report.probe {
                    self.phase = Phase::Probe;
                }
                Step::Store {
                    origin: self.report.origin.clone(),
                    breaker,
                }
            }
            Phase::Probe => Step::StoreProbe {
                origin: self.report.origin.clone(),
                probe: LastProbe {
                    at_ms: self.report.at_ms,
                    up: self.report.up,
                },
            },
            Phase::Done => Step::Done,
        }
    }

    /// The origin's breaker as read.
    pub fn handle_loaded(&mut self, restored: Restored) {
        self.unreadable = matches!(restored, Restored::Unreadable(_));
        let mut breaker = restored.breaker();
        let before = breaker.state();
        let report = &self.report;
        breaker.report(report.up, report.retry_after_ms, report.at_ms.0);
        let alert = (!self.alerted)
            .then(|| breaker_alert(&report.origin, before, breaker.state(), report.at_ms.0))
            .flatten();
        self.phase = match alert {
            Some(alert) => Phase::Alert(alert),
            None => Phase::Store(breaker),
        };
    }

    /// The alert was queued: read the breaker again and record the report on it.
    pub fn handle_alerted(&mut self) {
        self.alerted = true;
        self.phase = Phase::Load;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::health::{BreakerPolicy, BreakerState};
    use crate::time::UnixMs;
    use alloc::vec::Vec;
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    fn report(up: bool, at_ms: i64) -> Report {
        Report {
            origin: "aws".into(),
            up,
            retry_after_ms: None,
            at_ms: UnixMs(at_ms),
            probe: false,
        }
    }

    /// Drives a recording, answering each load from `stored` in turn; returns the steps.
    fn drive(report: Report, stored: &[Option<&str>]) -> Vec<Step> {
        let mut recording = Recording::new(report);
        let mut loads = stored.iter();
        let mut steps = Vec::new();
        loop {
            let step = recording.poll();
            match &step {
                Step::Load { .. } => {
                    let text = loads.next().expect("a load too many");
                    recording.handle_loaded(Restored::from_stored(*text));
                }
                Step::Alert(_) => recording.handle_alerted(),
                Step::Done => return steps,
                Step::Store { .. } | Step::StoreProbe { .. } | Step::LogUnreadable { .. } => {}
            }
            steps.push(step);
        }
    }

    fn stored(state: BreakerState) -> String {
        serde_json::to_string(&Breaker::with_state(BreakerPolicy::default(), state)).expect("json")
    }

    #[test]
    fn a_quiet_report_is_stored_without_an_alert() {
        let steps = drive(report(false, 10), &[None]);
        let load = Step::Load {
            origin: "aws".into(),
        };
        let mut once = Breaker::new(BreakerPolicy::default());
        once.report(false, None, 10);
        assert_eq!(
            steps,
            [
                load,
                Step::Store {
                    origin: "aws".into(),
                    breaker: once
                }
            ]
        );
    }

    #[test]
    fn an_opening_is_alerted_first_then_applied_to_what_is_stored_by_then() {
        let two = stored(BreakerState::Closed {
            consecutive_failures: 2,
        });
        // While the alert was queued, another report opened the breaker already.
        let mut opened = Breaker::new(BreakerPolicy::default());
        for at in [1, 2, 3] {
            opened.report(false, None, at);
        }
        let opened_text = serde_json::to_string(&opened).expect("json");
        let steps = drive(report(false, 5), &[Some(&two), Some(&opened_text)]);
        assert!(matches!(
            &steps[1],
            Step::Alert(alert) if alert.event_type() == "didit-edge.origin.unhealthy"
        ));
        assert_eq!(
            steps[2],
            Step::Load {
                origin: "aws".into()
            }
        );
        let mut expected = opened;
        expected.report(false, None, 5);
        assert_eq!(
            steps[3],
            Step::Store {
                origin: "aws".into(),
                breaker: expected
            },
            "no second alert: it was queued once"
        );
        assert_eq!(steps.len(), 4);
    }

    #[test]
    fn a_probe_is_kept_as_the_last_probe_after_its_breaker() {
        let probe = Report {
            probe: true,
            ..report(false, 20)
        };
        let steps = drive(probe, &[None]);
        let mut once = Breaker::new(BreakerPolicy::default());
        once.report(false, None, 20);
        assert_eq!(
            steps[1..],
            [
                Step::Store {
                    origin: "aws".into(),
                    breaker: once
                },
                Step::StoreProbe {
                    origin: "aws".into(),
                    probe: LastProbe {
                        at_ms: UnixMs(20),
                        up: false
                    }
                }
            ]
        );
    }

    #[test]
    fn an_unreadable_breaker_is_logged_and_recorded_as_fresh() {
        let steps = drive(report(true, 5), &[Some("{broken")]);
        assert_eq!(
            steps,
            [
                Step::Load {
                    origin: "aws".into()
                },
                Step::LogUnreadable {
                    origin: "aws".into()
                },
                Step::Store {
                    origin: "aws".into(),
                    breaker: Breaker::new(BreakerPolicy::default())
                },
            ]
        );
    }
}
