//! One session's attempts as Didit made them. Didit's deliveries list has no filter by
//! session, so the scan pages each of this edge's destinations over the days the edge saw the
//! session's events, keeps the rows of that session, and stops at a page budget, saying so
//! when the days were not all read.

use alloc::collections::VecDeque;
use alloc::string::String;
use alloc::vec::Vec;
use core::fmt::Write as _;
use serde::Serialize;
use serde_json::Value;

use super::{parse_deliveries_page, Destination, DiditAttempt, DiditViewError};
use crate::admin::{LookupTarget, MAX_EVENT_ID_BYTES};
use crate::identity::{Subject, SubjectKind};
use crate::rejection::Rejection;
use crate::time::to_rfc3339;

/// Deliveries pages read for one session, across its destinations: with the list and the
/// inbox's lookup, 12 subrequests, well within the Free plan's 50, and a bounded wait for the
/// operator.
pub const PAGE_BUDGET: u32 = 10;
/// Rows asked for per page.
pub const DELIVERIES_PER_PAGE: u32 = 100;
/// Days read back for a session the edge holds nothing of (every attempt refused, or
/// forgotten): today and yesterday (UTC).
pub const UNKNOWN_SESSION_DAYS: i64 = 2;
/// The most days one scan covers, the latest ones: a session's events span days at most.
pub const MAX_WINDOW_DAYS: i64 = 31;
/// The most attempts one answer lists.
pub const MAX_ATTEMPTS: usize = 500;

const DAY_MS: i64 = 86_400_000;

/// The session a `POST /admin/didit/deliveries` body names: the lookup's body, for a
/// `session` or `business_session` (Didit's deliveries name sessions only).
pub fn deliveries_request(target: LookupTarget) -> Result<Subject<'static>, Rejection> {
    match target {
        LookupTarget::Subject {
            subject,
            event_id: None,
        } if matches!(
            subject.kind,
            SubjectKind::Session | SubjectKind::BusinessSession
        ) && subject.id.len() <= MAX_EVENT_ID_BYTES =>
        {
            Ok(subject)
        }
        _ => Err(Rejection::InvalidSubject {
            reason: "Didit's attempts are read for a session: {\"subject_kind\": \"session\" or \"business_session\", \"subject_id\"} (at most 256 bytes)",
        }),
    }
}

/// Which UTC days are read, inclusive.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DayWindow {
    /// The first day, as Unix days.
    pub first_day: i64,
    /// The last day.
    pub last_day: i64,
    /// Whether the days come from the edge's timeline or, for a session it holds nothing of,
    /// the last [`UNKNOWN_SESSION_DAYS`].
    pub from_timeline: bool,
}

impl DayWindow {
    /// The days of a session's events, from a lookup's answer (`None`: the inbox holds
    /// nothing): from the earliest of Didit's `created_at` and the edge's receipt (Didit's
    /// first try comes before a refused one's retry is received) to the latest receipt. An
    /// answer whose times do not read counts as none.
    pub fn of_lookup(lookup: Option<&str>, now_ms: i64) -> Self {
        let mut earliest = i64::MAX;
        let mut latest = i64::MIN;
        let parsed = lookup.and_then(|text| crate::json::from_str::<Value>(text).ok());
        let events = parsed
            .as_ref()
            .and_then(|lookup| lookup.get("events"))
            .and_then(Value::as_array);
        for event in events.into_iter().flatten() {
            let received = event
                .get("received")
                .and_then(|received| received.get("at_ms"))
                .and_then(Value::as_i64);
            let created = event
                .get("created_at")
                .and_then(Value::as_i64)
                .map(|secs| secs.saturating_mul(1_000));
            for moment in [received, created].into_iter().flatten() {
                earliest = earliest.min(moment);
            }
            if let Some(received) = received {
                latest = latest.max(received);
            }
        }
        let today = now_ms.div_euclid(DAY_MS);
        if latest == i64::MIN {
            return Self {
                first_day: today - (UNKNOWN_SESSION_DAYS - 1),
                last_day: today,
                from_timeline: false,
            };
        }
        let last_day = latest.div_euclid(DAY_MS).min(today);
        let first_day = earliest
            .div_euclid(DAY_MS)
            .clamp(last_day - (MAX_WINDOW_DAYS - 1), last_day);
        Self {
            first_day,
            last_day,
            from_timeline: true,
        }
    }

    fn day(days: i64) -> String {
        let mut text = to_rfc3339(days.saturating_mul(86_400));
        text.truncate(10);
        text
    }
}

/// A destination's page still to read.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Pending {
    destination: String,
    path: String,
}

/// The scan of one session's attempts: the adapter `GET`s [`SessionScan::next_path`] under
/// the API's base URL and hands each page's body back to [`SessionScan::handle_page`] until
/// there is no next path, then writes [`SessionScan::finish`].
#[derive(Clone, Debug)]
pub struct SessionScan {
    session_id: String,
    window: DayWindow,
    pending: VecDeque<Pending>,
    destinations: Vec<String>,
    pages_read: u32,
    attempts: Vec<DiditAttempt>,
    not_followed: bool,
}

impl SessionScan {
    /// A scan of `session_id` over `window`, on the destinations marked as this edge's.
    pub fn new(session_id: &str, destinations: &[Destination], window: DayWindow) -> Self {
        let mut scan = Self {
            session_id: String::from(session_id),
            window,
            pending: VecDeque::new(),
            destinations: Vec::new(),
            pages_read: 0,
            attempts: Vec::new(),
            not_followed: false,
        };
        for destination in destinations.iter().filter(|d| d.this_edge) {
            let mut path = String::from("/webhook/destinations/");
            push_escaped(&mut path, &destination.uuid);
            let _ = write!(
                path,
                "/deliveries/?limit={DELIVERIES_PER_PAGE}&date_from={}&date_to={}",
                DayWindow::day(window.first_day),
                DayWindow::day(window.last_day),
            );
            scan.destinations.push(destination.uuid.clone());
            scan.pending.push_back(Pending {
                destination: destination.uuid.clone(),
                path,
            });
        }
        scan
    }

    /// The next page to read, relative to the API's base URL; `None` once every destination
    /// is read to its last page, or the page budget is spent.
    pub fn next_path(&self) -> Option<&str> {
        if self.pages_read >= PAGE_BUDGET {
            return None;
        }
        self.pending.front().map(|pending| pending.path.as_str())
    }

    /// Takes the body of the page [`SessionScan::next_path`] named. Its `next` is followed
    /// only under `base_url` (the API key goes with every request); anything else ends that
    /// destination's pages and the answer says the days were not all read.
    pub fn handle_page(&mut self, body: &str, base_url: &str) -> Result<(), DiditViewError> {
        let Some(pending) = self.pending.pop_front() else {
            return Ok(());
        };
        self.pages_read += 1;
        let page = parse_deliveries_page(body, &pending.destination)?;
        let room = MAX_ATTEMPTS.saturating_sub(self.attempts.len());
        self.attempts.extend(
            page.results
                .into_iter()
                .filter(|attempt| attempt.session_id.as_deref() == Some(&self.session_id))
                .take(room),
        );
        if let Some(next) = page.next {
            match relative_to(&next, base_url) {
                Some(path) => self.pending.push_front(Pending {
                    destination: pending.destination,
                    path,
                }),
                None => self.not_followed = true,
            }
        }
        Ok(())
    }

    /// The answer: the attempts found, oldest first, and whether the window was read whole.
    pub fn finish(mut self) -> SessionAttempts {
        crate::sorted::sort_by_key(&mut self.attempts, |attempt| attempt.at_ms);
        SessionAttempts {
            enabled: true,
            session_id: self.session_id,
            date_from: DayWindow::day(self.window.first_day),
            date_to: DayWindow::day(self.window.last_day),
            days_from: if self.window.from_timeline {
                "edge_timeline"
            } else {
                "recent_days"
            },
            destinations: self.destinations,
            pages_read: self.pages_read,
            page_budget: PAGE_BUDGET,
            complete: self.pending.is_empty() && !self.not_followed,
            budget_reached: !self.pending.is_empty(),
            attempts: self.attempts,
        }
    }
}

/// `next` as a path under `base_url` (no trailing slash), or `None` when it points elsewhere.
fn relative_to(next: &str, base_url: &str) -> Option<String> {
    let rest = next.strip_prefix(base_url)?;
    rest.starts_with('/').then(|| String::from(rest))
}

fn push_escaped(path: &mut String, segment: &str) {
    for byte in segment.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'_' | b'.' | b'~') {
            path.push(char::from(byte));
        } else {
            let _ = write!(path, "%{byte:02X}");
        }
    }
}

/// `POST /admin/didit/deliveries`: Didit's attempts for one session, beside the lookup.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct SessionAttempts {
    /// Always `true` here; `{"enabled": false}` is answered while `DIDIT_API_KEY` is unset.
    pub enabled: bool,
    /// The session.
    pub session_id: String,
    /// The first UTC day read (`YYYY-MM-DD`).
    pub date_from: String,
    /// The last UTC day read.
    pub date_to: String,
    /// `edge_timeline` (the days of the session's events) or `recent_days` (the edge holds
    /// nothing of it: the last [`UNKNOWN_SESSION_DAYS`] days).
    pub days_from: &'static str,
    /// The destinations read (none: no destination is this edge's, see
    /// `GET /admin/didit/destinations`).
    pub destinations: Vec<String>,
    /// Pages read.
    pub pages_read: u32,
    /// The most pages one scan reads ([`PAGE_BUDGET`]).
    pub page_budget: u32,
    /// Whether every page of the window was read: when not, older attempts may be missing.
    pub complete: bool,
    /// Whether the page budget ended the scan.
    pub budget_reached: bool,
    /// The session's attempts, oldest first.
    pub attempts: Vec<DiditAttempt>,
}
