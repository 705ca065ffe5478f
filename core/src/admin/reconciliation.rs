//! `GET /admin/reconciliation`'s answer: off, or where reconciliation with Didit's API stands.
//! Moments are RFC 3339 text, as the admin API and the log show them.

use alloc::boxed::Box;
use alloc::string::String;
use alloc::vec::Vec;
use serde::{Deserialize, Serialize};

use crate::reconcile::{RunEnd, RunReport, Settings, Sweep};
use crate::time::{to_rfc3339, UnixSecs};

/// `GET /admin/reconciliation`: `{"enabled": false}` while `DIDIT_API_KEY` is unset, else
/// `{"enabled": true, …}` with the fields of [`Reconciling`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "Wire", into = "Wire")]
pub enum ReconciliationStatus {
    /// Reconciliation is off.
    Off,
    /// Reconciliation is on, and this is where it stands.
    On(Box<Reconciling>),
}

/// The body as it travels: `enabled`, then (when on) the status's fields beside it.
#[derive(Serialize, Deserialize)]
struct Wire {
    enabled: bool,
    #[serde(flatten)]
    on: Option<Box<Reconciling>>,
}

impl From<ReconciliationStatus> for Wire {
    fn from(status: ReconciliationStatus) -> Self {
        match status {
            ReconciliationStatus::Off => Self {
                enabled: false,
                on: None,
            },
            ReconciliationStatus::On(on) => Self {
                enabled: true,
                on: Some(on),
            },
        }
    }
}

impl TryFrom<Wire> for ReconciliationStatus {
    type Error = &'static str;

    fn try_from(wire: Wire) -> Result<Self, Self::Error> {
        match (wire.enabled, wire.on) {
            (false, _) => Ok(Self::Off),
            (true, Some(on)) => Ok(Self::On(on)),
            (true, None) => Err("an enabled reconciliation status lacks some of its fields"),
        }
    }
}

/// Set-aside gaps [`Reconciling::set_aside`] lists at most (the given-up first, then by next
/// try): enough to act on, and the answer stays small however many are set aside (the counts
/// beside it say how many in all).
pub const LISTED_GAPS: u32 = 50;

/// Where reconciliation stands: the checkpoint, the sweep under way, the last run and the next.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reconciling {
    /// The settings in force.
    pub settings: SettingsView,
    /// When it was switched on, to the microsecond (Didit's precision).
    pub activated_at: Option<String>,
    /// Up to when every session has been compared.
    pub checkpoint: Option<String>,
    /// The sweep under way, if any.
    pub sweep: Option<SweepView>,
    /// The last run, if any.
    pub last_run: Option<RunView>,
    /// When the next run is due (once switched on).
    pub next_run_at: Option<String>,
    /// Didit's API failures in a row.
    pub api_failures_in_a_row: u32,
    /// Sessions remembered.
    pub sessions_remembered: i64,
    /// Gaps waiting for their settle time.
    pub gaps_waiting: i64,
    /// Gaps whose try failed, given up on or not.
    pub gaps_set_aside: i64,
    /// Of those, the ones given up on.
    pub gaps_given_up: i64,
    /// The first set-aside gaps, the next to be tried first.
    pub set_aside: Vec<GapView>,
    /// Subjects erased, which reconciliation never fetches again.
    pub erased_subjects: i64,
}

/// The settings reconciliation runs with.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SettingsView {
    /// How far back a sweep looks.
    pub lookback_secs: u64,
    /// Between sweeps.
    pub interval_secs: u64,
    /// How long a result may wait for its webhook before it counts as a gap.
    pub settle_secs: u64,
    /// How long a held result is checked again.
    pub recheck_secs: u64,
    /// Requests one run may make.
    pub requests_per_run: u32,
}

impl SettingsView {
    /// The settings shown of `settings`.
    pub fn of(settings: &Settings) -> Self {
        Self {
            lookback_secs: settings.lookback_secs,
            interval_secs: settings.interval_secs,
            settle_secs: settings.settle_secs,
            recheck_secs: settings.recheck_secs,
            requests_per_run: settings.requests_per_run,
        }
    }
}

/// A sweep under way.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SweepView {
    /// When it started (its `date_to`).
    pub started_at: String,
    /// Its `date_from`.
    pub date_from: String,
    /// The kind of sessions being listed.
    pub session_kind: String,
    /// The next page's offset.
    pub offset: u64,
}

impl SweepView {
    /// `sweep` as shown.
    pub fn of(sweep: &Sweep) -> Self {
        Self {
            started_at: rfc3339(sweep.started_at),
            date_from: rfc3339(sweep.from),
            session_kind: sweep.kind.as_str().into(),
            offset: sweep.offset,
        }
    }
}

/// A run, as the admin API and the `reconcile_run` log line show it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunView {
    /// When it started.
    pub started_at: String,
    /// When it ended.
    pub finished_at: String,
    /// List pages read.
    pub pages: u64,
    /// Sessions compared.
    pub sessions_checked: u64,
    /// Gaps found.
    pub gaps_found: u64,
    /// Events injected.
    pub events_injected: u64,
    /// Gaps set aside.
    pub set_aside: u64,
    /// Gaps given up on.
    pub gave_up: u64,
    /// Sessions left alone because the inboxes may have forgotten them.
    pub beyond_memory: u64,
    /// Listed sessions that could not be read.
    pub unreadable_rows: u64,
    /// Requests made.
    pub requests: u64,
    /// Why it ended.
    pub ended: RunEnd,
    /// What went wrong on the way, without identity data.
    pub errors: Vec<String>,
}

impl RunView {
    /// `report` as shown.
    pub fn of(report: &RunReport) -> Self {
        let counts = &report.counts;
        Self {
            started_at: rfc3339(report.started_at),
            finished_at: rfc3339(report.finished_at),
            pages: counts.pages,
            sessions_checked: counts.sessions_checked,
            gaps_found: counts.gaps_found,
            events_injected: counts.events_injected,
            set_aside: counts.set_aside,
            gave_up: counts.gave_up,
            beyond_memory: counts.beyond_memory,
            unreadable_rows: counts.unreadable_rows,
            requests: counts.requests,
            ended: report.ended,
            errors: report.errors.clone(),
        }
    }
}

/// One set-aside gap: which session, why, and when it is tried again (`null`: given up).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct GapView {
    /// The session.
    pub session_id: String,
    /// The reference alerts carry.
    pub gap: String,
    /// The status Didit's API holds.
    pub status: String,
    /// Tries so far.
    pub tries: i64,
    /// Why the last try failed.
    pub failure: String,
    /// The HTTP status of that failure, if there was one.
    pub http_status: Option<i64>,
    /// When it is tried again; `None`: given up.
    pub next_try_at: Option<String>,
}

/// A moment as the admin API shows it.
pub fn rfc3339(at: UnixSecs) -> String {
    to_rfc3339(at.0)
}

#[cfg(test)]
mod tests {
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    use super::super::round_trips;
    use super::*;
    use crate::reconcile::Counts;
    use serde_json::json;

    #[test]
    fn off_is_enabled_false_and_nothing_else() {
        let off: ReconciliationStatus = round_trips(&json!({"enabled": false}));
        assert_eq!(off, ReconciliationStatus::Off);
        assert_eq!(
            serde_json::to_string(&off).expect("json"),
            r#"{"enabled":false}"#
        );
    }

    #[test]
    fn an_enabled_status_keeps_its_wire_shape() {
        let wire = json!({
            "enabled": true,
            "settings": {"lookback_secs": 86400, "interval_secs": 3600, "settle_secs": 600,
                         "recheck_secs": 600, "requests_per_run": 40},
            "activated_at": "2026-12-01T10:00:00.123456Z",
            "checkpoint": "2026-12-05T10:00:00Z",
            "sweep": {"started_at": "2026-12-05T11:00:00Z", "date_from": "2026-12-04T11:00:00Z",
                      "session_kind": "kyc", "offset": 100},
            "last_run": {"started_at": "2026-12-05T11:00:00Z", "finished_at": "2026-12-05T11:00:05Z",
                         "pages": 2, "sessions_checked": 150, "gaps_found": 1, "events_injected": 1,
                         "set_aside": 0, "gave_up": 0, "beyond_memory": 0, "unreadable_rows": 0,
                         "requests": 4, "ended": "budget_used", "errors": ["decision 500"]},
            "next_run_at": "2026-12-05T11:01:05Z",
            "api_failures_in_a_row": 0,
            "sessions_remembered": 150,
            "gaps_waiting": 2,
            "gaps_set_aside": 2,
            "gaps_given_up": 1,
            "set_aside": [
                {"session_id": "s-1", "gap": "0011223344556677", "status": "Approved", "tries": 2,
                 "failure": "decision_unavailable", "http_status": 500,
                 "next_try_at": "2026-12-06T20:00:00Z"},
                {"session_id": "s-2", "gap": "8899aabbccddeeff", "status": "Declined", "tries": 10,
                 "failure": "decision_refused", "http_status": null, "next_try_at": null}
            ],
            "erased_subjects": 3
        });
        let ReconciliationStatus::On(on) = round_trips(&wire) else {
            panic!("enabled reads as on");
        };
        assert_eq!(on.last_run.map(|run| run.ended), Some(RunEnd::BudgetUsed));
        // The fields come in today's order, `enabled` first.
        let text = serde_json::to_string(&ReconciliationStatus::On(Box::new(Reconciling {
            settings: SettingsView {
                lookback_secs: 86_400,
                interval_secs: 3_600,
                settle_secs: 600,
                recheck_secs: 600,
                requests_per_run: 40,
            },
            activated_at: None,
            checkpoint: None,
            sweep: None,
            last_run: None,
            next_run_at: None,
            api_failures_in_a_row: 0,
            sessions_remembered: 0,
            gaps_waiting: 0,
            gaps_set_aside: 0,
            gaps_given_up: 0,
            set_aside: Vec::new(),
            erased_subjects: 0,
        })))
        .expect("json");
        assert!(
            text.starts_with(r#"{"enabled":true,"settings":{"lookback_secs":"#),
            "{text}"
        );
        assert!(
            text.ends_with(r#""set_aside":[],"erased_subjects":0}"#),
            "{text}"
        );
    }

    #[test]
    fn an_enabled_status_without_its_fields_is_refused_not_read_as_off() {
        assert!(serde_json::from_value::<ReconciliationStatus>(json!({"enabled": true})).is_err());
        assert!(serde_json::from_value::<ReconciliationStatus>(json!({})).is_err());
    }

    #[test]
    fn a_run_shows_its_moments_as_rfc3339() {
        let report = RunReport {
            started_at: UnixSecs(0),
            finished_at: UnixSecs(1_700_000_000),
            counts: Counts {
                pages: 1,
                requests: 3,
                ..Counts::default()
            },
            ended: RunEnd::SweepDone,
            errors: Vec::new(),
        };
        let view = RunView::of(&report);
        assert_eq!(
            (view.started_at.as_str(), view.finished_at.as_str()),
            ("1970-01-01T00:00:00Z", "2023-11-14T22:13:20Z")
        );
        assert_eq!((view.pages, view.requests), (1, 3));
    }
}
