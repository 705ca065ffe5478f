use super::*;
use crate::attempt::{DeadReason, LogEntry};
use crate::retry::RetrySchedule;
use crate::risk::Level;
use crate::time::UnixSecs;
use crate::verify::Verified;
use alloc::format;
use alloc::string::ToString;
use alloc::vec;
#[cfg(target_arch = "wasm32")]
use wasm_bindgen_test::wasm_bindgen_test as test;

fn schedule() -> RetrySchedule {
    RetrySchedule::parse("1x2")
        .expect("valid")
        .with_jitter_percent(0)
}

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

fn claim(id: &str, created_at: i64, consumers: &[&str]) -> Claim {
    Claim {
        id: id.into(),
        legacy_id: format!("legacy-{id}"),
        subject: "session:s1".into(),
        alias: Some(format!("alias-{id}")),
        webhook_type: "status.updated".into(),
        status: Some("Approved".into()),
        created_at: UnixSecs(created_at),
        content: ClaimContent::Classified(Classification {
            risk_level: Level::Low,
            consumers: consumers.iter().map(|c| c.to_string()).collect(),
            payload: format!("{{\"id\":\"{id}\"}}"),
        }),
        source: Source::Webhook,
        verified: None,
    }
}

fn delivered(origin: &str) -> Outcome {
    Outcome {
        verdict: Verdict::Delivered {
            origin: origin.into(),
        },
        log: vec![],
        rejected_by: vec![],
    }
}

fn failed() -> Outcome {
    Outcome {
        verdict: Verdict::Failed,
        log: vec![],
        rejected_by: vec![],
    }
}

fn next_delivery(inbox: &Inbox, policy: &InboxPolicy<'_>, now: i64) -> Option<(String, String)> {
    match inbox.poll_work(policy, UnixMs(now)) {
        Some(Work::Deliver(delivery)) => Some((delivery.id, delivery.consumer)),
        Some(Work::Classify(seq)) => panic!("classify {seq:?}"),
        None => None,
    }
}

fn deliver(inbox: &mut Inbox, policy: &InboxPolicy<'_>, now: i64, outcome: Outcome) -> DueCopy {
    let Some(Work::Deliver(delivery)) = inbox.poll_work(policy, UnixMs(now)) else {
        panic!("nothing to deliver at {now}");
    };
    inbox.handle_attempt(&delivery, outcome, policy, UnixMs(now), 0);
    delivery
}

#[test]
fn a_claim_is_accepted_once_and_a_duplicate_after() {
    let mut inbox = Inbox::new();
    let first = inbox.handle_claim(claim("evt_a", 100, &["default"]), UnixMs(1_000));
    assert_eq!(first, Receipt::Accepted { id: "evt_a".into() });
    let changes: Vec<Change> = inbox.drain_changes().collect();
    assert!(matches!(changes[0], Change::Subject(ref s) if s == "session:s1"));
    assert!(matches!(changes[1], Change::InsertEvent { ref copies, .. } if copies.len() == 1));
    assert_eq!(
        inbox.handle_claim(claim("evt_a", 100, &["default"]), UnixMs(2_000)),
        Receipt::Duplicate { id: "evt_a".into() }
    );
    assert_eq!(
        inbox.drain_changes().count(),
        0,
        "a duplicate changes nothing"
    );
}

#[test]
fn an_alias_matches_only_the_same_type_and_status() {
    let mut inbox = Inbox::new();
    inbox.handle_claim(claim("evt_a", 100, &["default"]), UnixMs(0));
    let mut resend = claim("evt_b", 160, &["default"]);
    resend.alias = Some("alias-evt_a".into());
    assert_eq!(
        inbox.handle_claim(resend.clone(), UnixMs(0)),
        Receipt::Duplicate { id: "evt_a".into() }
    );
    // Another status is other content, so another id (the id covers the status).
    resend.id = "evt_c".into();
    resend.status = Some("Declined".into());
    assert_eq!(
        inbox.handle_claim(resend, UnixMs(0)),
        Receipt::Accepted { id: "evt_c".into() },
        "Didit's event_id reused for another transition is not a duplicate"
    );
}

#[test]
fn an_event_stored_by_an_older_release_is_found_by_its_legacy_id() {
    let legacy = EventRecord {
        seq: Seq(4),
        id: "legacy-evt_a".into(),
        id_version: IdVersion::Legacy,
        alias: None,
        webhook_type: "status.updated".into(),
        status: None,
        created_at: UnixSecs(100),
        received_at: UnixMs(0),
        risk_level: Some(Level::Low),
        has_payload: false,
    };
    let mut inbox = Inbox::restore(Some("session:s1".into()), [legacy], []);
    assert_eq!(
        inbox.handle_claim(claim("evt_a", 100, &["default"]), UnixMs(0)),
        Receipt::Duplicate {
            id: "legacy-evt_a".into()
        }
    );
    // A new event's own id never matches as a legacy one.
    inbox.handle_claim(claim("evt_b", 101, &[]), UnixMs(0));
    let mut other = claim("evt_c", 102, &[]);
    other.legacy_id = "evt_b".into();
    assert_eq!(
        inbox.handle_claim(other, UnixMs(0)),
        Receipt::Accepted { id: "evt_c".into() }
    );
    assert_eq!(inbox.events().last().map(|(r, _)| r.seq), Some(Seq(6)));
}

#[test]
fn each_consumer_gets_events_in_creation_order_whatever_the_arrival() {
    let schedule = schedule();
    let policy = policy(&schedule, AfterDeadLetter::Hold);
    let mut inbox = Inbox::new();
    inbox.handle_claim(claim("newer", 200, &["a", "b"]), UnixMs(0));
    inbox.handle_claim(claim("older", 100, &["a"]), UnixMs(0));
    let mut sent: BTreeMap<String, Vec<String>> = BTreeMap::new();
    while let Some((id, consumer)) = next_delivery(&inbox, &policy, 0) {
        deliver(&mut inbox, &policy, 0, delivered("o"));
        sent.entry(consumer).or_default().push(id);
    }
    assert_eq!(sent["a"], ["older", "newer"]);
    // Consumer b never had the older event: it was never held back.
    assert_eq!(sent["b"], ["newer"]);
}

#[test]
fn a_dead_letter_holds_its_consumer_until_replayed_or_expired() {
    let schedule = schedule();
    for after_dead_letter in [AfterDeadLetter::Hold, AfterDeadLetter::Continue] {
        let policy = policy(&schedule, after_dead_letter);
        let mut inbox = Inbox::new();
        inbox.handle_claim(claim("first", 100, &["a"]), UnixMs(0));
        inbox.handle_claim(claim("second", 200, &["a"]), UnixMs(0));
        for now in [0, 1_000, 2_000] {
            assert_eq!(
                next_delivery(&inbox, &policy, now).map(|d| d.0),
                Some("first".into())
            );
            deliver(&mut inbox, &policy, now, failed());
        }
        let next = next_delivery(&inbox, &policy, 2_000).map(|d| d.0);
        match after_dead_letter {
            AfterDeadLetter::Hold => assert_eq!(next, None, "held"),
            AfterDeadLetter::Continue => assert_eq!(next, Some("second".into())),
        }
        let replayed = inbox.handle_replay(
            ReplayFilter {
                id: Some("alias-first"),
                consumer: None,
            },
            UnixMs(3_000),
        );
        assert_eq!(
            replayed,
            [CopyKey {
                id: "first".into(),
                consumer: "a".into()
            }]
        );
        assert_eq!(
            next_delivery(&inbox, &policy, 3_000).map(|d| d.0),
            Some("first".into())
        );
    }
}

#[test]
fn a_dead_letter_is_indexed_and_unindexed_through_an_outbox() {
    let schedule = schedule();
    let policy = policy(&schedule, AfterDeadLetter::Hold);
    let mut inbox = Inbox::new();
    inbox.handle_claim(claim("e", 100, &["a"]), UnixMs(0));
    for now in [0, 1_000, 2_000] {
        deliver(&mut inbox, &policy, now, failed());
    }
    let pending = inbox.poll_index();
    assert!(matches!(
        pending.as_slice(),
        [IndexChange {
            change: IndexEntry::Put {
                reason: DeadReason::RetriesExhausted,
                dead_at: UnixMs(2_000),
                ..
            },
            ..
        }]
    ));
    assert_eq!(
        inbox.poll_timeout(&policy, UnixMs(2_000)),
        Some(UnixMs(2_000))
    );
    inbox.handle_index_failed(UnixMs(2_000));
    assert_eq!(
        inbox.poll_timeout(&policy, UnixMs(2_000)),
        Some(UnixMs(32_000))
    );
    inbox.handle_index_synced(&pending);
    assert!(inbox.poll_index().is_empty());
    // Its retention (100 s) ends: it expires and leaves the index; then, told, it is forgotten.
    inbox.handle_timeout(&policy, UnixMs(102_000));
    assert!(matches!(
        inbox.poll_index().as_slice(),
        [IndexChange {
            change: IndexEntry::Remove,
            ..
        }]
    ));
    inbox.handle_timeout(&policy, UnixMs(2_000_000));
    assert_eq!(
        inbox.events().count(),
        1,
        "kept until the index heard of it"
    );
    let removal = inbox.poll_index();
    inbox.handle_index_synced(&removal);
    inbox.handle_timeout(&policy, UnixMs(2_000_000));
    assert_eq!(inbox.events().count(), 0);
}

#[test]
fn nothing_expires_while_pending_and_retention_follows_the_settings_in_force() {
    let schedule = schedule();
    let short = policy(&schedule, AfterDeadLetter::Hold);
    let mut inbox = Inbox::new();
    inbox.handle_claim(claim("e", 0, &["a", "b"]), UnixMs(0));
    deliver(&mut inbox, &short, 0, delivered("o"));
    inbox.handle_timeout(&short, UnixMs(10_000_000));
    let (record, _) = inbox.events().next().expect("kept");
    assert!(record.has_payload, "b still needs it");
    deliver(&mut inbox, &short, 10_000_000, delivered("o"));
    // A retention raised after delivery keeps the payload longer, though it was delivered
    // under the old one.
    let long = InboxPolicy {
        retention: Retention {
            payload_secs: 60,
            ..short.retention
        },
        ..short
    };
    inbox.handle_timeout(&long, UnixMs(10_000_001));
    assert!(inbox.events().next().expect("kept").0.has_payload);
    assert_eq!(
        inbox.poll_timeout(&long, UnixMs(10_000_001)),
        Some(UnixMs(10_060_000))
    );
    inbox.handle_timeout(&long, UnixMs(10_060_000));
    let changes: Vec<Change> = inbox.drain_changes().collect();
    assert!(changes.contains(&Change::DropPayload(Seq(1))));
}

#[test]
fn an_unclassified_event_holds_everything_after_it_until_classified() {
    let schedule = schedule();
    let policy = policy(&schedule, AfterDeadLetter::Continue);
    let mut inbox = Inbox::new();
    let mut waiting = claim("waiting", 100, &[]);
    waiting.content = ClaimContent::Unclassified {
        body: "{}".into(),
        verified: Verified {
            header: crate::verify::SignatureHeader::Raw,
            form: crate::verify::SignedMessage::RawBody,
            secret_index: 0,
        },
        test: false,
    };
    inbox.handle_claim(waiting, UnixMs(0));
    inbox.handle_claim(claim("later", 200, &["a"]), UnixMs(0));
    assert_eq!(
        inbox.poll_work(&policy, UnixMs(0)),
        Some(Work::Classify(Seq(1)))
    );
    inbox.handle_classified(
        Seq(1),
        Classification {
            risk_level: Level::High,
            consumers: vec!["a".into()],
            payload: "{}".into(),
        },
        UnixMs(5),
    );
    assert_eq!(
        next_delivery(&inbox, &policy, 5),
        Some(("waiting".into(), "a".into()))
    );
}

#[test]
fn a_stale_outcome_changes_nothing() {
    let schedule = schedule();
    let policy = policy(&schedule, AfterDeadLetter::Hold);
    let mut inbox = Inbox::new();
    inbox.handle_claim(claim("e", 0, &["a"]), UnixMs(0));
    let delivery = deliver(&mut inbox, &policy, 0, delivered("o"));
    inbox.drain_changes().for_each(drop);
    inbox.handle_attempt(&delivery, failed(), &policy, UnixMs(1), 0);
    assert_eq!(inbox.drain_changes().count(), 0);
}

fn transitions(inbox: &mut Inbox) -> Vec<Transition> {
    inbox.drain_transitions().collect()
}

#[test]
fn every_step_of_an_event_is_a_transition_for_the_log() {
    let schedule = schedule();
    let policy = policy(&schedule, AfterDeadLetter::Hold);
    let mut inbox = Inbox::new();
    inbox.handle_claim(claim("e", 100, &["a"]), UnixMs(0));
    inbox.handle_claim(claim("e", 100, &["a"]), UnixMs(0));
    assert_eq!(
        transitions(&mut inbox),
        [
            Transition::Accepted {
                event_id: "e".into(),
                webhook_type: "status.updated".into(),
                classified: true,
            },
            Transition::Duplicate {
                event_id: "e".into()
            },
        ]
    );
    let timed_out = Outcome {
        verdict: Verdict::Failed,
        log: vec![LogEntry {
            at_ms: 40,
            origin: Some("aws".into()),
            status: None,
            error: Some("timeout"),
            location: None,
            latency_ms: Some(30),
        }],
        rejected_by: vec![],
    };
    deliver(&mut inbox, &policy, 10, timed_out);
    assert_eq!(
        transitions(&mut inbox),
        [
            Transition::Attempt {
                event_id: "e".into(),
                consumer: "a".into(),
                origin: Some("aws".into()),
                status: None,
                error: Some("timeout"),
                latency_ms: Some(30),
            },
            Transition::RetryScheduled {
                event_id: "e".into(),
                consumer: "a".into(),
                failures: 1,
                next_attempt_at_ms: 1_010,
            },
        ]
    );
    deliver(
        &mut inbox,
        &policy,
        1_010,
        Outcome {
            verdict: Verdict::Deferred { until_ms: 5_000 },
            log: vec![],
            rejected_by: vec![],
        },
    );
    deliver(&mut inbox, &policy, 5_000, failed());
    deliver(&mut inbox, &policy, 6_000, failed());
    let dead = transitions(&mut inbox);
    assert_eq!(
        dead.first(),
        Some(&Transition::Deferred {
            event_id: "e".into(),
            consumer: "a".into(),
            until_ms: 5_000,
        }),
        "waiting for a breaker is no failure"
    );
    assert_eq!(
        dead.last(),
        Some(&Transition::DeadLetter {
            event_id: "e".into(),
            consumer: "a".into(),
            reason: DeadReason::RetriesExhausted,
            failures: 3,
        })
    );
    inbox.handle_replay(ReplayFilter::default(), UnixMs(7_000));
    // Failed over within the attempt: the failed request is an `attempt` line, the one that
    // delivered is told by the `delivered` line alone.
    let failed_over = Outcome {
        log: vec![
            LogEntry {
                at_ms: 7_020,
                origin: Some("aws".into()),
                status: Some(503),
                error: Some("server_error"),
                location: None,
                latency_ms: Some(20),
            },
            LogEntry {
                at_ms: 7_032,
                origin: Some("gcp".into()),
                status: Some(204),
                error: None,
                location: None,
                latency_ms: Some(12),
            },
        ],
        ..delivered("gcp")
    };
    deliver(&mut inbox, &policy, 7_000, failed_over);
    assert_eq!(
        transitions(&mut inbox),
        [
            Transition::Replayed {
                event_id: "e".into(),
                consumer: "a".into(),
            },
            Transition::Attempt {
                event_id: "e".into(),
                consumer: "a".into(),
                origin: Some("aws".into()),
                status: Some(503),
                error: Some("server_error"),
                latency_ms: Some(20),
            },
            Transition::Delivered {
                event_id: "e".into(),
                consumer: "a".into(),
                origin: "gcp".into(),
                failures: 0,
                status: Some(204),
                latency_ms: Some(12),
            },
        ]
    );
}

#[test]
fn a_dead_letter_whose_retention_ends_is_a_transition() {
    let schedule = schedule();
    let policy = policy(&schedule, AfterDeadLetter::Hold);
    let mut inbox = Inbox::new();
    inbox.handle_claim(claim("e", 100, &["a"]), UnixMs(0));
    for now in [0, 1_000, 2_000] {
        deliver(&mut inbox, &policy, now, failed());
    }
    let listed = inbox.poll_index();
    inbox.handle_index_synced(&listed);
    transitions(&mut inbox);
    inbox.handle_timeout(&policy, UnixMs(102_000));
    assert_eq!(
        transitions(&mut inbox),
        [Transition::DeadLetterExpired {
            event_id: "e".into(),
            consumer: "a".into(),
        }]
    );
}

#[test]
fn a_log_line_names_the_subject_kind_never_its_id() {
    let transition = Transition::Duplicate {
        event_id: "evt_1".into(),
    };
    let line = LogRecord {
        transition: &transition,
        subject_kind: subject_kind(Some("user:alice@example.com")),
    }
    .to_line();
    assert_eq!(
        line,
        r#"{"event":"duplicate","event_id":"evt_1","subject_kind":"user"}"#
    );
    assert_eq!(
        subject_kind(Some("business_session:b1")),
        "business_session"
    );
    assert_eq!(subject_kind(Some("alice:session")), "unknown");
    assert_eq!(subject_kind(Some("session")), "unknown");
    assert_eq!(subject_kind(None), "unknown");
}

#[test]
fn an_erasure_keeps_only_what_deduplication_needs() {
    let schedule = schedule();
    let policy = policy(&schedule, AfterDeadLetter::Hold);
    let mut inbox = Inbox::new();
    // One delivered, one dead (and listed), one pending, one waiting to be classified.
    inbox.handle_claim(claim("delivered", 100, &["a"]), UnixMs(0));
    deliver(&mut inbox, &policy, 0, delivered("o"));
    inbox.handle_claim(claim("dead", 101, &["a"]), UnixMs(0));
    for now in [0, 1_000, 2_000] {
        deliver(&mut inbox, &policy, now, failed());
    }
    let listed = inbox.poll_index();
    inbox.handle_index_synced(&listed);
    inbox.handle_claim(claim("pending", 102, &["b"]), UnixMs(0));
    let mut unclassified = claim("unclassified", 103, &[]);
    unclassified.content = ClaimContent::Unclassified {
        body: "{\"vendor_data\":\"person\"}".into(),
        verified: Verified {
            header: crate::verify::SignatureHeader::Raw,
            form: crate::verify::SignedMessage::RawBody,
            secret_index: 0,
        },
        test: false,
    };
    inbox.handle_claim(unclassified, UnixMs(0));
    inbox.drain_changes().for_each(drop);
    transitions(&mut inbox);

    let erasure = inbox.handle_erase(UnixMs(3_000));
    assert_eq!(
        erasure,
        Erasure {
            events: 4,
            // The delivered event's payload too: retention has not run since.
            payloads: 4,
            pending_deliveries: 1,
            dead_letters: 1,
        }
    );
    let changes: Vec<Change> = inbox.drain_changes().collect();
    assert!(changes.contains(&Change::ForgetSubject));
    assert_eq!(inbox.subject(), None);
    assert!(
        changes.iter().any(|c| matches!(
            c,
            Change::Classify {
                payload: None,
                ref copies,
                ..
            } if copies.is_empty()
        )),
        "the unclassified body goes and it is never classified"
    );
    // Nothing is left to send, classify or replay; the dead letter leaves the listing.
    assert_eq!(inbox.poll_work(&policy, UnixMs(10_000_000)), None);
    assert!(inbox
        .events()
        .all(|(record, _)| !record.has_payload && record.risk_level.is_some()));
    assert!(matches!(
        inbox.poll_index().as_slice(),
        [IndexChange {
            change: IndexEntry::Remove,
            ..
        }]
    ));
    assert!(inbox
        .handle_replay(ReplayFilter::default(), UnixMs(4_000))
        .is_empty());
    assert_eq!(transitions(&mut inbox).len(), 4, "one `erased` per event");
    // A retry or resend of an erased event is still a duplicate.
    assert_eq!(
        inbox.handle_claim(claim("pending", 102, &["b"]), UnixMs(5_000)),
        Receipt::Duplicate {
            id: "pending".into()
        }
    );
    assert_eq!(inbox.subject(), None, "a duplicate does not name it again");
    inbox.handle_claim(claim("later", 104, &["b"]), UnixMs(5_000));
    assert_eq!(inbox.subject(), Some("session:s1"), "a new event does");
}

/// A claim of a `status.updated` with `status`, from `source`, Didit-created at `created_at`.
fn transition(id: &str, status: &str, created_at: i64, source: Source) -> Claim {
    Claim {
        status: Some(status.into()),
        alias: (source == Source::Webhook).then(|| format!("alias-{id}")),
        source,
        ..claim(id, created_at, &["main"])
    }
}

fn receipt_of(inbox: &mut Inbox, claim: Claim) -> Receipt {
    let receipt = inbox.handle_claim(claim, UnixMs(0));
    inbox.drain_changes().for_each(drop);
    receipt
}

#[test]
fn a_webhook_and_the_apis_view_of_one_transition_are_one_event_whichever_comes_first() {
    let mut inbox = Inbox::new();
    assert_eq!(
        receipt_of(
            &mut inbox,
            transition("w1", "Approved", 100, Source::Webhook)
        ),
        Receipt::Accepted { id: "w1".into() }
    );
    assert_eq!(
        inbox.knows_transition("status.updated", "Approved", UnixSecs(900)),
        Knowledge::Held
    );
    assert_eq!(
        inbox.knows_transition("status.updated", "APPROVED", UnixSecs(900)),
        Knowledge::Held
    );
    assert_eq!(
        inbox.knows_transition("status.updated", "Declined", UnixSecs(900)),
        Knowledge::Missing
    );
    assert_eq!(
        inbox.knows_transition("data.updated", "Approved", UnixSecs(900)),
        Knowledge::Missing
    );
    assert_eq!(
        receipt_of(&mut inbox, transition("a1", "Approved", 900, Source::Api)),
        Receipt::Duplicate { id: "w1".into() }
    );

    let mut inbox = Inbox::new();
    assert_eq!(
        receipt_of(&mut inbox, transition("a1", "Approved", 900, Source::Api)),
        Receipt::Accepted { id: "a1".into() }
    );
    assert_eq!(
        inbox.events.values().next().map(|e| e.record.id_version),
        Some(IdVersion::Reconciled)
    );
    // Didit's webhook of that transition, late (created before the API was read) or not.
    for (id, created_at) in [("w-late", 100), ("w-after", 950)] {
        assert_eq!(
            receipt_of(
                &mut inbox,
                transition(id, "Approved", created_at, Source::Webhook)
            ),
            Receipt::Duplicate { id: "a1".into() }
        );
    }
    // Another status is another transition, even one Didit created earlier.
    assert_eq!(
        receipt_of(
            &mut inbox,
            transition("w-review", "In Review", 50, Source::Webhook)
        ),
        Receipt::Accepted {
            id: "w-review".into()
        }
    );
}

#[test]
fn a_status_reached_again_after_another_is_a_new_transition() {
    let mut inbox = Inbox::new();
    receipt_of(
        &mut inbox,
        transition("w1", "Approved", 100, Source::Webhook),
    );
    receipt_of(
        &mut inbox,
        transition("w2", "Resubmitted", 200, Source::Webhook),
    );
    // The API now says Approved: that is the Approved after the resubmission.
    assert_eq!(
        inbox.knows_transition("status.updated", "Approved", UnixSecs(900)),
        Knowledge::Missing
    );
    assert_eq!(
        receipt_of(&mut inbox, transition("a1", "Approved", 900, Source::Api)),
        Receipt::Accepted { id: "a1".into() }
    );
    assert_eq!(
        inbox.knows_transition("status.updated", "Approved", UnixSecs(950)),
        Knowledge::Held
    );
    // Its webhook, late, is the same event; the first Approved's webhook, resent, too.
    assert_eq!(
        receipt_of(
            &mut inbox,
            transition("w3", "Approved", 300, Source::Webhook)
        ),
        Receipt::Duplicate { id: "a1".into() }
    );
    assert_eq!(
        receipt_of(
            &mut inbox,
            transition("w1", "Approved", 100, Source::Webhook)
        ),
        Receipt::Duplicate { id: "w1".into() }
    );
    // Resubmitted again, then Approved again: new transitions, from either side.
    receipt_of(
        &mut inbox,
        transition("w4", "Resubmitted", 1000, Source::Webhook),
    );
    assert_eq!(
        receipt_of(
            &mut inbox,
            transition("w5", "Approved", 1100, Source::Webhook)
        ),
        Receipt::Accepted { id: "w5".into() }
    );
}

#[test]
fn webhooks_alone_are_never_matched_by_status() {
    // Two webhooks of one status are two events (FLAGGED, ACTIVE, FLAGGED, or a data change):
    // only their ids and Didit's event_id make them duplicates.
    let mut inbox = Inbox::new();
    for (id, at) in [("w1", 100), ("w2", 200)] {
        assert_eq!(
            receipt_of(&mut inbox, transition(id, "Approved", at, Source::Webhook)),
            Receipt::Accepted { id: id.into() }
        );
    }
}

#[test]
fn a_resend_of_a_transition_first_learned_from_the_api_stays_a_duplicate_after_later_ones() {
    let mut inbox = Inbox::new();
    receipt_of(&mut inbox, transition("a1", "Approved", 900, Source::Api));
    // Didit's late webhook of it: a duplicate, and its event_id now names the API's event.
    let late = transition("w-late", "Approved", 100, Source::Webhook);
    let mut changes = Vec::new();
    assert_eq!(
        inbox.handle_claim(late.clone(), UnixMs(0)),
        Receipt::Duplicate { id: "a1".into() }
    );
    changes.extend(inbox.drain_changes());
    // Its own id too: matched by transition, not by content, so a retry of it must not
    // depend on the transitions still matching.
    assert_eq!(
        changes,
        [
            Change::AttachAlias {
                seq: Seq(1),
                alias: "alias-w-late".into()
            },
            Change::AttachAlias {
                seq: Seq(1),
                alias: "w-late".into()
            }
        ]
    );
    receipt_of(
        &mut inbox,
        transition("w-d", "Declined", 1000, Source::Webhook),
    );
    // The console resend: same event_id, a fresh timestamp, after the Declined.
    let resend = Claim {
        id: "w-resend".into(),
        created_at: UnixSecs(2000),
        ..late
    };
    assert_eq!(
        receipt_of(&mut inbox, resend.clone()),
        Receipt::Duplicate { id: "a1".into() }
    );
    // A restored inbox knows the attached alias too.
    let restored = Inbox::restore(
        Some("session:s1".into()),
        inbox.events().map(|(record, _)| record.clone()),
        [],
    )
    .with_attached_aliases([(Seq(1), "alias-w-late".to_string())]);
    let mut restored = restored;
    assert_eq!(
        receipt_of(&mut restored, resend),
        Receipt::Duplicate { id: "a1".into() }
    );
}

#[test]
fn a_retry_of_a_webhook_matched_to_the_api_stays_a_duplicate_when_a_late_event_closes_the_match() {
    let mut inbox = Inbox::new();
    receipt_of(&mut inbox, transition("a1", "Approved", 900, Source::Api));
    let webhook = transition("w1", "Approved", 1000, Source::Webhook);
    assert_eq!(
        receipt_of(&mut inbox, webhook.clone()),
        Receipt::Duplicate { id: "a1".into() }
    );
    // An event Didit created in between arrives late: the two no longer match by transition.
    receipt_of(
        &mut inbox,
        transition("w-review", "In Review", 950, Source::Webhook),
    );
    // Didit retries the webhook under a fresh event_id: the same content, the same id.
    let retry = Claim {
        alias: Some("a-fresh-event-id".into()),
        ..webhook
    };
    assert_eq!(
        receipt_of(&mut inbox, retry),
        Receipt::Duplicate { id: "a1".into() },
        "found by the id attached when it was first matched"
    );
}

#[test]
fn an_older_status_never_reaches_a_consumer_after_a_newer_one_under_hold() {
    let schedule = schedule();
    let hold = policy(&schedule, AfterDeadLetter::Hold);
    let mut inbox = Inbox::new();
    receipt_of(
        &mut inbox,
        transition("declined", "Declined", 200, Source::Webhook),
    );
    deliver(&mut inbox, &hold, 1_000, delivered("o"));
    inbox.drain_changes().for_each(drop);
    // Didit's retry of the earlier Approved arrives after the Declined went out.
    receipt_of(
        &mut inbox,
        transition("approved", "Approved", 100, Source::Webhook),
    );
    assert_eq!(next_delivery(&inbox, &hold, 2_000), None, "never sent");
    assert!(inbox
        .poll_timeout(&hold, UnixMs(2_000))
        .is_some_and(|at| at <= UnixMs(2_000)));
    inbox.handle_timeout(&hold, UnixMs(2_000));
    let changes: Vec<Change> = inbox.drain_changes().collect();
    assert!(changes.iter().any(|change| matches!(
        change,
        Change::PutCopy {
            copy: CopyRecord {
                state: CopyState::Expired {
                    reason: DeadReason::Superseded,
                    ..
                },
                ..
            },
            ..
        }
    )));
    let transitions: Vec<Transition> = inbox.drain_transitions().collect();
    assert!(transitions.contains(&Transition::Superseded {
        event_id: "approved".into(),
        consumer: "main".into()
    }));
    // Nothing of it is kept for a replay, and it blocks nothing after it.
    assert!(inbox
        .handle_replay(ReplayFilter::default(), UnixMs(3_000))
        .is_empty());
    receipt_of(
        &mut inbox,
        transition("review", "In Review", 300, Source::Webhook),
    );
    assert_eq!(
        next_delivery(&inbox, &hold, 3_000),
        Some(("review".into(), "main".into()))
    );
    // A data change is not a status: it is never stale.
    let mut data = transition("data", "Approved", 50, Source::Webhook);
    data.webhook_type = "data.updated".into();
    receipt_of(&mut inbox, data);
    assert_eq!(
        next_delivery(&inbox, &hold, 3_000),
        Some(("data".into(), "main".into()))
    );
}

#[test]
fn an_older_status_claimed_while_a_newer_one_is_in_flight_is_superseded_when_it_lands() {
    let schedule = schedule();
    let hold = policy(&schedule, AfterDeadLetter::Hold);
    let mut inbox = Inbox::new();
    receipt_of(
        &mut inbox,
        transition("declined", "Declined", 200, Source::Webhook),
    );
    let Some(Work::Deliver(in_flight)) = inbox.poll_work(&hold, UnixMs(1_000)) else {
        panic!("the Declined is due");
    };
    // While the POST is awaited, the older Approved is claimed.
    receipt_of(
        &mut inbox,
        transition("approved", "Approved", 100, Source::Webhook),
    );
    inbox.handle_attempt(&in_flight, delivered("o"), &hold, UnixMs(1_100), 0);
    assert_eq!(next_delivery(&inbox, &hold, 1_200), None);
    let superseded = inbox.events().any(|(record, copies)| {
        record.id == "approved"
            && matches!(
                copies.get("main").map(|copy| copy.state),
                Some(CopyState::Expired {
                    reason: DeadReason::Superseded,
                    ..
                })
            )
    });
    assert!(superseded);
}

#[test]
fn under_continue_an_older_status_is_still_delivered() {
    let schedule = schedule();
    let continue_ = policy(&schedule, AfterDeadLetter::Continue);
    let mut inbox = Inbox::new();
    receipt_of(
        &mut inbox,
        transition("declined", "Declined", 200, Source::Webhook),
    );
    deliver(&mut inbox, &continue_, 1_000, delivered("o"));
    receipt_of(
        &mut inbox,
        transition("approved", "Approved", 100, Source::Webhook),
    );
    assert_eq!(
        next_delivery(&inbox, &continue_, 2_000),
        Some(("approved".into(), "main".into()))
    );
}

#[test]
fn an_erased_subject_takes_nothing_more_from_the_api_until_its_mark_expires() {
    let schedule = schedule();
    let hold = policy(&schedule, AfterDeadLetter::Hold);
    let mut inbox = Inbox::new();
    receipt_of(
        &mut inbox,
        transition("w1", "Approved", 100, Source::Webhook),
    );
    inbox.handle_erase(UnixMs(10_000));
    let changes: Vec<Change> = inbox.drain_changes().collect();
    assert!(changes.contains(&Change::MarkErased(UnixMs(10_000))));
    for status in ["Approved", "Declined"] {
        assert_eq!(
            inbox.knows_transition("status.updated", status, UnixSecs(20)),
            Knowledge::Erased
        );
    }
    assert_eq!(
        receipt_of(&mut inbox, transition("a2", "Declined", 20, Source::Api)),
        Receipt::Erased
    );
    assert_eq!(inbox.events().count(), 1, "nothing stored");
    // A webhook is Didit's own word: it is still taken.
    assert_eq!(
        receipt_of(
            &mut inbox,
            transition("w2", "Declined", 30, Source::Webhook)
        ),
        Receipt::Accepted { id: "w2".into() }
    );
    // The mark lasts one dedup TTL (1,000 s here), computed from the settings in force.
    let until = UnixMs(10_000).plus_secs(1_000);
    assert_eq!(inbox.erased_until(&hold.retention), Some(until));
    assert!(inbox
        .poll_timeout(&hold, UnixMs(10_001))
        .is_some_and(|at| at <= until));
    inbox.handle_timeout(&hold, UnixMs(until.0 - 1));
    assert!(!inbox.drain_changes().any(|c| c == Change::ForgetErasure));
    inbox.handle_timeout(&hold, until);
    assert!(inbox.drain_changes().any(|c| c == Change::ForgetErasure));
    assert_eq!(
        inbox.knows_transition("status.updated", "Declined", UnixSecs(40)),
        Knowledge::Held
    );
    // Restored, the mark is what storage says.
    let restored = Inbox::new().with_erasure(Some(UnixMs(5)));
    assert_eq!(
        restored.knows_transition("status.updated", "Approved", UnixSecs(40)),
        Knowledge::Erased
    );
}

#[test]
fn an_inbox_whose_last_event_is_forgotten_vacates_its_storage_and_not_before() {
    let schedule = schedule();
    let policy = policy(&schedule, AfterDeadLetter::Hold);
    let mut inbox = Inbox::new();
    inbox.handle_claim(claim("first", 0, &["a"]), UnixMs(0));
    deliver(&mut inbox, &policy, 0, delivered("o"));
    inbox.handle_claim(claim("second", 10, &["a"]), UnixMs(500_000));
    deliver(&mut inbox, &policy, 500_000, delivered("o"));
    drop(inbox.drain_changes().collect::<Vec<_>>());
    let written: Vec<Change> = retention_until_idle(&mut inbox, &policy, UnixMs(500_000))
        .into_iter()
        .map(|(_, change)| change)
        .collect();
    let forgotten = |seq| written.iter().position(|c| *c == Change::ForgetEvent(seq));
    let (first, second) = (forgotten(Seq(1)), forgotten(Seq(2)));
    let vacated = written.iter().position(|c| *c == Change::Vacate);
    assert!(first.is_some() && second.is_some(), "{written:?}");
    assert_eq!(
        written.iter().filter(|c| **c == Change::Vacate).count(),
        1,
        "{written:?}"
    );
    assert!(vacated > first && vacated > second, "{written:?}");
    assert_eq!(
        written.get(vacated.unwrap_or(0).saturating_sub(1)),
        Some(&Change::ForgetSubject)
    );
    assert_eq!(inbox.subject(), None);
}

#[test]
fn an_erased_inbox_keeps_its_storage_while_the_erasure_mark_lasts() {
    let schedule = schedule();
    let hold = policy(&schedule, AfterDeadLetter::Hold);
    let mut inbox = Inbox::new();
    receipt_of(
        &mut inbox,
        transition("w1", "Approved", 100, Source::Webhook),
    );
    inbox.handle_erase(UnixMs(10_000));
    drop(inbox.drain_changes().collect::<Vec<_>>());
    let written = retention_until_idle(&mut inbox, &hold, UnixMs(10_000));
    let vacated_at: Vec<UnixMs> = written
        .iter()
        .filter(|(_, change)| *change == Change::Vacate)
        .map(|(at, _)| *at)
        .collect();
    let until = inbox.erased_until(&hold.retention);
    assert_eq!(until, None, "the mark went");
    assert_eq!(vacated_at, [UnixMs(10_000).plus_secs(1_000)]);
}

/// Retention run as the alarm would run it, from `from` until nothing is due: every change
/// written, with the time it was written.
fn retention_until_idle(
    inbox: &mut Inbox,
    policy: &InboxPolicy<'_>,
    from: UnixMs,
) -> Vec<(UnixMs, Change)> {
    let mut now = from;
    let mut written = Vec::new();
    while let Some(next) = inbox.poll_timeout(policy, now) {
        now = next.max(now);
        inbox.handle_timeout(policy, now);
        written.extend(inbox.drain_changes().map(|change| (now, change)));
    }
    written
}

fn tried(at_ms: i64, status: u16, latency_ms: u64) -> LogEntry {
    LogEntry {
        at_ms,
        origin: Some("aws".into()),
        status: Some(status),
        error: (status >= 300).then_some(if status < 400 {
            "redirect"
        } else {
            "server_error"
        }),
        location: (300..400)
            .contains(&status)
            .then(|| "https://elsewhere.example/u/alice".into()),
        latency_ms: Some(latency_ms),
    }
}

fn outcome(verdict: Verdict, log: Vec<LogEntry>) -> Outcome {
    Outcome {
        verdict,
        log,
        rejected_by: vec![],
    }
}

fn lookup_ask(event_id: Option<&str>) -> crate::admin::LookupAsk {
    crate::admin::LookupAsk {
        subject_kind: "session".into(),
        event_id: event_id.map(Into::into),
    }
}

fn signed_claim(id: &str, created_at: i64) -> Claim {
    Claim {
        verified: Some(Verified {
            header: crate::verify::SignatureHeader::Canonical,
            form: crate::verify::SignedMessage::RawBody,
            secret_index: 1,
        }),
        ..claim(id, created_at, &["default"])
    }
}

#[test]
fn a_retried_event_keeps_both_requests_in_its_own_row() {
    let schedule = schedule();
    let policy = policy(&schedule, AfterDeadLetter::Hold);
    let mut inbox = Inbox::new();
    inbox.handle_claim(signed_claim("evt_a", 100), UnixMs(100_250));
    let stored: Vec<Change> = inbox.drain_changes().collect();
    assert!(
        stored.iter().any(|change| matches!(
            change,
            Change::InsertEvent {
                content: StoredContent::Classified {
                    verified: Some(Verified {
                        secret_index: 1,
                        ..
                    }),
                    ..
                },
                ..
            }
        )),
        "the verified signature is stored with the event: {stored:?}"
    );
    deliver(
        &mut inbox,
        &policy,
        100_300,
        outcome(Verdict::Failed, vec![tried(100_300, 503, 40)]),
    );
    let delivery = deliver(
        &mut inbox,
        &policy,
        101_300,
        outcome(
            Verdict::Delivered {
                origin: "aws".into(),
            },
            vec![tried(101_300, 204, 12)],
        ),
    );
    // Recording the requests costs no row of its own: only the copy's (the event's) row.
    let written: Vec<Change> = inbox.drain_changes().collect();
    assert!(
        written
            .iter()
            .all(|change| matches!(change, Change::PutCopy { .. } | Change::DropPayload(_))),
        "{written:?}"
    );
    let history = inbox
        .history(delivery.seq, "default")
        .expect("the copy is kept");
    assert_eq!((history.attempts, history.requests), (2, 2));

    let mut facts = LookupFacts::default();
    facts.verified.push((
        delivery.seq,
        Verified {
            header: crate::verify::SignatureHeader::Canonical,
            form: crate::verify::SignedMessage::RawBody,
            secret_index: 1,
        },
    ));
    let lookup = inbox.lookup(&lookup_ask(None), &facts).expect("found");
    assert_eq!(lookup.erased_at_ms, None);
    let [event] = &lookup.events[..] else {
        panic!("one event: {lookup:?}");
    };
    assert_eq!(event.id, "evt_a");
    assert_eq!(event.received.at_ms, 100_250);
    assert_eq!(
        event.received.age_ms, 250,
        "received 250 ms after Didit's timestamp"
    );
    assert_eq!(event.received.source, "webhook");
    let signature = event.received.signature.as_ref().expect("signature kept");
    assert_eq!(
        (signature.header.as_str(), signature.secret_index),
        ("X-Signature-V2", 1)
    );
    let classified = event.classified.as_ref().expect("classified");
    assert_eq!(classified.risk_level, "low");
    assert_eq!(classified.consumers, vec!["default".to_string()]);
    let [copy] = &event.copies[..] else {
        panic!("one copy: {event:?}");
    };
    assert_eq!(copy.state, "delivered");
    assert_eq!(copy.at_ms, Some(101_300));
    assert_eq!(copy.delivered_to.as_deref(), Some("aws"));
    let seen: Vec<(Option<u16>, Option<u64>)> = copy
        .log
        .iter()
        .map(|entry| (entry.status, entry.latency_ms))
        .collect();
    assert_eq!(seen, vec![(Some(503), Some(40)), (Some(204), Some(12))]);
    assert_eq!(
        (copy.attempts, copy.requests, copy.requests_not_kept),
        (2, 2, 0)
    );
}

#[test]
fn a_lookup_names_one_event_by_either_id_and_misses_clearly() {
    let mut inbox = Inbox::new();
    let facts = LookupFacts::default();
    assert_eq!(
        inbox.lookup(&lookup_ask(None), &facts),
        Err(crate::admin::LookupMiss::Subject),
        "an empty inbox keeps nothing about the subject"
    );
    inbox.handle_claim(claim("evt_a", 100, &["default"]), UnixMs(0));
    inbox.handle_claim(claim("evt_b", 200, &["default"]), UnixMs(0));
    let ids = |ask| -> Vec<String> {
        inbox
            .lookup(&ask, &facts)
            .expect("found")
            .events
            .into_iter()
            .map(|event| event.id)
            .collect()
    };
    assert_eq!(ids(lookup_ask(None)), vec!["evt_a", "evt_b"]);
    assert_eq!(ids(lookup_ask(Some("evt_b"))), vec!["evt_b"]);
    assert_eq!(ids(lookup_ask(Some("alias-evt_a"))), vec!["evt_a"]);
    assert_eq!(
        inbox.lookup(&lookup_ask(Some("evt_z")), &facts),
        Err(crate::admin::LookupMiss::Event)
    );
}

#[test]
fn a_dead_letter_lists_an_older_releases_log_first_then_its_history() {
    let schedule = schedule();
    let policy = policy(&schedule, AfterDeadLetter::Hold);
    let mut inbox = Inbox::new();
    inbox.handle_claim(claim("evt_a", 100, &["default"]), UnixMs(0));
    let mut seq = None;
    for (n, at) in [0, 1_000, 2_000].into_iter().enumerate() {
        let delivery = deliver(
            &mut inbox,
            &policy,
            at,
            outcome(Verdict::Failed, vec![tried(at, 500 + n as u16, 5)]),
        );
        seq = Some(delivery.seq);
    }
    let seq = seq.expect("attempted");
    let mut facts = LookupFacts::default();
    facts.legacy_attempts.push((
        seq,
        "default".into(),
        crate::admin::LoggedAttempt {
            at_ms: -5,
            origin: Some("old".into()),
            status: Some(502),
            error: Some("server_error".into()),
            location: None,
            latency_ms: None,
        },
    ));
    let lookup = inbox.lookup(&lookup_ask(None), &facts).expect("found");
    let copy = &lookup.events[0].copies[0];
    assert_eq!(copy.state, "dead");
    assert_eq!(copy.reason.as_deref(), Some("retries_exhausted"));
    let statuses: Vec<Option<u16>> = copy.log.iter().map(|entry| entry.status).collect();
    assert_eq!(statuses, vec![Some(502), Some(500), Some(501), Some(502)]);
    assert_eq!((copy.attempts, copy.requests), (3, 4));

    inbox.handle_replay(
        ReplayFilter {
            id: Some("evt_a"),
            consumer: None,
        },
        UnixMs(9_000),
    );
    let lookup = inbox.lookup(&lookup_ask(None), &facts).expect("found");
    let copy = &lookup.events[0].copies[0];
    assert_eq!(copy.state, "pending");
    assert_eq!((copy.replays, copy.replayed_at_ms), (1, Some(9_000)));
    assert_eq!(copy.log.len(), 4, "a replay keeps the history");
}

#[test]
fn after_an_erasure_a_lookup_shows_the_mark_and_nothing_the_origins_pointed_at() {
    let schedule = schedule();
    let policy = policy(&schedule, AfterDeadLetter::Hold);
    let mut inbox = Inbox::new();
    inbox.handle_claim(claim("evt_a", 100, &["default"]), UnixMs(0));
    deliver(
        &mut inbox,
        &policy,
        0,
        outcome(Verdict::Failed, vec![tried(0, 302, 3)]),
    );
    inbox.drain_changes().for_each(drop);
    inbox.handle_erase(UnixMs(5_000));
    let lookup = inbox
        .lookup(&lookup_ask(None), &LookupFacts::default())
        .expect("the erased subject's events are still kept for deduplication");
    assert_eq!(lookup.erased_at_ms, Some(5_000));
    let event = &lookup.events[0];
    assert!(!event.payload_kept);
    let copy = &event.copies[0];
    assert_eq!(
        (copy.state.as_str(), copy.reason.as_deref()),
        ("expired", Some("erased"))
    );
    assert_eq!(copy.log[0].status, Some(302));
    assert_eq!(copy.log[0].location, None, "the redirect's Location went");
}
