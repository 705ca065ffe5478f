//! Prints the CloudEvent an origin would receive for a Didit payload read from stdin, as
//! authenticated by `X-Signature` and judged by the default risk rules (or `RISK_RULES` from the
//! environment). The timestamp check is skipped by judging at the payload's own time.
//!
//! `cargo run -q -p didit-edge-core --example normalize < payload.json | python3 -m json.tool`

use std::io::Read;

use didit_edge_core::intake::{ClassifyPolicy, Incoming, Intake};
use didit_edge_core::mac::{HmacSha256, RustCrypto};
use didit_edge_core::origin::parse_origins;
use didit_edge_core::risk::RiskRules;
use didit_edge_core::secret::WebhookSecrets;
use didit_edge_core::verify::SignatureHeaders;

fn main() -> Result<(), String> {
    let mut body = Vec::new();
    std::io::stdin()
        .read_to_end(&mut body)
        .map_err(|e| e.to_string())?;
    let rules = match std::env::var("RISK_RULES") {
        Ok(text) => RiskRules::parse(&text).map_err(|e| format!("RISK_RULES {e}"))?,
        Err(_) => RiskRules::default(),
    };
    let timestamp = serde_json::from_slice::<serde_json::Value>(&body)
        .ok()
        .and_then(|v| v["timestamp"].as_i64())
        .ok_or("the payload has no numeric timestamp")?;
    let tag = hex::encode(RustCrypto.tag(b"local", &body));
    let delivery = Incoming {
        body: &body,
        headers: SignatureHeaders {
            signature: Some(&tag),
            ..Default::default()
        },
        test_header: false,
    };
    let origins = parse_origins(r#"[{"name":"origin","url":"https://origin.example"}]"#)
        .map_err(|e| e.to_string())?;
    let policy = ClassifyPolicy {
        risk_rules: &rules,
        origins: &origins,
    };
    let intake = Intake::new(delivery, false).map_err(|r| r.to_string())?;
    let secrets = WebhookSecrets::parse("local").map_err(|e| e.to_string())?;
    let verified = intake
        .verify_with(&secrets, &mut RustCrypto)
        .map_err(|r| r.to_string())?;
    let classified = intake
        .identify(verified, timestamp, 600)
        .and_then(|identified| identified.classify(&policy))
        .map_err(|r| r.to_string())?;
    // Printed as produced: field order as on the wire, the payload byte-identical.
    println!("{}", classified.cloud_event.get());
    Ok(())
}
