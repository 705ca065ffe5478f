//! Prints how long the core takes per delivery, against the cost of one HMAC over the same body
//! (the floor: every delivery must be MACed at least once) measured in the same run.
//!
//! `cargo run --release -p didit-edge-core --example bench`

use std::hint::black_box;
use std::time::Instant;

use didit_edge_core::intake::{Delivery, Intake};
use didit_edge_core::mac::{HmacSha256, RustCrypto};
use didit_edge_core::secret::WebhookSecrets;
use didit_edge_core::verify::SignatureHeaders;

const SECRET: &str = "bench-secret";

fn body_of_size(target: usize, now: i64) -> String {
    let mut checks = Vec::new();
    let mut index = 0;
    let mut size = 0;
    while size < target {
        let item = format!(
            r#"{{"node_id":"aml-{index}","status":"Approved","score":{}.0,"name":"Zoë Ångström {index}","hits":[{{"list":"OFAC","match":0.{index}1}}]}}"#,
            index % 100
        );
        size += item.len() + 1;
        checks.push(item);
        index += 1;
    }
    format!(
        r#"{{"webhook_type":"status.updated","session_id":"s-1","status":"Approved","timestamp":{now},"vendor_data":"u-1","decision":{{"aml_screenings":[{}]}}}}"#,
        checks.join(",")
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
        didit_edge_core::config::parse_origins(r#"[{"name":"main","url":"https://main"}]"#)
            .expect("origins");
    let rules = didit_edge_core::risk::RiskRules::default();
    let policy = didit_edge_core::intake::Policy {
        tolerance_secs: 600,
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
            let delivery = Delivery {
                body: body.as_bytes(),
                headers,
                test_header: false,
            };
            let intake = Intake::new(delivery, false).expect("intake");
            let verified = intake
                .verify_with(&secrets, &mut RustCrypto)
                .expect("verified");
            black_box(intake.admit(verified, now, &policy).expect("admitted"));
        };
        let raw = measure(|| {
            run(SignatureHeaders {
                signature: Some(&raw_tag),
                ..Default::default()
            })
        });
        let v2 = measure(|| {
            run(SignatureHeaders {
                signature_v2: Some(&v2_tag),
                ..Default::default()
            })
        });
        let all_three = measure(|| {
            run(SignatureHeaders {
                signature: Some(&raw_tag),
                signature_v2: Some(&v2_tag),
                signature_simple: Some(&raw_tag),
                timestamp: Some("1763784000"),
            })
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
