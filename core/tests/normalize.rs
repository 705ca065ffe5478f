//! Every fixture in tests/fixtures/events.json (all event types, payload versions v1–v3, KYC and
//! KYB, large decisions, nulls) through the whole intake, against expectations written by hand
//! in tests/fixtures/generate_events.py.

#[cfg(target_arch = "wasm32")]
use wasm_bindgen_test::wasm_bindgen_test as test;

use didit_edge_core::intake::{ClassifyPolicy, Incoming, Intake};
use didit_edge_core::mac::{HmacSha256, RustCrypto};
use didit_edge_core::origin::parse_origins;
use didit_edge_core::risk::RiskRules;
use didit_edge_core::secret::WebhookSecrets;
use didit_edge_core::verify::SignatureHeaders;
use serde_json::{json, Value};

const FIXTURES: &str = include_str!("../../tests/fixtures/events.json");

fn event_for(case: &Value, now: i64) -> Value {
    let body = serde_json::to_string(&case["payload"]).expect("payload serializes");
    let tag = hex::encode(RustCrypto.tag(b"k", body.as_bytes()));
    let delivery = Incoming {
        body: body.as_bytes(),
        headers: SignatureHeaders {
            signature: Some(&tag),
            ..Default::default()
        },
        test_header: case["test_header"].as_bool().unwrap_or(false),
    };
    let origins = parse_origins(r#"[{"name":"main","url":"https://main"}]"#).expect("origins");
    let rules = RiskRules::default();
    let policy = ClassifyPolicy {
        risk_rules: &rules,
        origins: &origins,
    };
    let intake = Intake::new(delivery, false).expect("intake");
    let verified = intake
        .verify_with(
            &WebhookSecrets::parse("k").expect("secret"),
            &mut RustCrypto,
        )
        .expect("verified");
    let classified = intake
        .identify(verified, now, 600)
        .and_then(|identified| identified.classify(&policy))
        .unwrap_or_else(|r| panic!("{}: {r}", case["name"]));
    serde_json::from_str(classified.cloud_event.get()).expect("CloudEvent is JSON")
}

#[test]
fn every_fixture_normalizes_as_expected() {
    let fixtures: Value = serde_json::from_str(FIXTURES).expect("fixtures are JSON");
    let now = fixtures["timestamp"].as_i64().expect("timestamp");
    let cases = fixtures["cases"].as_array().expect("cases");
    assert!(cases.len() >= 20);
    for case in cases {
        let name = case["name"].as_str().expect("name");
        let expected = &case["expected"];
        let event = event_for(case, now);
        let data = &event["data"];
        assert_eq!(event["specversion"], "1.0", "{name}");
        assert_eq!(
            json!([data["subject"]["kind"], data["subject"]["id"]]),
            expected["subject"],
            "{name}: subject"
        );
        assert_eq!(
            event["subject"], expected["subject"][1],
            "{name}: CloudEvent subject"
        );
        assert_eq!(
            data["status_code"], expected["status_code"],
            "{name}: status_code"
        );
        if let Some(previous) = expected.get("previous_status_code") {
            assert_eq!(
                &data["previous_status_code"], previous,
                "{name}: previous_status_code"
            );
        }
        assert_eq!(
            data["payload_version"], expected["payload_version"],
            "{name}: payload_version"
        );
        assert_eq!(
            data["risk"]["level"], expected["risk_level"],
            "{name}: risk level"
        );
        let signals: Vec<Value> = data["risk"]["signals"]
            .as_array()
            .expect("signals")
            .iter()
            .map(|s| json!([s["code"], s["source"]]))
            .collect();
        assert_eq!(Value::from(signals), expected["signals"], "{name}: signals");
        let features = data["decision"]["features"].as_array().map(|list| {
            Value::from(
                list.iter()
                    .map(|f| json!([f["feature"], f["status"]["code"]]))
                    .collect::<Vec<_>>(),
            )
        });
        assert_eq!(
            features.unwrap_or(Value::Null),
            expected["features"],
            "{name}: features"
        );
        assert_eq!(
            data["test"],
            expected.get("test").cloned().unwrap_or(json!(false)),
            "{name}: test"
        );
        assert_eq!(
            data["resubmission"].is_object(),
            expected.get("resubmission").is_some(),
            "{name}: resubmission"
        );
        assert_eq!(
            data["payload"], case["payload"],
            "{name}: the payload must travel untouched"
        );
    }
}

#[test]
fn findings_never_copy_identifying_fields() {
    let fixtures: Value = serde_json::from_str(FIXTURES).expect("fixtures are JSON");
    let now = fixtures["timestamp"].as_i64().expect("timestamp");
    for case in fixtures["cases"].as_array().expect("cases") {
        let event = event_for(case, now);
        let mut data = event["data"].clone();
        if let Some(object) = data.as_object_mut() {
            object.remove("payload");
            object.remove("vendor_data");
        }
        let text = data.to_string();
        for identifying in [
            "José",
            "Ñúñez",
            "PAE123456",
            "1989-04-12",
            "203.0.113.7",
            "+34600000000",
            "example.invalid",
        ] {
            assert!(
                !text.contains(identifying),
                "{}: `{identifying}` leaked outside data.payload",
                case["name"]
            );
        }
    }
}
