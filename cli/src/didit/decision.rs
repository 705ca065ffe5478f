//! The `decision` object of a session payload: which features a session with this status ran,
//! which of them fail, and how each payload version writes them.

use serde_json::{json, Map, Value};

use super::payload::{Failing, PayloadSpec, PayloadVersion};
use crate::error::{Failure, Result};

/// A warning as Didit writes it.
fn warning(risk: &str, log_type: &str, node_id: Option<&str>, feature: &str) -> Value {
    json!({
        "feature": feature,
        "risk": risk,
        "additional_data": null,
        "log_type": log_type,
        "short_description": risk.replace('_', " ").to_lowercase(),
        "long_description": "…",
        "node_id": node_id,
    })
}

/// How a failing feature fails.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Outcome {
    Declined,
    InReview,
}

/// One feature's result: (v3 array key, v2 key, v1 key, the item).
struct Feature {
    v3: &'static str,
    v2: &'static str,
    v1: Option<&'static str>,
    item: Value,
}

/// A failure that was asked for (`--fail`), which a payload version must be able to carry.
struct Chosen(bool);

fn approved_features() -> Vec<Feature> {
    // The decision of `tests/didit.py`'s `session_payload`.
    vec![
        Feature {
            v3: "id_verifications",
            v2: "id_verification",
            v1: Some("kyc"),
            item: json!({"node_id": "id-1", "status": "Approved", "first_name": "Zoë",
                         "last_name": "Ångström-Müller", "document_type": "Passport", "age": 34.0,
                         "ocr_confidence": 0.98765}),
        },
        Feature {
            v3: "liveness_checks",
            v2: "liveness",
            v1: None,
            item: json!({"node_id": "live-1", "status": "Approved", "score": 99.5}),
        },
        Feature {
            v3: "face_matches",
            v2: "face_match",
            v1: Some("face"),
            item: json!({"node_id": "face-1", "status": "Approved", "score": 97.0}),
        },
    ]
}

fn aml_hits(count: usize) -> Value {
    Value::Array(
        (0..count)
            .map(|i| {
                json!({"id": format!("Q{i}"), "caption": format!("Person {i} Ångström"),
                       "match": false, "score": 0.42, "datasets": ["PEP"],
                       "properties": {"name": [format!("Person {i}")], "country": ["es"]},
                       "review_status": "Unreviewed"})
            })
            .collect(),
    )
}

fn failing_feature(failing: Failing, outcome: Outcome) -> Feature {
    let declined = outcome == Outcome::Declined;
    let status = if declined { "Declined" } else { "In Review" };
    let log_type = if declined { "error" } else { "warning" };
    match failing {
        Failing::Document => Feature {
            v3: "id_verifications",
            v2: "id_verification",
            v1: Some("kyc"),
            item: json!({"node_id": "id-1", "status": status, "first_name": "Zoë",
                         "last_name": "Ångström-Müller", "document_type": "Passport", "age": 34.0,
                         "expiration_date": "2023-04-11", "ocr_confidence": 0.98765,
                         "warnings": [warning("DOCUMENT_EXPIRED", log_type, Some("id-1"), "ID_VERIFICATION")]}),
        },
        Failing::Liveness => Feature {
            v3: "liveness_checks",
            v2: "liveness",
            v1: None,
            item: if declined {
                json!({"node_id": "live-1", "status": "Declined", "method": "PASSIVE", "score": 12.0,
                       "warnings": [warning("LIVENESS_FACE_ATTACK", "error", Some("live-1"), "LIVENESS")]})
            } else {
                json!({"node_id": "live-1", "status": "In Review", "method": "PASSIVE", "score": 55.0,
                       "warnings": [warning("LOW_LIVENESS_SCORE", "warning", Some("live-1"), "LIVENESS")]})
            },
        },
        Failing::FaceMatch => Feature {
            v3: "face_matches",
            v2: "face_match",
            v1: Some("face"),
            item: json!({"node_id": "face-1", "status": status,
                         "score": if declined { 21.0 } else { 62.0 },
                         "warnings": [warning("LOW_FACE_MATCH_SIMILARITY", log_type, Some("face-1"), "FACEMATCH")]}),
        },
        Failing::Aml => Feature {
            v3: "aml_screenings",
            v2: "aml",
            v1: Some("aml"),
            item: if declined {
                json!({"node_id": "aml-1", "status": "Declined", "total_hits": 3, "score": 100.0,
                       "hits": aml_hits(3), "warnings": []})
            } else {
                json!({"node_id": "aml-1", "status": "In Review", "total_hits": 1, "score": 88.0,
                       "hits": aml_hits(1),
                       "warnings": [warning("POSSIBLE_MATCH_FOUND", "warning", Some("aml-1"), "AML")]})
            },
        },
        Failing::Ip => Feature {
            v3: "ip_analyses",
            v2: "ip_analysis",
            v1: Some("location"),
            item: json!({"node_id": "ip-1", "status": "Approved", "ip_address": "203.0.113.7",
                         "ip_country_code": "ES", "is_vpn_or_tor": true, "is_data_center": false,
                         "warnings": [warning("PRIVATE_NETWORK_DETECTED", "information", Some("ip-1"), "LOCATION")]}),
        },
        Failing::Email => Feature {
            v3: "email_verifications",
            v2: "email",
            v1: None,
            item: json!({"node_id": "email-1", "status": status, "email": "x@mailinator.example",
                         "is_disposable": true, "warnings": []}),
        },
        Failing::Phone => Feature {
            v3: "phone_verifications",
            v2: "phone",
            v1: None,
            item: json!({"node_id": "phone-1", "status": status, "phone_number": "+15550100",
                         "is_virtual": true, "warnings": []}),
        },
        Failing::Database => Feature {
            v3: "database_validations",
            v2: "database_validation",
            v1: None,
            item: json!({"node_id": "db-1", "status": status,
                         "match_type": if declined { "no_match" } else { "partial" },
                         "warnings": [warning(if declined { "DATABASE_VALIDATION_NO_MATCH" }
                                              else { "DATABASE_VALIDATION_PARTIAL_MATCH" },
                                              log_type, Some("db-1"), "DATABASE_VALIDATION")]}),
        },
        Failing::Poa => Feature {
            v3: "poa_verifications",
            v2: "poa",
            v1: None,
            item: json!({"node_id": "poa-1", "status": status, "document_type": "Utility Bill",
                         "warnings": []}),
        },
    }
}

/// The decision object for a session, in the chosen payload version.
pub(super) fn decision(spec: &PayloadSpec, status: &str) -> Result<Option<Value>> {
    let outcome = if status == "In Review" {
        Outcome::InReview
    } else {
        Outcome::Declined
    };
    let mut features: Vec<Feature> = match status {
        "Approved" | "Declined" | "In Review" => approved_features(),
        "Abandoned" => vec![
            Feature {
                v3: "id_verifications",
                v2: "id_verification",
                v1: Some("kyc"),
                item: json!({"node_id": "id-1", "status": "Not Finished", "document_type": "Passport"}),
            },
            Feature {
                v3: "liveness_checks",
                v2: "liveness",
                v1: None,
                item: json!({"node_id": "live-1", "status": "Not Finished", "score": null}),
            },
        ],
        _ if spec.failing.is_empty() => return Ok(None),
        _ => Vec::new(),
    };
    if spec.kyb {
        features = vec![
            Feature {
                v3: "registry_checks",
                v2: "registry_check",
                v1: None,
                item: json!({"node_id": "reg-1", "status": "Approved",
                             "company_name": "Müller & Söhne GmbH",
                             "registration_number": "HRB 12345", "warnings": []}),
            },
            Feature {
                v3: "aml_screenings",
                v2: "aml",
                v1: Some("aml"),
                item: json!({"node_id": "aml-1", "status": "Approved", "total_hits": 0,
                             "score": 0.0, "hits": [], "warnings": []}),
            },
        ];
    }
    let mut failing = spec.failing.clone();
    if failing.is_empty() && !spec.kyb {
        // A declined session fails somewhere; an in-review one waits on something.
        match status {
            "Declined" => failing.push(Failing::Liveness),
            "In Review" => failing.push(Failing::Aml),
            _ => {}
        }
    }
    let mut features: Vec<(Feature, Chosen)> =
        features.into_iter().map(|f| (f, Chosen(false))).collect();
    for failing in failing {
        let feature = failing_feature(failing, outcome);
        let chosen = Chosen(spec.failing.contains(&failing));
        match features.iter_mut().find(|(f, _)| f.v3 == feature.v3) {
            Some(existing) => *existing = (feature, chosen),
            None => features.push((feature, chosen)),
        }
    }
    let mut decision = Map::new();
    for (feature, Chosen(chosen)) in features {
        match spec.version {
            PayloadVersion::V3 => {
                let list = decision
                    .entry(feature.v3)
                    .or_insert_with(|| Value::Array(Vec::new()));
                if let Value::Array(items) = list {
                    items.push(feature.item);
                }
            }
            PayloadVersion::V2 | PayloadVersion::V1 => {
                let key = match (spec.version, feature.v1) {
                    (PayloadVersion::V2, _) => feature.v2,
                    (_, Some(v1)) => v1,
                    (_, None) if chosen => {
                        return Err(Failure::usage(format!(
                            "payload version v1 has no `{}` (v1 knows kyc, face, aml, location)",
                            feature.v2
                        )))
                    }
                    (_, None) => continue,
                };
                let mut item = feature.item;
                if let Value::Object(fields) = &mut item {
                    fields.remove("node_id");
                }
                decision.insert(key.to_owned(), item);
            }
        }
    }
    Ok(Some(Value::Object(decision)))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    const EVENTS: &str = include_str!("../../../tests/fixtures/events.json");

    #[test]
    fn outcomes_shape_the_decision_as_the_fixtures_do() {
        let fixtures: Value = serde_json::from_str(EVENTS).expect("events.json");
        let fixture = |name: &str| {
            fixtures["cases"]
                .as_array()
                .expect("cases")
                .iter()
                .find(|c| c["name"] == name)
                .map(|c| c["payload"].clone())
                .expect("fixture")
        };
        let spec = |status: &str, failing: Vec<Failing>, version| PayloadSpec {
            webhook_type: "status.updated".into(),
            status: Some(status.into()),
            previous_status: None,
            version,
            failing,
            kyb: false,
            test: false,
            session_id: None,
            vendor_data: None,
            business_id: None,
            transaction_id: None,
            event_id: None,
            timestamp: None,
            set: vec![],
        };
        // Declined with a presentation attack, as in the fixture: the same warning tags.
        let declined = spec(
            "declined",
            vec![Failing::Liveness, Failing::Aml],
            PayloadVersion::V3,
        )
        .build(1)
        .expect("builds");
        let expected = fixture("v3_declined_many_failures");
        assert_eq!(declined["status"], "Declined");
        assert_eq!(
            declined["decision"]["liveness_checks"][0]["warnings"][0]["risk"],
            expected["decision"]["liveness_checks"][0]["warnings"][0]["risk"]
        );
        assert_eq!(declined["decision"]["aml_screenings"][0]["total_hits"], 3);
        // v2 uses singular keys without node ids; v1 Didit's first names.
        let v2 = spec("Declined", vec![Failing::Document], PayloadVersion::V2)
            .build(1)
            .expect("v2");
        assert_eq!(
            v2["decision"]["id_verification"]["warnings"][0]["risk"],
            "DOCUMENT_EXPIRED"
        );
        assert!(v2["decision"]["id_verification"].get("node_id").is_none());
        let v1 = spec("approved", vec![], PayloadVersion::V1)
            .build(1)
            .expect("v1");
        let keys: Vec<&String> = v1["decision"]
            .as_object()
            .expect("decision")
            .keys()
            .collect();
        assert_eq!(keys, ["face", "kyc"], "v1 has no liveness: left out");
        let v1 = spec("declined", vec![Failing::FaceMatch], PayloadVersion::V1)
            .build(1)
            .expect("v1");
        assert_eq!(v1["decision"]["face"]["status"], "Declined");
        let v1 = spec("declined", vec![Failing::Liveness], PayloadVersion::V1);
        assert!(
            v1.build(1).is_err(),
            "a chosen failure v1 cannot carry is refused, not dropped"
        );
        // In review waits on AML by default; statuses are spelled as Didit spells them.
        let review = spec("in-review", vec![], PayloadVersion::V3)
            .build(1)
            .expect("review");
        assert_eq!(review["status"], "In Review");
        assert_eq!(
            review["decision"]["aml_screenings"][0]["status"],
            "In Review"
        );
        let resubmitted = spec("resubmitted", vec![], PayloadVersion::V3)
            .build(1)
            .expect("ok");
        assert!(resubmitted.get("decision").is_none());
        assert_eq!(
            resubmitted["resubmit_info"]["nodes_to_resubmit"],
            json!(["id-1"])
        );
        let in_progress = spec("In Progress", vec![], PayloadVersion::V3)
            .build(1)
            .expect("ok");
        assert!(in_progress.get("decision").is_none());
    }
}
