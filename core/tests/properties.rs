//! Properties over generated input (native only: proptest needs the OS's randomness): nothing
//! panics on any bytes or any JSON, canonical JSON is a fixed point, and the original payload
//! always arrives untouched whatever shape its decision or extra fields take.
#![cfg(not(target_arch = "wasm32"))]

use didit_edge_core::canonical::{CanonicalJson, NonAscii};
use didit_edge_core::intake::{ClassifyPolicy, Incoming, Intake};
use didit_edge_core::mac::{HmacSha256, RustCrypto};
use didit_edge_core::normalize::summarize;
use didit_edge_core::origin::parse_origins;
use didit_edge_core::risk::RiskRules;
use didit_edge_core::secret::WebhookSecrets;
use didit_edge_core::verify::SignatureHeaders;
use proptest::prelude::*;
use serde_json::{Map, Value};

fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        (-1e12f64..1e12).prop_map(Value::from),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(Value::from),
        ".{0,12}".prop_map(Value::String),
        prop_oneof![
            Just("Approved"),
            Just("Declined"),
            Just("In Review"),
            Just("PRIVATE_NETWORK_DETECTED")
        ]
        .prop_map(|s| Value::String(s.into())),
    ];
    leaf.prop_recursive(5, 64, 8, |inner| {
        let key = prop_oneof![
            ".{0,8}",
            prop_oneof![
                Just("status"),
                Just("warnings"),
                Just("risk"),
                Just("node_id"),
                Just("score"),
                Just("total_hits"),
                Just("is_vpn_or_tor"),
                Just("liveness_checks"),
                Just("aml"),
                Just("kyc"),
                Just("id_verification"),
                Just("log_type"),
            ]
            .prop_map(String::from),
        ];
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::vec((key, inner), 0..6)
                .prop_map(|pairs| Value::Object(pairs.into_iter().collect::<Map<_, _>>())),
        ]
    })
}

/// The admitted CloudEvent as JSON text.
fn admit(body: &[u8]) -> Option<String> {
    let tag = hex::encode(RustCrypto.tag(b"k", body));
    let delivery = Incoming {
        body,
        headers: SignatureHeaders {
            signature: Some(&tag),
            signature_v2: Some(&tag),
            ..Default::default()
        },
        test_header: false,
    };
    let origins =
        parse_origins(r#"[{"name":"o","url":"https://o","risk_levels":["high"]}]"#).ok()?;
    let rules = RiskRules::default();
    let policy = ClassifyPolicy {
        risk_rules: &rules,
        origins: &origins,
    };
    let intake = Intake::new(delivery, true).ok()?;
    let verified = intake
        .verify_with(&WebhookSecrets::parse("k").ok()?, &mut RustCrypto)
        .ok()?;
    let classified = intake
        .identify(verified, 1_700_000_000, 600)
        .ok()?
        .classify(&policy)
        .ok()?;
    Some(classified.cloud_event.get().to_owned())
}

/// `data.payload` of a CloudEvent, as the exact text it carries.
fn raw_payload(event: &str) -> String {
    #[derive(serde::Deserialize)]
    struct Event<'a> {
        #[serde(borrow)]
        data: Data<'a>,
    }
    #[derive(serde::Deserialize)]
    struct Data<'a> {
        #[serde(borrow)]
        payload: &'a serde_json::value::RawValue,
    }
    let event: Event<'_> = serde_json::from_str(event).expect("CloudEvent is JSON");
    event.data.payload.get().to_owned()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 400, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        let _ = CanonicalJson::parse(&bytes).map(|c| c.to_string(NonAscii::Escaped));
        let _ = admit(&bytes);
    }

    #[test]
    fn canonical_json_is_a_fixed_point(value in json_value()) {
        let text = serde_json::to_string(&value).expect("serializes");
        for mode in [NonAscii::Escaped, NonAscii::Utf8] {
            let once = CanonicalJson::parse(text.as_bytes()).expect("valid JSON parses").to_string(mode);
            prop_assert!(serde_json::from_str::<Value>(&once).is_ok(), "not JSON: {}", once);
            let twice = CanonicalJson::parse(once.as_bytes()).expect("canonical parses").to_string(mode);
            prop_assert_eq!(once, twice);
        }
    }

    #[test]
    fn any_decision_and_extra_fields_keep_the_payload(decision in json_value(), extra in json_value(),
                                                      status in "[A-Za-z ]{0,12}", kind in 0usize..9) {
        let types = ["status.updated", "data.updated", "user.status.updated", "user.data.updated",
                     "business.status.updated", "business.data.updated", "activity.created",
                     "transaction.created", "transaction.status.updated"];
        let mut payload = match extra { Value::Object(map) => map, _ => Map::new() };
        payload.insert("webhook_type".into(), types[kind].into());
        payload.insert("timestamp".into(), 1_700_000_000.into());
        for id in ["session_id", "vendor_data", "vendor_business_id", "transaction_id"] {
            payload.insert(id.into(), "subject-1".into());
        }
        payload.insert("status".into(), status.into());
        payload.insert("decision".into(), decision.clone());
        let payload = Value::Object(payload);
        let body = serde_json::to_vec(&payload).expect("serializes");
        let event = admit(&body).expect("a well-formed, authentic, fresh delivery is admitted");
        let carried = raw_payload(&event);
        prop_assert_eq!(carried.as_bytes(), body.as_slice(), "the payload must be byte-identical");
        let _ = summarize(&decision);
    }
}
