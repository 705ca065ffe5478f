use super::*;
use crate::envelope::{Envelope, EnvelopeError};
use crate::mac::RustCrypto;
use crate::risk::{Level, RiskRules};
use crate::verify;
use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;
#[cfg(target_arch = "wasm32")]
use wasm_bindgen_test::wasm_bindgen_test as test;

const NOW: i64 = 1_700_000_000;

fn signed(body: &str) -> String {
    hex::encode(RustCrypto.tag(b"k", body.as_bytes()))
}

/// What one delivery comes to: its name and its classification.
struct Admission<'a> {
    identified: Identified<'a>,
    classified: Classified,
}

fn run<'a>(
    body: &'a str,
    signature: &'a str,
    x_timestamp: Option<&'a str>,
) -> Result<Admission<'a>, Rejection> {
    let incoming = Incoming {
        body: body.as_bytes(),
        headers: SignatureHeaders {
            signature: Some(signature),
            timestamp: x_timestamp,
            ..Default::default()
        },
        test_header: false,
    };
    let intake = Intake::new(incoming, false)?;
    let verified = intake.verify_with(
        &WebhookSecrets::parse("k").expect("secret"),
        &mut RustCrypto,
    )?;
    let origins = crate::origin::parse_origins(
            r#"[{"name":"main","url":"https://main"},{"name":"fraud","url":"https://fraud","consumer":"fraud","risk_levels":["high"]}]"#,
        )
        .expect("origins");
    let rules = RiskRules::default();
    let identified = intake.identify(verified, NOW, 600)?;
    let classified = identified.classify(&ClassifyPolicy {
        risk_rules: &rules,
        origins: &origins,
    })?;
    Ok(Admission {
        identified,
        classified,
    })
}

#[test]
fn admits_a_fresh_authentic_delivery() {
    let body = format!(
        r#"{{"webhook_type":"status.updated","session_id":"s1","status":"Approved","timestamp":{NOW},"event_id":"e1","vendor_data":"user-7","workflow_id":"wf","metadata":{{"test_webhook":true}}}}"#
    );
    let tag = signed(&body);
    let admission = run(&body, &tag, None).expect("admitted");
    assert_eq!(admission.identified.inbox(), "session:s1");
    let update = &admission.classified.status_update;
    assert_eq!(update.event_id, admission.identified.event_id.as_str());
    assert_eq!(
        (
            update.subject_kind.as_str(),
            update.subject_id.as_str(),
            update.time,
            update.test
        ),
        ("session", "s1", NOW, true)
    );
    assert_eq!(update.status_code.as_deref(), Some("approved"));
    assert_eq!(update.channels(), ["admin", "user:user-7"]);
    assert_eq!(
        (update.session_id.as_deref(), update.workflow_id.as_deref()),
        (Some("s1"), Some("wf"))
    );
    assert_eq!(admission.identified.alias.as_deref(), Some("e1"));
    let event: serde_json::Value =
        serde_json::from_str(admission.classified.cloud_event.get()).expect("json");
    assert_eq!(event["id"], admission.identified.event_id.as_str());
    assert_eq!(event["type"], "me.didit.status.updated");
    assert_eq!(event["subject"], "s1");
    assert_eq!(event["time"], "2023-11-14T22:13:20Z");
    assert_eq!(event["data"]["test"], true);
    assert_eq!(event["data"]["verification"]["covers"], "payload");
    assert_eq!(event["data"]["status_code"], "approved");
    assert_eq!(
        event["data"]["risk"],
        serde_json::json!({"level": "low", "signals": []})
    );
    assert_eq!(admission.classified.consumers, ["default"]);
    let payload: serde_json::Value = serde_json::from_str(&body).expect("json");
    assert_eq!(event["data"]["payload"], payload);
}

#[test]
fn risky_events_reach_the_consumers_that_want_them() {
    let body = format!(
        r#"{{"webhook_type":"status.updated","session_id":"s9","status":"Declined","timestamp":{NOW},
               "decision":{{"aml_screenings":[{{"node_id":"aml-1","status":"Declined","total_hits":4}}]}}}}"#
    );
    let tag = signed(&body);
    let admission = run(&body, &tag, None).expect("admitted");
    assert_eq!(admission.classified.risk_level, Level::High);
    assert_eq!(admission.classified.consumers, ["default", "fraud"]);
    let event: serde_json::Value =
        serde_json::from_str(admission.classified.cloud_event.get()).expect("json");
    assert_eq!(event["data"]["payload_version"], "v3");
    assert_eq!(event["data"]["decision"]["features"][0]["feature"], "aml");
    assert_eq!(
        event["data"]["risk"]["signals"][1],
        serde_json::json!({"code": "aml_declined", "source": "aml:aml-1"})
    );
}

#[test]
fn a_stored_event_classified_later_is_the_same_event() {
    let body = format!(
        r#"{{"webhook_type":"status.updated","session_id":"s1","status":"Declined","timestamp":{NOW},"event_id":"e1","vendor_data":"u\"7"}}"#
    );
    let tag = signed(&body);
    let now = run(&body, &tag, None).expect("admitted");
    let identified = &now.identified;
    let Provenance::Signed(verified) = identified.provenance else {
        panic!("a webhook is signed");
    };
    let later = Identified::recall(
        body.as_bytes(),
        verified,
        identified.test,
        identified.received_at,
    )
    .expect("recalled");
    assert_eq!(later.event_id, identified.event_id);
    assert_eq!(later.legacy_id, identified.legacy_id);
    assert_eq!(later.alias, identified.alias);
    let origins =
        crate::origin::parse_origins(r#"[{"name":"main","url":"https://main"}]"#).expect("origins");
    let rules = RiskRules::default();
    let classified = later
        .classify(&ClassifyPolicy {
            risk_rules: &rules,
            origins: &origins,
        })
        .expect("classified");
    assert_eq!(
        classified.cloud_event.get(),
        now.classified.cloud_event.get()
    );
    assert_eq!(classified.status_update, now.classified.status_update);
}

#[test]
fn only_what_the_signature_covers_names_the_event() {
    let body = format!(
        r#"{{"webhook_type":"status.updated","session_id":"s1","status":"Approved","timestamp":{NOW},"event_id":"e1"}}"#
    );
    let identify = |body: &str, header| {
        let verified = Verified {
            header,
            form: verify::SignedMessage::RawBody,
            secret_index: 0,
        };
        Identified::recall(body.as_bytes(), verified, false, NOW)
            .expect("named")
            .event_id
    };
    let edited = body.replace(r#""event_id":"e1""#, r#""event_id":"e1","decision":{}"#);
    use crate::verify::SignatureHeader::{Raw, Simple};
    assert_ne!(identify(&body, Raw), identify(&edited, Raw));
    // Only the four simple fields are authenticated: an edited decision is the same event.
    assert_eq!(identify(&body, Simple), identify(&edited, Simple));
}

#[test]
fn authenticity_is_judged_before_content() {
    assert_eq!(
        run("not json", &"0".repeat(64), None).err(),
        Some(Rejection::InvalidSignature)
    );
    assert_eq!(
        run("not json", &signed("not json"), None).err(),
        Some(Rejection::MalformedJson)
    );
    let array = "[1]";
    assert!(matches!(
        run(array, &signed(array), None),
        Err(Rejection::InvalidPayload { .. })
    ));
}

#[test]
fn an_authentic_body_that_is_not_utf8_is_malformed_json() {
    // Invalid UTF-8 in a field the envelope does not read (the envelope fuzz target found
    // it): the envelope refuses the body as a whole, before reading any field.
    let body = format!(
        r#"{{"webhook_type":"status.updated","session_id":"s1","timestamp":{NOW},"note":"A"#
    )
    .into_bytes()
    .into_iter()
    .chain(*b"\xffB\"}")
    .collect::<Vec<u8>>();
    assert!(matches!(
        Envelope::parse(&body),
        Err(EnvelopeError::NotUtf8)
    ));
    let tag = hex::encode(RustCrypto.tag(b"k", &body));
    let incoming = Incoming {
        body: &body,
        headers: SignatureHeaders {
            signature: Some(&tag),
            ..Default::default()
        },
        test_header: false,
    };
    let intake = Intake::new(incoming, false).expect("a signature header is present");
    let verified = intake
        .verify_with(
            &WebhookSecrets::parse("k").expect("secret"),
            &mut RustCrypto,
        )
        .expect("authentic");
    assert_eq!(
        intake.identify(verified, NOW, 600).err(),
        Some(Rejection::MalformedJson)
    );
}

#[test]
fn freshness_is_bounded_both_ways_on_body_and_header() {
    let at = |ts: i64| {
        format!(r#"{{"webhook_type":"status.updated","session_id":"s1","timestamp":{ts}}}"#)
    };
    for (ts, ok) in [
        (NOW - 600, true),
        (NOW + 600, true),
        (NOW - 601, false),
        (NOW + 601, false),
    ] {
        let body = at(ts);
        assert_eq!(run(&body, &signed(&body), None).is_ok(), ok, "ts {ts}");
    }
    let body = at(NOW);
    assert_eq!(
        run(&body, &signed(&body), Some("1")).err(),
        Some(Rejection::StaleTimestamp {
            age_secs: NOW as u64 - 1
        })
    );
    assert_eq!(
        run(&body, &signed(&body), Some("abc")).err(),
        Some(Rejection::InvalidTimestampHeader)
    );
}

#[test]
fn missing_fields_are_named() {
    for (body, field) in [
        (
            format!(r#"{{"session_id":"s1","timestamp":{NOW}}}"#),
            "webhook_type",
        ),
        (
            r#"{"session_id":"s1","webhook_type":"status.updated"}"#.into(),
            "timestamp",
        ),
    ] {
        assert_eq!(
            run(&body, &signed(&body), None).err(),
            Some(Rejection::MissingField { field })
        );
    }
    let body = format!(r#"{{"webhook_type":"status.updated","timestamp":{NOW}}}"#);
    assert!(matches!(
        run(&body, &signed(&body), None),
        Err(Rejection::MissingField { .. })
    ));
}
