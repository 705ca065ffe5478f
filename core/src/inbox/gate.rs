//! When an inbox's delivery runs start, and that no two of them ever run at once.
//!
//! A new event's first attempt is made by a run its claim starts, right after the claim is
//! stored and answered, instead of by an alarm set for "now". That saves the alarm: one billed
//! Durable Object request per event, and the platform's delay in firing it, which is most of
//! the time between Didit's POST and the origin hearing of it.
//!
//! The alarm stays the backstop. Before the claim is answered, an alarm is made due within
//! [`BACKSTOP_MS`]; a run that ends sets the next alarm from what is left to do, replacing it.
//! So an object evicted while its run waits on an origin is woken again by the platform, and
//! nothing is lost with the memory that held the run.
//!
//! Runs never overlap, whoever starts them: the object's one [`RunGate`] admits a run and holds
//! it until the run says it has [`finished`](RunGate::finished). A claim or an alarm that finds
//! the gate held leaves the work to the run going on, and asks it to go once more when it ends,
//! so work that arrived after its last look is not left for the next alarm. A run whose promise
//! the platform dropped while the object lived on would hold the gate for ever; an alarm that
//! finds it held for longer than any run can last ([`LONGEST_RUN_MS`]) takes it over, and the
//! old run, should it ever go on, finds its [`Ticket`] no longer [held](RunGate::holds) and
//! stops before its next step.

use crate::attempt::MAX_ORIGINS_PER_ATTEMPT;
use crate::config::DeliveryConfig;
use crate::origin::MAX_TIMEOUT_MS;
use crate::time::UnixMs;

use super::run::RUN_TIME_BUDGET_MS;
use super::Inbox;

/// How soon the alarm comes back after a claim whose run may be cut short. Long enough that a
/// run to a healthy origin ends first (and moves the alarm), short enough that an evicted
/// object resumes delivery within half a minute.
pub const BACKSTOP_MS: u64 = 30_000;

/// Longer than any run can take: its time budget, then one attempt that started just before
/// the budget ran out and tried every origin to its longest timeout, then a minute for the
/// health report, the publish and the index push.
pub const LONGEST_RUN_MS: u64 =
    RUN_TIME_BUDGET_MS as u64 + MAX_ORIGINS_PER_ATTEMPT as u64 * MAX_TIMEOUT_MS as u64 + 60_000;

/// One admitted run: it may go on while the gate [holds](RunGate::holds) it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ticket(u64);

/// The object's one run at a time (in memory: eviction empties it along with the run).
#[derive(Debug, Default)]
pub struct RunGate {
    /// The run admitted, and since when.
    held: Option<(Ticket, UnixMs)>,
    /// Work arrived while the run was going: it goes once more when it ends.
    again: bool,
    /// Tickets handed out so far.
    issued: u64,
}

/// What a claim asks of the object once it is stored.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AfterClaim {
    /// The alarm must come no later than this (`None`: nothing is waiting for it).
    pub alarm_by: Option<UnixMs>,
    /// Start this run after answering (`None`: nothing is due, or a run is going on and will
    /// take the new work).
    pub run: Option<Ticket>,
}

/// What an alarm does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OnAlarm {
    /// Run now.
    Run(Ticket),
    /// Run now, in place of a run that held the gate for longer than any run can last: its
    /// promise was dropped (worth a log line: a POST it made may be answered twice).
    TakeOver(Ticket),
    /// A run is going on and goes once more when it ends; the alarm comes back at `alarm_at`
    /// in case the object is evicted first.
    Busy {
        /// The backstop, as after a claim.
        alarm_at: UnixMs,
    },
}

/// What a run does once it has ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AfterRun {
    /// Work arrived while it ran: go again, under this ticket.
    Again(Ticket),
    /// The gate is free.
    Idle,
}

/// When `inbox` is next due, for [`RunGate::after_claim`]: now when the delivery settings are
/// unusable (`None`), so that a run starts and says why it cannot deliver.
pub fn next_due(inbox: &Inbox, settings: Option<&DeliveryConfig>, now: UnixMs) -> Option<UnixMs> {
    match settings {
        Some(settings) => inbox.poll_timeout(&settings.inbox_policy(), now),
        None => Some(now),
    }
}

impl RunGate {
    /// A claim was stored at `now`, leaving the inbox next due at `next_due` ([`next_due`]).
    pub fn after_claim(&mut self, next_due: Option<UnixMs>, now: UnixMs) -> AfterClaim {
        match next_due {
            Some(due) if due <= now => AfterClaim {
                alarm_by: Some(now.plus_ms(BACKSTOP_MS)),
                run: self.admit(now),
            },
            later => AfterClaim {
                alarm_by: later,
                run: None,
            },
        }
    }

    /// The alarm fired at `now`.
    pub fn on_alarm(&mut self, now: UnixMs) -> OnAlarm {
        let lost = matches!(self.held, Some((_, since)) if since.plus_ms(LONGEST_RUN_MS) <= now);
        if lost {
            // The run holding the gate cannot still be going: it was dropped.
            self.held = None;
        }
        match self.admit(now) {
            Some(ticket) if lost => OnAlarm::TakeOver(ticket),
            Some(ticket) => OnAlarm::Run(ticket),
            None => OnAlarm::Busy {
                alarm_at: now.plus_ms(BACKSTOP_MS),
            },
        }
    }

    /// Whether the run under `ticket` may take its next step.
    pub fn holds(&self, ticket: Ticket) -> bool {
        matches!(self.held, Some((held, _)) if held == ticket)
    }

    /// The run under `ticket` ended at `now`. `failed` runs never go again at once: they
    /// have set a backoff alarm, which is when the next try comes.
    pub fn finished(&mut self, ticket: Ticket, failed: bool, now: UnixMs) -> AfterRun {
        if !self.holds(ticket) {
            return AfterRun::Idle;
        }
        self.held = None;
        if core::mem::take(&mut self.again) && !failed {
            if let Some(ticket) = self.admit(now) {
                return AfterRun::Again(ticket);
            }
        }
        AfterRun::Idle
    }

    /// Admits a run if none is going on; otherwise asks the one going on to go again.
    fn admit(&mut self, now: UnixMs) -> Option<Ticket> {
        if self.held.is_some() {
            self.again = true;
            return None;
        }
        self.issued += 1;
        let ticket = Ticket(self.issued);
        self.held = Some((ticket, now));
        Some(ticket)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    const NOW: UnixMs = UnixMs(1_000_000);

    #[test]
    fn a_claim_with_work_due_runs_at_once_and_holds_a_backstop_alarm() {
        let mut gate = RunGate::default();
        let after = gate.after_claim(Some(NOW), NOW);
        assert_eq!(after.alarm_by, Some(NOW.plus_ms(BACKSTOP_MS)));
        let ticket = after.run.expect("admitted");
        assert!(gate.holds(ticket));
        assert_eq!(gate.finished(ticket, false, NOW), AfterRun::Idle);
        assert!(!gate.holds(ticket));
    }

    #[test]
    fn a_claim_with_nothing_due_asks_for_no_run_and_no_earlier_alarm() {
        let mut gate = RunGate::default();
        let later = NOW.plus_ms(86_400_000);
        let after = gate.after_claim(Some(later), NOW);
        assert_eq!(
            after,
            AfterClaim {
                alarm_by: Some(later),
                run: None
            }
        );
        assert_eq!(
            gate.after_claim(None, NOW),
            AfterClaim {
                alarm_by: None,
                run: None
            }
        );
    }

    #[test]
    fn work_arriving_during_a_run_makes_it_go_again_and_never_starts_a_second() {
        let mut gate = RunGate::default();
        let first = gate.after_claim(Some(NOW), NOW).run.expect("admitted");
        assert_eq!(gate.after_claim(Some(NOW), NOW).run, None);
        assert_eq!(
            gate.on_alarm(NOW),
            OnAlarm::Busy {
                alarm_at: NOW.plus_ms(BACKSTOP_MS)
            }
        );
        let AfterRun::Again(second) = gate.finished(first, false, NOW) else {
            panic!("work arrived during the run");
        };
        assert_ne!(first, second);
        assert!(gate.holds(second) && !gate.holds(first));
        assert_eq!(gate.finished(second, false, NOW), AfterRun::Idle);
    }

    #[test]
    fn a_failed_run_leaves_the_next_try_to_its_backoff_alarm() {
        let mut gate = RunGate::default();
        let ticket = gate.after_claim(Some(NOW), NOW).run.expect("admitted");
        assert_eq!(gate.after_claim(Some(NOW), NOW).run, None);
        assert_eq!(gate.finished(ticket, true, NOW), AfterRun::Idle);
        assert!(matches!(gate.on_alarm(NOW), OnAlarm::Run(_)));
    }

    #[test]
    fn a_run_held_past_the_longest_a_run_can_last_is_taken_over() {
        let mut gate = RunGate::default();
        let lost = gate.after_claim(Some(NOW), NOW).run.expect("admitted");
        let just_before = NOW.plus_ms(LONGEST_RUN_MS - 1);
        assert!(matches!(gate.on_alarm(just_before), OnAlarm::Busy { .. }));
        let at = NOW.plus_ms(LONGEST_RUN_MS);
        let OnAlarm::TakeOver(taken) = gate.on_alarm(at) else {
            panic!("the gate was held past the longest run");
        };
        assert!(gate.holds(taken) && !gate.holds(lost));
        // The lost run, should it ever end, changes nothing.
        assert_eq!(gate.finished(lost, false, at), AfterRun::Idle);
        assert!(gate.holds(taken));
    }
}
