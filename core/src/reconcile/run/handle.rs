//! What each answer does to a run: one handler per [`Step`], each given the time the answer
//! came, and two for what may happen between steps (an erasure, a storage failure). A handler
//! ignores an answer to a step that is not the one pending, and drops one about a session
//! whose subject was erased meanwhile.

use alloc::collections::VecDeque;
use alloc::string::String;

use crate::inbox::Knowledge;
use crate::reconcile::api::{self, Answer, ApiError, SessionRow};
use crate::reconcile::memory::{session_erasure_key, Failure, Seen, SetAside};
use crate::reconcile::{event, RunEnd};
use crate::time::UnixMs;

use super::{InjectFailure, Injected, PageEnd, Phase, Recalled, Run, Step};

impl Run {
    /// What the list request came to at `now`. Ignored unless a list request is pending.
    pub fn handle_page(&mut self, answer: Answer<'_>, now: UnixMs) {
        self.observe(now);
        if !self.take_pending(|step| matches!(step, Step::List { .. })) {
            return;
        }
        let Some(sweep) = &self.state.sweep else {
            return;
        };
        let (kind, offset, from) = (sweep.kind, sweep.offset, sweep.from);
        let page = answer
            .body(self.secs())
            .and_then(|body| api::parse_page(body, kind, offset));
        match page {
            Ok(page) => {
                if let Some(inconsistency) = page.inconsistency {
                    self.note_error(alloc::format!("Didit's API sent {inconsistency}"));
                }
                self.counts.pages += 1;
                self.counts.unreadable_rows += page.unreadable_rows;
                self.counts.sessions_checked += page.rows.len() as u64;
                self.page = PageEnd {
                    len: page.len,
                    has_next: page.has_next,
                };
                // The API filters by date; a row outside the window is not this sweep's.
                let from = from.micros();
                let rows: VecDeque<SessionRow> = page
                    .rows
                    .into_iter()
                    .filter(|row| {
                        row.created_at >= from
                            && self.after_switch_on(row.created_at)
                            && api::is_result_status(&row.status)
                    })
                    .collect();
                self.rows = rows;
                self.phase = if self.rows.is_empty() {
                    Phase::Rows
                } else {
                    Phase::Recall
                };
            }
            Err(error) => self.api_failed(error),
        }
    }

    /// What is remembered of the page's sessions (those not listed are unknown), and which of
    /// their erasure keys are marked.
    pub fn handle_recalled(
        &mut self,
        seen: impl IntoIterator<Item = (String, Seen)>,
        erased: impl IntoIterator<Item = String>,
    ) {
        if !self.take_pending(|step| matches!(step, Step::Recall { .. })) {
            return;
        }
        self.recalled = Recalled::default();
        for (session_id, seen) in seen {
            self.recalled.insert(session_id, seen);
        }
        self.erased.extend(erased);
        self.phase = Phase::Rows;
    }

    /// What the inbox said at `now` (`Err`: it could not be asked).
    pub fn handle_inbox(&mut self, answer: Result<Knowledge, ()>, now: UnixMs) {
        self.observe(now);
        if !self.take_pending(|step| matches!(step, Step::AskInbox { .. })) {
            return;
        }
        let Some(mut hand) = self.take_hand() else {
            return;
        };
        match answer {
            Ok(Knowledge::Held) => self.remember_held(&hand, hand.row.status.clone()),
            Ok(Knowledge::Erased) => self.mark_erased(&hand),
            Ok(Knowledge::Missing) => {
                self.inbox_failures_in_a_row = 0;
                let since = hand.gap_since.unwrap_or(self.secs());
                hand.gap_since = Some(since);
                if !self.settled(since) {
                    self.remember(&hand, hand.row.status.clone(), Some(since), None);
                    return;
                }
                self.counts.gaps_found += 1;
                // The decision and its injection go together, or wait for the next run (the gap
                // stays remembered as settled, so that run asks for it first).
                let inject_cost = self.inject_cost();
                if self.decisions_left == 0 || !self.affords(1 + inject_cost, true, 2) {
                    self.keep_gap(&hand);
                    self.out_of_budget(true);
                    return;
                }
                self.spend(1, true, 2);
                self.decisions_left -= 1;
                hand.requested_at = self.secs();
                self.pending = Some(Step::FetchDecision {
                    path: api::decision_path(&hand.row.session_id),
                });
                self.in_hand = Some(hand);
            }
            Err(()) => self.failed(hand, Failure::InboxUnreachable),
        }
    }

    /// What the decision request came to at `now`.
    pub fn handle_decision(&mut self, answer: Answer<'_>, now: UnixMs) {
        self.observe(now);
        if !self.take_pending(|step| matches!(step, Step::FetchDecision { .. })) {
            return;
        }
        let Some(mut hand) = self.take_hand() else {
            return;
        };
        let failure = match answer {
            Answer::Ok(body) => match event::from_decision(body, &hand.row, hand.requested_at) {
                Ok(reconciled) if api::is_result_status(&reconciled.status) => {
                    // `handle_inbox` made sure this fits.
                    let cost = self.inject_cost();
                    if !self.spend(cost, false, 1) {
                        self.keep_gap(&hand);
                        return;
                    }
                    hand.injecting = Some(reconciled.status);
                    self.in_hand = Some(hand);
                    self.pending = Some(Step::Inject {
                        body: reconciled.body,
                    });
                    return;
                }
                // Back in progress since it was listed: nothing to deliver yet.
                Ok(_) => return,
                Err(_) => Failure::DecisionUnreadable,
            },
            Answer::TooLarge => Failure::DecisionTooLarge,
            Answer::Status {
                status: 429,
                retry_after,
            } => {
                // Didit's rate limit is the key's, not the session's: no try is counted.
                self.keep_gap(&hand);
                self.api_failed(ApiError::Unavailable {
                    status: Some(429),
                    retry_after_secs: retry_after
                        .and_then(|text| api::retry_after_secs(text, self.secs())),
                });
                return;
            }
            Answer::Status { status: 404, .. } => Failure::DecisionNotFound,
            Answer::Status { status, .. } if status == 408 || status >= 500 => {
                Failure::DecisionUnavailable {
                    status: Some(status),
                }
            }
            Answer::Status { status, .. } => Failure::DecisionRefused { status },
            Answer::Unreachable => Failure::DecisionUnavailable { status: None },
        };
        self.failed(hand, failure);
    }

    /// What came of the injection at `now`.
    pub fn handle_injected(&mut self, answer: Result<Injected, InjectFailure>, now: UnixMs) {
        self.observe(now);
        if !self.take_pending(|step| matches!(step, Step::Inject { .. })) {
            return;
        }
        let Some(mut hand) = self.take_hand() else {
            return;
        };
        let status = hand
            .injecting
            .take()
            .unwrap_or_else(|| hand.row.status.clone());
        match answer {
            Ok(Injected::Accepted) => {
                self.counts.events_injected += 1;
                self.remember_held(&hand, status);
            }
            Ok(Injected::Duplicate) => self.remember_held(&hand, status),
            Ok(Injected::Erased) => self.mark_erased(&hand),
            Err(InjectFailure::SettingsBroken) => {
                self.keep_gap(&hand);
                self.note_error(
                    "the delivery settings are broken; missing results wait until they are fixed"
                        .into(),
                );
                self.end(RunEnd::Held);
            }
            Err(InjectFailure::Refused) => self.failed(hand, Failure::EventRefused),
            Err(InjectFailure::InboxUnreachable) => self.failed(hand, Failure::InboxUnreachable),
        }
    }

    /// Whether the give-up alert was queued at `now` (`Err`: it was not, so the give-up waits
    /// for the next try, which alerts again).
    pub fn handle_alerted(&mut self, queued: Result<(), ()>, now: UnixMs) {
        self.observe(now);
        if !self.take_pending(|step| matches!(step, Step::Alert { .. })) {
            return;
        }
        let Some(mut hand) = self.take_hand() else {
            return;
        };
        let Some(set_aside) = hand.giving_up.take() else {
            return;
        };
        let set_aside = match queued {
            Ok(()) => {
                self.counts.gave_up += 1;
                set_aside
            }
            Err(()) => {
                self.note_error("an alert could not be queued; the gap is tried again".into());
                SetAside {
                    tries: set_aside.tries.saturating_sub(1),
                    retry_at: Some(self.secs()),
                    ..set_aside
                }
            }
        };
        self.remember(
            &hand,
            hand.row.status.clone(),
            hand.gap_since,
            Some(set_aside),
        );
        self.after_failure(set_aside.failure);
    }

    /// An operator erased the subject with this erasure key while the run was under way (the
    /// adapter has stored the erasure's own changes): nothing more about it is asked, fetched,
    /// injected or remembered.
    pub fn handle_erased(&mut self, key: &str) {
        self.erased.insert(key.into());
        for queue in [&mut self.rows, &mut self.retries] {
            queue.retain(|row| session_erasure_key(row.kind, &row.session_id) != key);
        }
        if let Some(hand) = self.in_hand.as_mut().filter(|hand| hand.key == key) {
            hand.erased = true;
            self.recalled.remove(&hand.row.session_id);
        }
    }

    /// The adapter could not read or write its own storage: the run ends (what was stored
    /// stays, and a remembered answer that was not is asked again), and the next run retries.
    pub fn handle_storage_failure(&mut self, error: String) {
        self.note_error(error);
        self.end(RunEnd::Storage);
    }
}
