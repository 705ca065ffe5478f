//! The features a session runs, each result as Didit reports it in a `decision`: the approved
//! results of `tests/didit.py`'s `session_payload`, an abandoned session's unfinished ones, a
//! business session's checks, and every [`Failing`] feature declined or held for review.

use serde_json::{json, Value};

use super::payload::Failing;

/// Where a feature's result goes in each payload version's `decision`.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) struct Slot {
    /// v3: a list of results under a plural key.
    pub(super) v3: &'static str,
    /// v2: one result under a singular key.
    pub(super) v2: &'static str,
    /// v1: one result under Didit's first name for it; `None` for the features v1 does not have.
    pub(super) v1: Option<&'static str>,
}

const ID_VERIFICATION: Slot = Slot {
    v3: "id_verifications",
    v2: "id_verification",
    v1: Some("kyc"),
};
const LIVENESS: Slot = Slot {
    v3: "liveness_checks",
    v2: "liveness",
    v1: None,
};
const FACE_MATCH: Slot = Slot {
    v3: "face_matches",
    v2: "face_match",
    v1: Some("face"),
};
const AML: Slot = Slot {
    v3: "aml_screenings",
    v2: "aml",
    v1: Some("aml"),
};
const IP_ANALYSIS: Slot = Slot {
    v3: "ip_analyses",
    v2: "ip_analysis",
    v1: Some("location"),
};
const EMAIL: Slot = Slot {
    v3: "email_verifications",
    v2: "email",
    v1: None,
};
const PHONE: Slot = Slot {
    v3: "phone_verifications",
    v2: "phone",
    v1: None,
};
const DATABASE_VALIDATION: Slot = Slot {
    v3: "database_validations",
    v2: "database_validation",
    v1: None,
};
const POA: Slot = Slot {
    v3: "poa_verifications",
    v2: "poa",
    v1: None,
};
const REGISTRY_CHECK: Slot = Slot {
    v3: "registry_checks",
    v2: "registry_check",
    v1: None,
};

/// One feature's result, and where it goes.
pub(super) struct Feature {
    pub(super) slot: Slot,
    pub(super) item: Value,
}

/// How a failing feature fails.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Outcome {
    Declined,
    InReview,
}

impl Outcome {
    /// The failing feature's `status`.
    fn status(self) -> &'static str {
        match self {
            Self::Declined => "Declined",
            Self::InReview => "In Review",
        }
    }

    /// The `log_type` of its warnings.
    fn log_type(self) -> &'static str {
        match self {
            Self::Declined => "error",
            Self::InReview => "warning",
        }
    }
}

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

/// The decision of `tests/didit.py`'s `session_payload`: every check a KYC session runs, passed.
pub(super) fn approved_features() -> Vec<Feature> {
    vec![
        Feature {
            slot: ID_VERIFICATION,
            item: json!({"node_id": "id-1", "status": "Approved", "first_name": "Zoë",
                         "last_name": "Ångström-Müller", "document_type": "Passport", "age": 34.0,
                         "ocr_confidence": 0.98765}),
        },
        Feature {
            slot: LIVENESS,
            item: json!({"node_id": "live-1", "status": "Approved", "score": 99.5}),
        },
        Feature {
            slot: FACE_MATCH,
            item: json!({"node_id": "face-1", "status": "Approved", "score": 97.0}),
        },
    ]
}

/// An abandoned session: the checks the user never finished.
pub(super) fn abandoned_features() -> Vec<Feature> {
    vec![
        Feature {
            slot: ID_VERIFICATION,
            item: json!({"node_id": "id-1", "status": "Not Finished", "document_type": "Passport"}),
        },
        Feature {
            slot: LIVENESS,
            item: json!({"node_id": "live-1", "status": "Not Finished", "score": null}),
        },
    ]
}

/// A KYB session's checks, passed: the company registry and AML screening.
pub(super) fn business_features() -> Vec<Feature> {
    vec![
        Feature {
            slot: REGISTRY_CHECK,
            item: json!({"node_id": "reg-1", "status": "Approved",
                         "company_name": "Müller & Söhne GmbH",
                         "registration_number": "HRB 12345", "warnings": []}),
        },
        Feature {
            slot: AML,
            item: json!({"node_id": "aml-1", "status": "Approved", "total_hits": 0,
                         "score": 0.0, "hits": [], "warnings": []}),
        },
    ]
}

/// `failing`'s result in a session that ends as `outcome`.
pub(super) fn failing_feature(failing: Failing, outcome: Outcome) -> Feature {
    let (slot, item) = match failing {
        Failing::Document => (ID_VERIFICATION, expired_document(outcome)),
        Failing::Liveness => (LIVENESS, failed_liveness(outcome)),
        Failing::FaceMatch => (FACE_MATCH, weak_face_match(outcome)),
        Failing::Aml => (AML, aml_match(outcome)),
        Failing::Ip => (IP_ANALYSIS, vpn_or_tor_ip()),
        Failing::Email => (EMAIL, disposable_email(outcome)),
        Failing::Phone => (PHONE, virtual_phone(outcome)),
        Failing::Database => (DATABASE_VALIDATION, unmatched_database(outcome)),
        Failing::Poa => (POA, failed_proof_of_address(outcome)),
    };
    Feature { slot, item }
}

fn expired_document(outcome: Outcome) -> Value {
    json!({"node_id": "id-1", "status": outcome.status(), "first_name": "Zoë",
           "last_name": "Ångström-Müller", "document_type": "Passport", "age": 34.0,
           "expiration_date": "2023-04-11", "ocr_confidence": 0.98765,
           "warnings": [warning("DOCUMENT_EXPIRED", outcome.log_type(), Some("id-1"), "ID_VERIFICATION")]})
}

/// A presentation attack when declined, a low score when held for review.
fn failed_liveness(outcome: Outcome) -> Value {
    match outcome {
        Outcome::Declined => {
            json!({"node_id": "live-1", "status": "Declined", "method": "PASSIVE", "score": 12.0,
                   "warnings": [warning("LIVENESS_FACE_ATTACK", "error", Some("live-1"), "LIVENESS")]})
        }
        Outcome::InReview => {
            json!({"node_id": "live-1", "status": "In Review", "method": "PASSIVE", "score": 55.0,
                   "warnings": [warning("LOW_LIVENESS_SCORE", "warning", Some("live-1"), "LIVENESS")]})
        }
    }
}

fn weak_face_match(outcome: Outcome) -> Value {
    let score = match outcome {
        Outcome::Declined => 21.0,
        Outcome::InReview => 62.0,
    };
    json!({"node_id": "face-1", "status": outcome.status(), "score": score,
           "warnings": [warning("LOW_FACE_MATCH_SIMILARITY", outcome.log_type(), Some("face-1"), "FACEMATCH")]})
}

/// Three hits when declined; one possible match when held for review.
fn aml_match(outcome: Outcome) -> Value {
    match outcome {
        Outcome::Declined => {
            json!({"node_id": "aml-1", "status": "Declined", "total_hits": 3, "score": 100.0,
                   "hits": aml_hits(3), "warnings": []})
        }
        Outcome::InReview => {
            json!({"node_id": "aml-1", "status": "In Review", "total_hits": 1, "score": 88.0,
                   "hits": aml_hits(1),
                   "warnings": [warning("POSSIBLE_MATCH_FOUND", "warning", Some("aml-1"), "AML")]})
        }
    }
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

/// A VPN or Tor exit: the check itself stays approved, with an `information` warning, whatever
/// the session's outcome.
fn vpn_or_tor_ip() -> Value {
    json!({"node_id": "ip-1", "status": "Approved", "ip_address": "203.0.113.7",
           "ip_country_code": "ES", "is_vpn_or_tor": true, "is_data_center": false,
           "warnings": [warning("PRIVATE_NETWORK_DETECTED", "information", Some("ip-1"), "LOCATION")]})
}

fn disposable_email(outcome: Outcome) -> Value {
    json!({"node_id": "email-1", "status": outcome.status(), "email": "x@mailinator.example",
           "is_disposable": true, "warnings": []})
}

fn virtual_phone(outcome: Outcome) -> Value {
    json!({"node_id": "phone-1", "status": outcome.status(), "phone_number": "+15550100",
           "is_virtual": true, "warnings": []})
}

/// No match when declined, a partial one when held for review.
fn unmatched_database(outcome: Outcome) -> Value {
    let (match_type, risk) = match outcome {
        Outcome::Declined => ("no_match", "DATABASE_VALIDATION_NO_MATCH"),
        Outcome::InReview => ("partial", "DATABASE_VALIDATION_PARTIAL_MATCH"),
    };
    json!({"node_id": "db-1", "status": outcome.status(), "match_type": match_type,
           "warnings": [warning(risk, outcome.log_type(), Some("db-1"), "DATABASE_VALIDATION")]})
}

fn failed_proof_of_address(outcome: Outcome) -> Value {
    json!({"node_id": "poa-1", "status": outcome.status(), "document_type": "Utility Bill",
           "warnings": []})
}
