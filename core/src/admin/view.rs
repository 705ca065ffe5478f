//! The admin API's answers, one type per body: the worker serializes them and the CLI reads
//! them back, so the two cannot disagree on a field. The rules that decide what an answer
//! holds live beside its type.

use alloc::string::String;
use alloc::vec::Vec;
use serde::{Deserialize, Serialize};

use crate::health::BreakerState;
use crate::identity::SubjectKind;
use crate::inbox::Erasure;
use crate::origin::Origin;
use crate::rejection::Rejection;

/// `GET /admin/origins`: every configured origin, in configuration order.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct OriginsView {
    /// The origins.
    pub origins: Vec<OriginView>,
}

/// One origin as the admin API shows it. Its URL and health URL are left out: they may carry
/// credentials.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct OriginView {
    /// Its name.
    pub name: String,
    /// The consumer it serves (`default` when none is configured).
    pub consumer: String,
    /// Failover order within the consumer: lower is tried first.
    pub priority: u32,
    /// Share of traffic among healthy origins of equal priority.
    pub weight: u32,
    /// Where it runs, as configured.
    pub region: Option<String>,
    /// Its provider, as configured.
    pub cloud: Option<String>,
    /// Whether the cron trigger probes it (it has a `health_url`).
    pub probed: bool,
    /// How long one request may take.
    pub timeout_ms: u32,
    /// Its breaker.
    pub health: BreakerState,
}

/// The breaker an origin nobody has reported on has: closed, with no failure counted. Health
/// keeps a row only for origins something was reported about, so a new or always-healthy
/// origin is absent from its snapshot; shown as anything else it would look broken.
pub const UNREPORTED_BREAKER: BreakerState = BreakerState::Closed {
    consecutive_failures: 0,
};

impl OriginView {
    /// `origin` as listed, with `reported`, its breaker in the health snapshot (`None`: nothing
    /// was reported, so [`UNREPORTED_BREAKER`]).
    pub fn of(origin: &Origin, reported: Option<BreakerState>) -> Self {
        Self {
            name: origin.name.clone(),
            consumer: origin.consumer().into(),
            priority: origin.priority,
            weight: origin.weight,
            region: origin.region.clone(),
            cloud: origin.cloud.clone(),
            probed: origin.health_url.is_some(),
            timeout_ms: origin.timeout_ms,
            health: reported.unwrap_or(UNREPORTED_BREAKER),
        }
    }
}

/// `GET /admin/dead-letters`: one page of every subject's dead letters, oldest first.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeadLetterPage {
    /// The page.
    pub dead_letters: Vec<DeadLetter>,
    /// Pass as `after` for the next page; `null` on the last.
    pub next: Option<u64>,
    /// Matching dead letters in all.
    pub total: u64,
}

/// One consumer's dead copy of one event, as the dead-letter index lists it (and as the inboxes
/// push it to the index).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeadLetter {
    /// The event id (what `webhook-id` carried).
    pub id: String,
    /// The consumer that never got it.
    pub consumer: String,
    /// The subject's inbox (`session:…`, `user:…`), where the event and its payload live.
    pub subject: String,
    /// Didit's `webhook_type`.
    pub webhook_type: String,
    /// Why it was given up on (`retries_exhausted`, `aborted_by_origin`).
    pub reason: String,
    /// When the edge received it (Unix ms).
    pub received_at_ms: i64,
    /// When it became a dead letter (Unix ms).
    pub dead_at_ms: i64,
    /// Until when its payload is kept for replay (Unix ms), by the retention in force when it
    /// is listed (so inboxes do not send it); then its inbox takes it off the list.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replayable_until_ms: Option<i64>,
    /// Every attempt, oldest first.
    pub attempts: Vec<LoggedAttempt>,
}

/// One request or response at one origin, as a dead letter's attempt log shows it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LoggedAttempt {
    /// When (Unix ms).
    pub at_ms: i64,
    /// The origin, if one was tried.
    pub origin: Option<String>,
    /// Its HTTP status, if it answered.
    pub status: Option<u16>,
    /// What went wrong, as a stable code (`timeout`, `server_error`, `rejected`, `redirect`, …).
    pub error: Option<String>,
    /// Where a redirect pointed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub location: Option<String>,
    /// From sending the request to its end; absent from what older releases logged.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub latency_ms: Option<u64>,
}

impl LoggedAttempt {
    /// One request of an attempt's log, as kept and listed.
    pub fn of(entry: &crate::attempt::LogEntry) -> Self {
        Self {
            at_ms: entry.at_ms,
            origin: entry.origin.clone(),
            status: entry.status,
            error: entry.error.map(String::from),
            location: entry.location.clone(),
            latency_ms: entry.latency_ms,
        }
    }
}

/// One consumer's copy of one event: what a replay names.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeadLetterKey {
    /// The event id.
    pub id: String,
    /// The consumer.
    pub consumer: String,
}

/// `POST /admin/dead-letters/{id}/replay` (and an inbox's answer to a replay): the copies put
/// back in line.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Replayed {
    /// The copies, by event id and consumer.
    pub replayed: Vec<DeadLetterKey>,
}

impl Replayed {
    /// The answer to a replay of one event: a replay that put nothing back in line is
    /// [`Rejection::DeadLetterNotFound`] (404), whether the id was never a dead letter, was
    /// replayed already, or its retention ended; so the caller never takes an empty success for
    /// a replay.
    pub fn of_one_event(self) -> Result<Self, Rejection> {
        if self.replayed.is_empty() {
            Err(Rejection::DeadLetterNotFound)
        } else {
            Ok(self)
        }
    }
}

/// `POST /admin/dead-letters/replay[?consumer=…]`: how many dead letters one call put back in
/// line, and how many remain for the next call.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BulkReplay {
    /// Dead letters replayed by this call.
    pub replayed: u64,
    /// Matching dead letters still listed.
    pub remaining: u64,
}

/// What an erasure keeps, as the report says it.
pub const ERASURE_KEEPS: &str = "each event's id, Didit's event_id, type, status and times, for deduplication until DEDUP_TTL_SECS; a mark that keeps reconciliation from fetching the subject again";

/// `POST /admin/erasures`: what was erased about one subject, and what was kept.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErasureReport {
    /// The subject's kind (its id is identity data and is not repeated).
    pub subject_kind: String,
    /// What was removed, where.
    pub erased: Erased,
    /// What was kept ([`ERASURE_KEEPS`]).
    pub kept: String,
}

/// What one erasure removed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Erased {
    /// Events of the subject its inbox knew (each keeps only what deduplication needs).
    pub events: u64,
    /// Stored payloads and bodies removed.
    pub payloads: u64,
    /// Copies that were waiting for delivery and never will be.
    pub pending_deliveries: u64,
    /// Dead letters removed (and unlisted).
    pub dead_letters: u64,
    /// Statuses removed from the status stream.
    pub statuses: u64,
    /// Sessions reconciliation forgot.
    pub reconciliation_sessions: u64,
}

impl ErasureReport {
    /// The report of an erasure of a `kind` subject: what its inbox removed, how many stream
    /// statuses went, and how many sessions reconciliation forgot (`None` while reconciliation
    /// is off: it was not asked, and remembered nothing to forget, so 0).
    pub fn new(
        kind: SubjectKind,
        inbox: Erasure,
        statuses: usize,
        reconciliation_sessions: Option<usize>,
    ) -> Self {
        Self {
            subject_kind: kind.as_str().into(),
            erased: Erased {
                events: count(inbox.events),
                payloads: count(inbox.payloads),
                pending_deliveries: count(inbox.pending_deliveries),
                dead_letters: count(inbox.dead_letters),
                statuses: count(statuses),
                reconciliation_sessions: count(reconciliation_sessions.unwrap_or(0)),
            },
            kept: ERASURE_KEEPS.into(),
        }
    }
}

fn count(n: usize) -> u64 {
    u64::try_from(n).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    use super::super::round_trips;
    use super::*;
    use serde_json::{json, Value};

    fn origin(text: Value) -> Origin {
        serde_json::from_value(text).expect("origin")
    }

    #[test]
    fn an_origin_view_leaves_out_urls_and_shows_an_unreported_breaker_closed() {
        let plain = origin(json!({"name": "plain", "url": "https://user:pw@a.example/hook"}));
        let view = OriginView::of(&plain, None);
        assert_eq!(
            view.health,
            BreakerState::Closed {
                consecutive_failures: 0
            }
        );
        assert_eq!(view.consumer, "default");
        let text = serde_json::to_string(&view).expect("json");
        assert!(
            !text.contains("a.example") && !text.contains("pw"),
            "{text}"
        );

        let open = BreakerState::Open {
            until_ms: 5,
            cool_down_ms: 10,
        };
        let probed = origin(json!({"name": "b", "url": "https://b.example",
            "consumer": "failover", "priority": 1, "weight": 3, "region": "eu-west-1",
            "cloud": "aws", "health_url": "https://b.example/health", "timeout_ms": 2500}));
        let view = OriginView::of(&probed, Some(open));
        assert_eq!(view.health, open, "a reported breaker is shown as it is");
        assert!(view.probed);
        assert!(!serde_json::to_string(&view)
            .expect("json")
            .contains("health_url"));
    }

    #[test]
    fn the_origins_view_keeps_its_wire_shape() {
        let view: OriginsView = round_trips(&json!({"origins": [
            {"name": "backup", "consumer": "failover", "priority": 1, "weight": 1,
             "region": null, "cloud": "gcp", "probed": false, "timeout_ms": 10000,
             "health": {"state": "closed", "consecutive_failures": 2}},
            {"name": "primary", "consumer": "default", "priority": 0, "weight": 5,
             "region": "eu", "cloud": null, "probed": true, "timeout_ms": 3000,
             "health": {"state": "half_open", "consecutive_successes": 1,
                        "cool_down_ms": 2000, "probe_since_ms": null}},
            {"name": "down", "consumer": "default", "priority": 2, "weight": 1,
             "region": null, "cloud": null, "probed": false, "timeout_ms": 3000,
             "health": {"state": "open", "until_ms": 1_700_000_000_000_i64, "cool_down_ms": 4000}}
        ]}));
        assert_eq!(view.origins.len(), 3);
    }

    #[test]
    fn a_dead_letter_page_keeps_its_wire_shape() {
        let page: DeadLetterPage = round_trips(&json!({
            "dead_letters": [{
                "id": "evt_1", "consumer": "crm", "subject": "session:s-1",
                "webhook_type": "status.updated", "reason": "retries_exhausted",
                "received_at_ms": 1000, "dead_at_ms": 2000, "replayable_until_ms": 3000,
                "attempts": [
                    {"at_ms": 1500, "origin": "a", "status": 503, "error": "server_error"},
                    {"at_ms": 1600, "origin": "a", "status": 302, "error": "redirect",
                     "location": "https://elsewhere.example"},
                    {"at_ms": 1700, "origin": null, "status": null, "error": "no_origin"}
                ]
            }],
            "next": 17,
            "total": 40
        }));
        assert_eq!(page.next, Some(17));
        round_trips::<DeadLetterPage>(&json!({"dead_letters": [], "next": null, "total": 0}));
        // What an inbox pushes to the index has no `replayable_until_ms` (computed when listed).
        round_trips::<DeadLetter>(&json!({
            "id": "evt_1", "consumer": "crm", "subject": "user:u", "webhook_type": "t",
            "reason": "aborted_by_origin", "received_at_ms": 1, "dead_at_ms": 2, "attempts": []
        }));
    }

    #[test]
    fn a_replay_of_one_event_that_replays_nothing_is_not_found() {
        assert_eq!(
            Replayed::default().of_one_event(),
            Err(Rejection::DeadLetterNotFound)
        );
        assert_eq!(Rejection::DeadLetterNotFound.status(), 404);
        let one: Replayed = round_trips(&json!({"replayed": [{"id": "evt_1", "consumer": "crm"}]}));
        assert_eq!(one.clone().of_one_event(), Ok(one));
        round_trips::<BulkReplay>(&json!({"replayed": 3, "remaining": 0}));
    }

    #[test]
    fn an_erasure_report_counts_what_went_and_says_what_stayed() {
        let inbox = Erasure {
            events: 2,
            payloads: 1,
            pending_deliveries: 3,
            dead_letters: 4,
        };
        let off = ErasureReport::new(SubjectKind::User, inbox, 5, None);
        assert_eq!(
            serde_json::to_value(&off).expect("json"),
            json!({
                "subject_kind": "user",
                "erased": {"events": 2, "payloads": 1, "pending_deliveries": 3,
                           "dead_letters": 4, "statuses": 5, "reconciliation_sessions": 0},
                "kept": "each event's id, Didit's event_id, type, status and times, for deduplication until DEDUP_TTL_SECS; a mark that keeps reconciliation from fetching the subject again"
            })
        );
        let on = ErasureReport::new(SubjectKind::Session, Erasure::default(), 0, Some(1));
        assert_eq!(
            (on.subject_kind.as_str(), on.erased.reconciliation_sessions),
            ("session", 1)
        );
        round_trips::<ErasureReport>(&serde_json::to_value(&off).expect("json"));
    }
}
