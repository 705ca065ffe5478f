//! Checks across the whole of Didit's side: the payloads it builds, written and signed, are what
//! Python writes and signs, and what the core verifies; and the helpers the other tests share.

use didit_edge_core::canonical::{CanonicalJson, NonAscii};
use didit_edge_core::mac::RustCrypto;
use didit_edge_core::secret::WebhookSecrets;
use didit_edge_core::verify::{self, SignatureHeader, SignatureHeaders, SignedMessage};
use serde_json::{json, Value};

use super::python_json::python_json;
use super::signatures::{hmac_hex, TEST_HEADER};
use super::*;

const VECTORS: &str = include_str!("../../../core/tests/vectors.json");

/// `core/tests/vectors.json`: what Python writes and signs.
pub(super) fn vectors() -> Value {
    serde_json::from_str(VECTORS).expect("vectors.json is JSON")
}

/// The value of the first header called `name`.
pub(super) fn header<'h>(headers: &'h [(String, String)], name: &str) -> Option<&'h str> {
    headers
        .iter()
        .find(|(n, _)| n == name)
        .map(|(_, v)| v.as_str())
}

/// The core's verifier accepts what the CLI signs, in every form it can sign.
fn verify_with_core(
    body: &[u8],
    headers: &[(String, String)],
    secret: &str,
    simple: bool,
) -> verify::Verified {
    let secrets = WebhookSecrets::parse(secret).expect("secret");
    let signature_headers = SignatureHeaders {
        signature: header(headers, "X-Signature"),
        signature_v2: header(headers, "X-Signature-V2"),
        signature_simple: header(headers, "X-Signature-Simple"),
        timestamp: header(headers, "X-Timestamp"),
    };
    let envelope = didit_edge_core::envelope::Envelope::parse(body).ok();
    let tiers =
        verify::challenges(body, &signature_headers, envelope.as_ref(), simple).expect("signed");
    verify::answer(tiers, &secrets, &mut RustCrypto).expect("verifies")
}

#[test]
fn the_core_verifies_every_generated_payload_in_every_form() {
    let secret = "cli-test-secret";
    for webhook_type in WEBHOOK_TYPES.iter().chain(["session.reviewed"].iter()) {
        for version in [PayloadVersion::V3, PayloadVersion::V2, PayloadVersion::V1] {
            let spec = PayloadSpec {
                webhook_type: (*webhook_type).into(),
                status: None,
                previous_status: None,
                version,
                failing: vec![Failing::Aml, Failing::FaceMatch],
                kyb: false,
                test: true,
                session_id: None,
                vendor_data: Some("Zoë-42".into()),
                business_id: None,
                transaction_id: None,
                event_id: None,
                timestamp: Some(1_763_784_000),
                set: vec![],
            };
            let payload = spec.build(1_763_784_000).expect("builds");
            assert_eq!(payload["webhook_type"], *webhook_type);
            assert_eq!(payload["metadata"]["test_webhook"], true);
            let body = encode(&payload);
            assert!(body.is_ascii(), "Didit escapes non-ASCII in the raw body");
            let reparsed: Value = serde_json::from_slice(&body).expect("JSON");
            assert_eq!(reparsed, payload);
            for (kinds, expected, simple) in [
                (vec![SignatureKind::Raw], SignatureHeader::Raw, false),
                (vec![SignatureKind::V2], SignatureHeader::Canonical, false),
                (vec![SignatureKind::Simple], SignatureHeader::Simple, true),
            ] {
                if expected == SignatureHeader::Simple && payload.get("session_id").is_none() {
                    continue;
                }
                for (v2_form, prefix) in [(V2Form::Escaped, false), (V2Form::Utf8, true)] {
                    let options = SignOptions {
                        kinds: Some(kinds.clone()),
                        v2_form,
                        v2_timestamp_prefix: prefix,
                        x_timestamp: None,
                        test_header: true,
                    };
                    let headers = sign(&body, secret, &options).expect("signs");
                    assert_eq!(header(&headers, TEST_HEADER), Some("true"));
                    assert_eq!(header(&headers, "X-Timestamp"), Some("1763784000"));
                    let verified = verify_with_core(&body, &headers, secret, simple);
                    assert_eq!(verified.header, expected, "{webhook_type} {version:?}");
                    if expected == SignatureHeader::Canonical {
                        // A body without non-ASCII text has one canonical form, the escaped one.
                        let non_ascii = if v2_form == V2Form::Utf8
                            && python_json(&payload, false) != python_json(&payload, true)
                        {
                            NonAscii::Utf8
                        } else {
                            NonAscii::Escaped
                        };
                        assert_eq!(
                            verified.form,
                            SignedMessage::Canonical {
                                non_ascii,
                                timestamp_prefix: prefix
                            }
                        );
                    }
                }
            }
        }
    }
}

#[test]
fn the_default_payload_is_tests_didit_session_payload() {
    let spec = PayloadSpec {
        webhook_type: "status.updated".into(),
        status: None,
        previous_status: None,
        version: PayloadVersion::V3,
        failing: vec![],
        kyb: false,
        test: false,
        session_id: Some("5f0c1e8e-9d3a-4a71-b2a4-7b3a8c1d2e3f".into()),
        vendor_data: None,
        business_id: None,
        transaction_id: None,
        event_id: Some("0b9f6c53-1f31-4c5e-9a51-2d3f0f7e8a11".into()),
        timestamp: Some(1_763_784_000),
        set: vec![],
    };
    let mut payload = spec.build(0).expect("builds");
    // generate_vectors.py signs session_payload with one name changed and writes it with
    // indent=1, ensure_ascii=False: the same payload.
    payload["decision"]["id_verifications"][0]["first_name"] = json!("Zoë 🙂");
    let vector = &vectors()["signatures"][0];
    let python: Value = serde_json::from_str(vector["body"].as_str().expect("body")).expect("JSON");
    assert_eq!(payload, python);
    // And the exact bytes Python signs for X-Signature-V2 in both forms.
    let body = encode(&payload);
    let canonical = CanonicalJson::parse(&body).expect("JSON");
    assert_eq!(
        hmac_hex(
            "whsec-style-not-needed-new",
            canonical.to_string(NonAscii::Escaped).as_bytes()
        ),
        vectors()["signatures"]
            .as_array()
            .expect("cases")
            .iter()
            .find(|c| c["expect"]["form"] == "canonical-escaped")
            .and_then(|c| c["headers"]["signature_v2"].as_str())
            .expect("vector")
    );
}
