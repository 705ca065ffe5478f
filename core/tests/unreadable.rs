//! A stored row the adapter cannot read is left alone by the inbox: its copy is never sent,
//! replayed, rewritten or forgotten, its consumer gets nothing more of the subject, and its
//! event is still a duplicate to any resend (`Inbox::with_unreadable`).

use didit_edge_core::attempt::{DeadReason, Verdict};
use didit_edge_core::delivery::{CopyState, Retention};
use didit_edge_core::inbox::{
    AfterDeadLetter, BadValue, Change, Claim, ClaimContent, Classification, CopyRecord,
    EventRecord, IdVersion, Inbox, InboxPolicy, Outcome, ReplayFilter, RowKey, Seq, Source,
    UnknownValue, Unreadable, Work,
};
use didit_edge_core::receipt::Receipt;
use didit_edge_core::retry::RetrySchedule;
use didit_edge_core::risk::Level;
use didit_edge_core::time::{UnixMs, UnixSecs};
#[cfg(target_arch = "wasm32")]
use wasm_bindgen_test::wasm_bindgen_test as test;

const LATER: i64 = 1_000_000_000;

fn policy(schedule: &RetrySchedule, after_dead_letter: AfterDeadLetter) -> InboxPolicy<'_> {
    InboxPolicy {
        retry_schedule: schedule,
        retention: Retention {
            payload_secs: 0,
            dead_letter_secs: 100,
            dedup_ttl_secs: 1_000,
            freshness_secs: 10,
        },
        after_dead_letter,
    }
}

fn record(seq: i64, id: &str, created_at: i64, risk_level: Option<Level>) -> EventRecord {
    EventRecord {
        seq: Seq(seq),
        id: id.into(),
        id_version: IdVersion::ContentDigest,
        alias: Some(format!("alias-{id}")),
        webhook_type: "status.updated".into(),
        status: Some("Approved".into()),
        created_at: UnixSecs(created_at),
        received_at: UnixMs(created_at * 1_000),
        risk_level,
        has_payload: true,
    }
}

fn copy(state: CopyState) -> CopyRecord {
    CopyRecord {
        state,
        ..CopyRecord::new(UnixMs(0))
    }
}

fn resend(id: &str, alias: &str) -> Claim {
    Claim {
        id: id.into(),
        legacy_id: format!("legacy-{id}"),
        subject: "session:s1".into(),
        alias: Some(alias.into()),
        webhook_type: "status.updated".into(),
        status: Some("Approved".into()),
        created_at: UnixSecs(100),
        content: ClaimContent::Classified(Classification {
            risk_level: Level::Low,
            consumers: vec!["crm".into(), "ops".into()],
            payload: "{}".into(),
        }),
        source: Source::Webhook,
        verified: None,
    }
}

fn held_copy() -> Unreadable {
    Unreadable {
        row: RowKey::Copy {
            seq: Seq(1),
            consumer: "crm".into(),
        },
        value: BadValue::new("state", UnknownValue::CopyState, Some("deadd")),
    }
}

/// Sends everything the inbox hands out (each delivered at once), up to `now`.
fn deliver_all(inbox: &mut Inbox, policy: &InboxPolicy<'_>, now: i64) -> Vec<(Seq, String)> {
    let mut sent = Vec::new();
    while let Some(Work::Deliver(delivery)) = inbox.poll_work(policy, UnixMs(now)) {
        let outcome = Outcome {
            verdict: Verdict::Delivered { origin: "o".into() },
            log: vec![],
            rejected_by: vec![],
        };
        inbox.handle_attempt(&delivery, outcome, policy, UnixMs(now), 0);
        sent.push((delivery.seq, delivery.consumer));
        assert!(sent.len() < 100, "the inbox keeps handing out work");
    }
    sent
}

/// Whether a change writes or deletes any row of (`seq`, `consumer`), or the event `seq`.
fn touches(change: &Change, seq: Seq, consumer: Option<&str>) -> bool {
    match change {
        Change::PutCopy {
            seq: s,
            consumer: c,
            ..
        }
        | Change::SetRejections {
            seq: s,
            consumer: c,
            ..
        } => *s == seq && consumer.is_none_or(|consumer| consumer == c),
        Change::Classify { seq: s, copies, .. } => {
            *s == seq
                && (consumer.is_none() || copies.iter().any(|(c, _)| Some(c.as_str()) == consumer))
        }
        Change::DropPayload(s) => *s == seq && consumer.is_none(),
        Change::ForgetEvent(s) => *s == seq,
        _ => false,
    }
}

#[test]
fn an_unreadable_copy_is_never_sent_rewritten_or_forgotten_and_its_event_stays_a_duplicate() {
    for after_dead_letter in [AfterDeadLetter::Hold, AfterDeadLetter::Continue] {
        let schedule = RetrySchedule::parse("1x2").expect("valid");
        let policy = policy(&schedule, after_dead_letter);
        let dead = CopyState::Dead {
            at: UnixMs(150_000),
            reason: DeadReason::RetriesExhausted,
        };
        // The crm copy of evt_a was a dead letter; its row now says something unknown.
        let mut inbox = Inbox::restore(
            Some("session:s1".into()),
            [
                record(1, "evt_a", 100, Some(Level::Low)),
                record(2, "evt_b", 200, Some(Level::Low)),
            ],
            [
                (Seq(1), "crm".into(), copy(dead)),
                (Seq(1), "ops".into(), copy(CopyState::new(UnixMs(0)))),
                (Seq(2), "crm".into(), copy(CopyState::new(UnixMs(0)))),
                (Seq(2), "ops".into(), copy(CopyState::new(UnixMs(0)))),
            ],
        )
        .with_unreadable([held_copy()]);
        assert_eq!(inbox.unreadable(), [held_copy()]);

        // Nothing of crm is sent, not even the later event; ops goes on.
        let sent = deliver_all(&mut inbox, &policy, 300_000);
        assert_eq!(sent, [(Seq(1), "ops".into()), (Seq(2), "ops".into())]);

        // A resend, by id or by Didit's event_id, is still a duplicate.
        for claim in [resend("evt_a", "other"), resend("evt_x", "alias-evt_a")] {
            assert_eq!(
                inbox.handle_claim(claim, UnixMs(310_000)),
                Receipt::Duplicate { id: "evt_a".into() }
            );
        }
        // Not replayable, not listed, and long past every retention nothing of it goes.
        assert_eq!(
            inbox.handle_replay(ReplayFilter::default(), UnixMs(320_000)),
            []
        );
        assert!(inbox.poll_index().iter().all(|change| change.seq != Seq(1)));
        inbox.handle_timeout(&policy, UnixMs(LATER));
        assert_eq!(deliver_all(&mut inbox, &policy, LATER), []);
        let erasure = inbox.handle_erase(UnixMs(LATER));
        assert_eq!(
            erasure.dead_letters, 0,
            "the unreadable copy is not counted"
        );
        inbox.handle_timeout(&policy, UnixMs(LATER * 2));
        let changes: Vec<Change> = inbox.drain_changes().collect();
        assert!(
            !changes
                .iter()
                .any(|change| touches(change, Seq(1), Some("crm"))),
            "{changes:?}"
        );
        assert!(
            changes
                .iter()
                .all(|c| !matches!(c, Change::ForgetEvent(Seq(1)))),
            "its event is never forgotten"
        );
        assert!(
            inbox.poll_timeout(&policy, UnixMs(LATER * 2)) != Some(UnixMs(LATER * 2)),
            "nothing spins on it"
        );
    }
}

#[test]
fn an_unreadable_event_row_holds_the_event_and_what_comes_after_it() {
    let schedule = RetrySchedule::parse("1x2").expect("valid");
    let policy = policy(&schedule, AfterDeadLetter::Continue);
    let event_row = Unreadable {
        row: RowKey::Event(Seq(2)),
        value: BadValue::new("risk_level", UnknownValue::RiskLevel, Some("severe")),
    };
    // Read without its risk level (so as if unclassified), but held.
    let mut inbox = Inbox::restore(
        Some("session:s1".into()),
        [
            record(1, "evt_a", 100, Some(Level::Low)),
            record(2, "evt_b", 200, None),
            record(3, "evt_c", 300, Some(Level::Low)),
        ],
        [
            (Seq(1), "crm".into(), copy(CopyState::new(UnixMs(0)))),
            (Seq(1), "ops".into(), copy(CopyState::new(UnixMs(0)))),
            (Seq(2), "ops".into(), copy(CopyState::new(UnixMs(0)))),
            (Seq(3), "crm".into(), copy(CopyState::new(UnixMs(0)))),
        ],
    )
    .with_unreadable([event_row]);
    assert_eq!(inbox.unclassified().count(), 0, "never classified");
    // Its consumer (ops) gets nothing; what comes after it waits, as it would behind an
    // event waiting to be classified.
    assert_eq!(
        deliver_all(&mut inbox, &policy, 400_000),
        [(Seq(1), "crm".into())]
    );
    assert_eq!(
        inbox.handle_claim(resend("evt_b", "other"), UnixMs(400_000)),
        Receipt::Duplicate { id: "evt_b".into() }
    );
    inbox.handle_classified(
        Seq(2),
        Classification {
            risk_level: Level::High,
            consumers: vec!["ops".into()],
            payload: "{}".into(),
        },
        UnixMs(400_000),
    );
    inbox.handle_erase(UnixMs(LATER));
    inbox.handle_timeout(&policy, UnixMs(LATER * 2));
    let changes: Vec<Change> = inbox.drain_changes().collect();
    assert!(
        !changes.iter().any(|change| touches(change, Seq(2), None)),
        "{changes:?}"
    );
}

#[test]
fn classifying_an_event_never_writes_over_its_unreadable_copy() {
    let schedule = RetrySchedule::parse("1x2").expect("valid");
    let policy = policy(&schedule, AfterDeadLetter::Hold);
    let mut inbox = Inbox::restore(
        Some("session:s1".into()),
        [record(1, "evt_a", 100, None)],
        [],
    )
    .with_unreadable([held_copy()]);
    assert_eq!(
        inbox.poll_work(&policy, UnixMs(0)),
        Some(Work::Classify(Seq(1)))
    );
    inbox.handle_classified(
        Seq(1),
        Classification {
            risk_level: Level::Low,
            consumers: vec!["crm".into(), "ops".into()],
            payload: "{}".into(),
        },
        UnixMs(0),
    );
    let changes: Vec<Change> = inbox.drain_changes().collect();
    assert!(
        matches!(&changes[..], [Change::Classify { copies, .. }] if copies.len() == 1 && copies[0].0 == "ops")
    );
    assert_eq!(
        deliver_all(&mut inbox, &policy, 1_000),
        [(Seq(1), "ops".into())]
    );
}
