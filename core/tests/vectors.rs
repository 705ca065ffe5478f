//! Checks the core against vectors computed by Python's `hmac` and `json`
//! (tests/fixtures/generate_vectors.py), independently of the code under test.

#[cfg(target_arch = "wasm32")]
use wasm_bindgen_test::wasm_bindgen_test as test;

use didit_edge_core::canonical::{CanonicalJson, NonAscii};
use didit_edge_core::envelope::Envelope;
use didit_edge_core::mac::RustCrypto;
use didit_edge_core::secret::WebhookSecrets;
use didit_edge_core::verify::{
    self, SignatureHeader, SignatureHeaders, SignedMessage, VerifyError,
};
use serde_json::Value;

const VECTORS: &str = include_str!("vectors.json");

fn vectors() -> Value {
    serde_json::from_str(VECTORS).expect("vectors.json is valid JSON")
}

fn text<'a>(value: &'a Value, key: &str) -> &'a str {
    value[key]
        .as_str()
        .unwrap_or_else(|| panic!("vector field {key} is not a string"))
}

#[test]
fn canonical_forms_match_python() {
    let vectors = vectors();
    let cases = vectors["canonical"].as_array().expect("canonical cases");
    assert!(cases.len() >= 8);
    for case in cases {
        let body = text(case, "body");
        let parsed =
            CanonicalJson::parse(body.as_bytes()).unwrap_or_else(|e| panic!("{body}: {e}"));
        assert_eq!(
            parsed.to_string(NonAscii::Escaped),
            text(case, "escaped"),
            "escaped form of {body}"
        );
        assert_eq!(
            parsed.to_string(NonAscii::Utf8),
            text(case, "utf8"),
            "UTF-8 form of {body}"
        );
    }
}

fn form_name(header: SignatureHeader, form: SignedMessage) -> String {
    match (header, form) {
        (_, SignedMessage::RawBody) => "raw".into(),
        (_, SignedMessage::SimpleFields) => "simple".into(),
        (
            _,
            SignedMessage::Canonical {
                non_ascii,
                timestamp_prefix,
            },
        ) => format!(
            "canonical-{}{}",
            if non_ascii == NonAscii::Escaped {
                "escaped"
            } else {
                "utf8"
            },
            if timestamp_prefix { "-prefixed" } else { "" }
        ),
    }
}

#[test]
fn signatures_verify_as_python_signed_them() {
    let vectors = vectors();
    let cases = vectors["signatures"].as_array().expect("signature cases");
    assert!(cases.len() >= 14);
    for case in cases {
        let name = text(case, "name");
        let body = text(case, "body").as_bytes();
        let headers = &case["headers"];
        let signature_headers = SignatureHeaders {
            signature: headers["signature"].as_str(),
            signature_v2: headers["signature_v2"].as_str(),
            signature_simple: headers["signature_simple"].as_str(),
            timestamp: headers["timestamp"].as_str(),
        };
        let secrets = WebhookSecrets::parse(text(case, "secrets")).expect("secrets");
        let envelope = Envelope::parse(body).ok();
        let allow_simple = case["allow_simple"].as_bool().unwrap_or(false);
        let outcome = verify::challenges(body, &signature_headers, envelope.as_ref(), allow_simple)
            .and_then(|tiers| verify::answer(tiers, &secrets, &mut RustCrypto));
        let expect = &case["expect"];
        match (outcome, expect["error"].as_str()) {
            (Ok(verified), None) => {
                assert_eq!(
                    verified.header.header_name(),
                    text(expect, "header"),
                    "{name}"
                );
                assert_eq!(
                    form_name(verified.header, verified.form),
                    text(expect, "form"),
                    "{name}"
                );
                assert_eq!(
                    verified.secret_index as u64,
                    expect["secret_index"].as_u64().expect("index"),
                    "{name}"
                );
            }
            (Err(error), Some(expected)) => {
                let actual = match error {
                    VerifyError::MissingSignature => "MissingSignature",
                    VerifyError::SimpleSignatureNotAllowed => "SimpleSignatureNotAllowed",
                    VerifyError::SignatureMismatch => "SignatureMismatch",
                    other => panic!("{name}: a verify error the vectors do not know: {other}"),
                };
                assert_eq!(actual, expected, "{name}");
            }
            (outcome, expected) => panic!("{name}: got {outcome:?}, expected {expected:?}"),
        }
    }
}
