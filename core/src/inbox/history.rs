//! What a consumer's copy remembers of its own delivery, for the admin API's lookup and a dead
//! letter's listing. It lives in the copy's record, which every attempt rewrites anyway (its
//! state changes), so remembering costs no row written: the separate `attempts` table that
//! older releases appended to cost about three rows the first time a copy failed and one per
//! attempt after (docs/performance.md). It is bounded, so that an event's row stays small
//! whatever an origin does: the latest [`HISTORY_ATTEMPTS`] requests, and counters for the
//! rest.

use alloc::string::{String, ToString};
use alloc::vec::Vec;

use super::UnknownValue;
use crate::admin::LoggedAttempt;
use crate::attempt::LogEntry;
use crate::time::UnixMs;

/// Requests a copy keeps: as many as a dead letter's listing shows, so the listing shows what
/// it showed when every request had its own row.
pub const HISTORY_ATTEMPTS: usize = 100;

/// Texts per request in a stored log ([`History::log_fields`]).
const LOG_FIELDS: usize = 6;

/// One copy's delivery history.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct History {
    /// Attempts made (each tries up to four origins), replays included; one more than
    /// `failures` for a delivered copy that was never replayed.
    pub attempts: u32,
    /// Requests recorded in all, including those [`History::latest`] no longer holds.
    pub requests: u32,
    /// The latest requests, oldest first, at most [`HISTORY_ATTEMPTS`].
    pub latest: Vec<LoggedAttempt>,
    /// How many times an operator replayed it.
    pub replays: u32,
    /// When it was last replayed.
    pub replayed_at: Option<UnixMs>,
}

impl History {
    /// Records one attempt's requests; the oldest go once more than [`HISTORY_ATTEMPTS`] are
    /// kept. An attempt that sent nothing and logged nothing (every origin cooling down: no
    /// retry used up) is not one.
    pub fn record_attempt(&mut self, log: &[LogEntry]) {
        if log.is_empty() {
            return;
        }
        self.attempts = self.attempts.saturating_add(1);
        let added = u32::try_from(log.len()).unwrap_or(u32::MAX);
        self.requests = self.requests.saturating_add(added);
        self.latest.extend(log.iter().map(LoggedAttempt::of));
        let excess = self.latest.len().saturating_sub(HISTORY_ATTEMPTS);
        self.latest.drain(..excess);
    }

    /// Records an operator's replay.
    pub fn record_replay(&mut self, now: UnixMs) {
        self.replays = self.replays.saturating_add(1);
        self.replayed_at = Some(now);
    }

    /// Requests recorded but no longer kept.
    pub fn dropped(&self) -> u32 {
        let kept = u32::try_from(self.latest.len()).unwrap_or(u32::MAX);
        self.requests.saturating_sub(kept)
    }

    /// The kept requests as stored in the copy's entry: six texts each (`at_ms`, origin, status,
    /// error, location, latency ms, `None` for what a request lacks) in one flat list, so that
    /// storage reads them with the one reader of text lists the worker already carries instead
    /// of a struct reader of their own (docs/performance.md).
    pub fn log_fields(&self) -> Vec<Option<String>> {
        let mut fields = Vec::with_capacity(self.latest.len() * LOG_FIELDS);
        for entry in &self.latest {
            fields.push(Some(entry.at_ms.to_string()));
            fields.push(entry.origin.clone());
            fields.push(entry.status.map(|status| status.to_string()));
            fields.push(entry.error.clone());
            fields.push(entry.location.clone());
            fields.push(entry.latency_ms.map(|ms| ms.to_string()));
        }
        fields
    }

    /// Reads [`History::log_fields`] back: a list that is not six texts per request, or a number
    /// that is not one, is [`UnknownValue::Malformed`].
    pub fn log_from_fields(
        fields: Vec<Option<String>>,
    ) -> Result<Vec<LoggedAttempt>, UnknownValue> {
        if !fields.len().is_multiple_of(LOG_FIELDS) {
            return Err(UnknownValue::Malformed);
        }
        fn number<T: core::str::FromStr>(field: Option<String>) -> Result<Option<T>, UnknownValue> {
            field
                .map(|text| text.parse().map_err(|_| UnknownValue::Malformed))
                .transpose()
        }
        let mut log = Vec::with_capacity(fields.len() / LOG_FIELDS);
        let mut fields = fields.into_iter();
        while let Some(at_ms) = fields.next() {
            let mut next = || fields.next().flatten();
            log.push(LoggedAttempt {
                at_ms: number(at_ms)?.ok_or(UnknownValue::Malformed)?,
                origin: next(),
                status: number(next())?,
                error: next(),
                location: next(),
                latency_ms: number(next())?,
            });
        }
        Ok(log)
    }

    /// Forgets where redirects pointed: a `Location` is the origin's text, and may name the
    /// subject (an erasure takes it). Whether anything went.
    pub fn forget_locations(&mut self) -> bool {
        let mut forgot = false;
        for entry in &mut self.latest {
            forgot |= entry.location.take().is_some();
        }
        forgot
    }
}

#[cfg(test)]
mod tests {
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    use alloc::string::String;
    use alloc::vec;

    use super::*;

    fn entry(at_ms: i64, status: u16) -> LogEntry {
        LogEntry {
            at_ms,
            origin: Some(String::from("aws")),
            status: Some(status),
            error: (status >= 300).then_some("server_error"),
            location: None,
            latency_ms: Some(7),
        }
    }

    #[test]
    fn an_attempt_keeps_each_request_with_its_latency() {
        let mut history = History::default();
        history.record_attempt(&[entry(1, 503), entry(2, 204)]);
        assert_eq!(history.attempts, 1);
        assert_eq!(history.requests, 2);
        assert_eq!(history.dropped(), 0);
        let statuses: Vec<Option<u16>> = history.latest.iter().map(|e| e.status).collect();
        assert_eq!(statuses, vec![Some(503), Some(204)]);
        assert_eq!(history.latest[0].latency_ms, Some(7));
        assert_eq!(history.latest[0].error.as_deref(), Some("server_error"));
        assert_eq!(history.latest[1].error, None);
    }

    #[test]
    fn only_the_latest_requests_are_kept_and_the_rest_are_counted() {
        let mut history = History::default();
        for at in 0..(HISTORY_ATTEMPTS as i64 + 5) {
            history.record_attempt(&[entry(at, 503)]);
        }
        assert_eq!(history.latest.len(), HISTORY_ATTEMPTS);
        assert_eq!(history.requests, HISTORY_ATTEMPTS as u32 + 5);
        assert_eq!(history.dropped(), 5);
        assert_eq!(history.latest.first().map(|e| e.at_ms), Some(5));
        assert_eq!(
            history.latest.last().map(|e| e.at_ms),
            Some(HISTORY_ATTEMPTS as i64 + 4)
        );
    }

    #[test]
    fn the_stored_log_reads_back_as_written_and_a_broken_one_is_refused() {
        let mut history = History::default();
        let mut redirect = entry(1, 307);
        redirect.location = Some(String::from("https://a.example/x?y=1,2"));
        let mut unsent = entry(2, 0);
        (unsent.origin, unsent.status, unsent.latency_ms) = (None, None, None);
        unsent.error = Some("no_origin");
        history.record_attempt(&[redirect, unsent, entry(3, 204)]);
        let fields = history.log_fields();
        assert_eq!(fields.len(), 18);
        assert_eq!(History::log_from_fields(fields.clone()), Ok(history.latest));
        assert_eq!(
            History::log_from_fields(fields[..17].to_vec()),
            Err(UnknownValue::Malformed)
        );
        let mut bad = fields;
        bad[2] = Some(String::from("two hundred"));
        assert_eq!(History::log_from_fields(bad), Err(UnknownValue::Malformed));
    }

    #[test]
    fn an_attempt_that_sent_nothing_is_not_counted() {
        let mut history = History::default();
        history.record_attempt(&[]);
        assert_eq!(history, History::default());
    }

    #[test]
    fn a_replay_is_counted_and_dated() {
        let mut history = History::default();
        history.record_replay(UnixMs(10));
        history.record_replay(UnixMs(20));
        assert_eq!(history.replays, 2);
        assert_eq!(history.replayed_at, Some(UnixMs(20)));
    }

    #[test]
    fn forgetting_locations_keeps_the_rest_of_each_request() {
        let mut history = History::default();
        let mut redirect = entry(1, 302);
        redirect.location = Some(String::from("https://example.com/u/alice"));
        history.record_attempt(&[redirect, entry(2, 503)]);
        assert!(history.forget_locations());
        assert!(history.latest.iter().all(|e| e.location.is_none()));
        assert_eq!(history.latest[0].status, Some(302));
        assert!(!history.forget_locations(), "nothing left to forget");
    }
}
