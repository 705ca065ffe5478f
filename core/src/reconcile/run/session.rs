//! The session in hand: what a run remembers of it after each answer (known, a gap, erased),
//! and what a failed try of it sets aside, or gives up on with an alert.

use alloc::string::String;

use crate::alert::Alert;
use crate::reconcile::memory::{self, Change, Failure, Seen, SetAside};
use crate::time::UnixSecs;

use super::{subject_of, InHand, Run, Step};

impl Run {
    pub(super) fn remember(
        &mut self,
        hand: &InHand,
        status: String,
        gap_since: Option<UnixSecs>,
        set_aside: Option<SetAside>,
    ) {
        let seen = Seen {
            status,
            gap_since,
            checked_at: self.secs(),
            set_aside,
        };
        self.recalled
            .insert(hand.row.session_id.clone(), seen.clone());
        self.changes.push_back(Change::Remember {
            session_id: hand.row.session_id.clone(),
            created_at: hand.row.created_at.secs(),
            seen,
        });
    }

    /// Remembers that the edge holds the session's result.
    pub(super) fn remember_held(&mut self, hand: &InHand, status: String) {
        self.inbox_failures_in_a_row = 0;
        self.remember(hand, status, None, None);
    }

    /// Remembers the session in hand as the gap it is, its set-aside untouched: nothing this
    /// run did counts as a try.
    pub(super) fn keep_gap(&mut self, hand: &InHand) {
        let set_aside = hand.previous_set_aside();
        self.remember(hand, hand.row.status.clone(), hand.gap_since, set_aside);
    }

    /// The session's subject is erased: forget it, and mark it to be left alone.
    pub(super) fn mark_erased(&mut self, hand: &InHand) {
        self.inbox_failures_in_a_row = 0;
        self.erased.insert(hand.key.clone());
        self.recalled.remove(&hand.row.session_id);
        let subject = subject_of(&hand.row);
        self.changes
            .extend(memory::erasure(&subject, self.secs()).into_iter().flatten());
    }

    /// A try of the session in hand failed: it is set aside with its own next try (or given
    /// up on, with an alert), and the run goes on unless the failure says it should not.
    pub(super) fn failed(&mut self, mut hand: InHand, failure: Failure) {
        let retry = self.settings.gap_retry;
        let set_aside = SetAside::after(
            hand.previous_set_aside().as_ref(),
            failure,
            self.secs(),
            retry,
        );
        self.counts.set_aside += 1;
        self.note_error(failure.describe(&set_aside, retry));
        if set_aside.gave_up() && self.settings.alerts {
            if !self.spend(1, false, 1) {
                // The alert must go out with the give-up: this try is made again next run.
                self.keep_gap(&hand);
                return;
            }
            let alert = Alert::ReconciliationGaveUp {
                gap: memory::gap_reference(&hand.row.session_id),
                subject_kind: hand.row.kind.subject_kind().as_str().into(),
                failure: failure.code(),
                status: failure.status(),
                tries: set_aside.tries,
                at_ms: self.now.0,
            };
            hand.giving_up = Some(set_aside);
            self.in_hand = Some(hand);
            self.pending = Some(Step::Alert { alert });
            return;
        }
        if set_aside.gave_up() {
            self.counts.gave_up += 1;
        }
        self.remember(
            &hand,
            hand.row.status.clone(),
            hand.gap_since,
            Some(set_aside),
        );
        self.after_failure(failure);
    }
}
