//! Prints how long the core takes per delivery, against the cost of one HMAC over the same body
//! (the floor: every delivery must be MACed at least once) measured in the same run.
//!
//! `cargo run --release -p didit-edge-core --example bench`

use std::hint::black_box;
use std::time::Instant;

use didit_edge_core::intake::{Incoming, Intake};
use didit_edge_core::mac::{HmacSha256, RustCrypto};
use didit_edge_core::secret::WebhookSecrets;
use didit_edge_core::verify::SignatureHeaders;

const SECRET: &str = "bench-secret";

/// A realistic v3 body of about `target` bytes: a few feature results, one of them an AML
/// screening whose hit list makes up the size (as large Didit decisions do).
fn body_of_size(target: usize, now: i64) -> String {
    let mut hits = Vec::new();
    let mut size = 0;
    let mut index = 0;
    while size + 900 < target {
        let hit = format!(
            r#"{{"id":"Q{index}","caption":"Zoë Ångström {index}","match":false,"score":0.{index}1,"datasets":["PEP"],"properties":{{"name":["Zoë Ångström"],"country":["es"],"birthDate":["1970-01-01"]}}}}"#
        );
        size += hit.len() + 1;
        hits.push(hit);
        index += 1;
    }
    format!(
        r#"{{"webhook_type":"status.updated","session_id":"s-1","status":"In Review","timestamp":{now},"vendor_data":"u-1","decision":{{"id_verifications":[{{"node_id":"id-1","status":"Approved","document_type":"Passport","first_name":"José","warnings":[]}}],"liveness_checks":[{{"node_id":"live-1","status":"Approved","score":97.5,"warnings":[]}}],"ip_analyses":[{{"node_id":"ip-1","status":"Approved","is_vpn_or_tor":false,"warnings":[]}}],"aml_screenings":[{{"node_id":"aml-1","status":"In Review","total_hits":{index},"score":85.0,"hits":[{}],"warnings":[{{"risk":"POSSIBLE_MATCH_FOUND","log_type":"warning"}}]}}]}}}}"#,
        hits.join(",")
    )
}

/// Median microseconds per call over several rounds.
fn measure(mut call: impl FnMut()) -> f64 {
    let iterations = 200;
    let mut rounds: Vec<f64> = (0..15)
        .map(|_| {
            let start = Instant::now();
            for _ in 0..iterations {
                call();
            }
            start.elapsed().as_secs_f64() * 1e6 / f64::from(iterations)
        })
        .collect();
    rounds.sort_by(f64::total_cmp);
    rounds[rounds.len() / 2]
}

fn main() {
    let now = 1_763_784_000;
    let secrets = WebhookSecrets::parse(SECRET).expect("secret");
    let origins =
        didit_edge_core::origin::parse_origins(r#"[{"name":"main","url":"https://main"}]"#)
            .expect("origins");
    let rules = didit_edge_core::risk::RiskRules::default();
    let policy = didit_edge_core::intake::ClassifyPolicy {
        risk_rules: &rules,
        origins: &origins,
    };
    println!(
        "{:>8} {:>34} {:>10} {:>8}",
        "body", "what", "µs/call", "× HMAC"
    );
    for size in [1_024, 10_240, 102_400] {
        let body = body_of_size(size, now);
        let raw_tag = hex::encode(RustCrypto.tag(SECRET.as_bytes(), body.as_bytes()));
        let v2_message = didit_edge_core::canonical::CanonicalJson::parse(body.as_bytes())
            .expect("canonical")
            .to_string(didit_edge_core::canonical::NonAscii::Escaped);
        let v2_tag = hex::encode(RustCrypto.tag(SECRET.as_bytes(), v2_message.as_bytes()));

        let hmac = measure(|| {
            black_box(RustCrypto.tag(SECRET.as_bytes(), black_box(body.as_bytes())));
        });
        let run = |headers: SignatureHeaders<'_>| {
            let delivery = Incoming {
                body: body.as_bytes(),
                headers,
                test_header: false,
            };
            let intake = Intake::new(delivery, false).expect("intake");
            let verified = intake
                .verify_with(&secrets, &mut RustCrypto)
                .expect("verified");
            let identified = intake.identify(verified, now, 600).expect("identified");
            black_box(identified.classify(&policy).expect("classified"));
        };
        let raw = measure(|| {
            run(SignatureHeaders {
                signature: Some(&raw_tag),
                ..Default::default()
            });
        });
        let v2 = measure(|| {
            run(SignatureHeaders {
                signature_v2: Some(&v2_tag),
                ..Default::default()
            });
        });
        let all_three = measure(|| {
            run(SignatureHeaders {
                signature: Some(&raw_tag),
                signature_v2: Some(&v2_tag),
                signature_simple: Some(&raw_tag),
                timestamp: Some("1763784000"),
            });
        });
        let actual = body.len();
        for (what, micros) in [
            ("HMAC-SHA256 of the body (baseline)", hmac),
            ("intake, X-Signature", raw),
            ("intake, X-Signature-V2 only", v2),
            ("intake, all three headers", all_three),
        ] {
            println!(
                "{actual:>8} {what:>34} {micros:>10.1} {:>8.2}",
                micros / hmac
            );
        }
    }
}
