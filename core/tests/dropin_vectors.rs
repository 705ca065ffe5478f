//! Checks the drop-in format against vectors computed by Python's `json` and `hmac`
//! (tests/fixtures/generate_dropin_vectors.py), independently of the code under test: the body
//! each attempt sends (timestamp of the attempt, the edge's event id, Didit's canonical JSON)
//! and every header, for a first attempt, ten minutes and three days after the event.

#[cfg(target_arch = "wasm32")]
use wasm_bindgen_test::wasm_bindgen_test as test;

use didit_edge_core::dropin;
use didit_edge_core::mac::RustCrypto;
use didit_edge_core::secret::WebhookSecret;
use serde_json::Value;

const VECTORS: &str = include_str!("dropin_vectors.json");

#[test]
fn every_attempt_matches_python() {
    let vectors: Value = serde_json::from_str(VECTORS).expect("dropin_vectors.json");
    let secret =
        WebhookSecret::parse_one(vectors["secret"].as_str().expect("secret")).expect("one secret");
    let cases = vectors["cases"].as_array().expect("cases");
    assert_eq!(cases.len(), 5);
    for case in cases {
        let name = case["name"].as_str().expect("name");
        let stored = case["cloud_event"].as_str().expect("cloud_event");
        let now = case["now"].as_i64().expect("now");
        // The id the inbox holds beside the stored CloudEvent is the CloudEvent's own.
        let stored_id: Value = serde_json::from_str(stored).expect("stored JSON");
        let id = stored_id["id"].as_str().expect("id");
        let request = dropin::build(stored, id, now).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(
            request.body(),
            case["body"].as_str().expect("body"),
            "{name}"
        );
        let headers: Vec<(String, String)> = request
            .sign(&secret, &mut RustCrypto)
            .into_iter()
            .filter_map(|(name, value)| Some((name.to_string(), value?)))
            .collect();
        let expected: Vec<(String, String)> = case["headers"]
            .as_array()
            .expect("headers")
            .iter()
            .map(|pair| {
                (
                    pair[0].as_str().expect("name").to_string(),
                    pair[1].as_str().expect("value").to_string(),
                )
            })
            .collect();
        assert_eq!(headers, expected, "{name}");
    }
}
