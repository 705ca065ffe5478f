//! One event schema for every Didit payload version and event type.
//!
//! Origins read these fields and never Didit's three payload versions: v3 keeps arrays of
//! feature results keyed by `node_id` (`id_verifications[]`, `liveness_checks[]`, …), v2 one
//! object per feature (`id_verification`, `liveness`, …), v1 `kyc`, `aml`, `face`, `location`.
//! Each becomes a [`FeatureResult`] with its status, score, warnings and key findings. Findings
//! are deliberately non-identifying (flags, scores, document type and issuing state); names,
//! document numbers and images stay in the original payload, which travels untouched beside them.
//! Unknown feature keys, fields and event types are carried through in the payload, never refused.

use alloc::collections::BTreeMap;
use alloc::string::String;
use alloc::vec::Vec;
use serde::Serialize;
use serde_json::Value;

/// Which Didit payload version a body is, judged from its decision's shape.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum PayloadVersion {
    /// Arrays keyed by `node_id`.
    V3,
    /// One object per feature, singular keys.
    V2,
    /// `kyc`, `aml`, `face`, `location`.
    V1,
}

/// Where each feature's results live, per version: (decision key, feature name, version).
const FEATURE_KEYS: &[(&str, &str, PayloadVersion)] = &[
    ("id_verifications", "id_verification", PayloadVersion::V3),
    ("nfc_verifications", "nfc", PayloadVersion::V3),
    ("liveness_checks", "liveness", PayloadVersion::V3),
    ("face_matches", "face_match", PayloadVersion::V3),
    ("phone_verifications", "phone", PayloadVersion::V3),
    ("email_verifications", "email", PayloadVersion::V3),
    ("poa_verifications", "proof_of_address", PayloadVersion::V3),
    ("aml_screenings", "aml", PayloadVersion::V3),
    ("ip_analyses", "ip_analysis", PayloadVersion::V3),
    (
        "database_validations",
        "database_validation",
        PayloadVersion::V3,
    ),
    ("registry_checks", "registry_check", PayloadVersion::V3),
    ("reviews", "review", PayloadVersion::V3),
    ("id_verification", "id_verification", PayloadVersion::V2),
    ("nfc", "nfc", PayloadVersion::V2),
    ("liveness", "liveness", PayloadVersion::V2),
    ("face_match", "face_match", PayloadVersion::V2),
    ("phone", "phone", PayloadVersion::V2),
    ("email", "email", PayloadVersion::V2),
    ("poa", "proof_of_address", PayloadVersion::V2),
    ("ip_analysis", "ip_analysis", PayloadVersion::V2),
    (
        "database_validation",
        "database_validation",
        PayloadVersion::V2,
    ),
    ("kyc", "id_verification", PayloadVersion::V1),
    ("face", "face_match", PayloadVersion::V1),
    ("location", "ip_analysis", PayloadVersion::V1),
    // `aml` is the same key in v1 and v2; it does not decide the version on its own.
    ("aml", "aml", PayloadVersion::V2),
];

/// Numeric findings copied when present.
const NUMBER_FINDINGS: &[&str] = &[
    "score",
    "total_hits",
    "match_score",
    "risk_score",
    "age_estimation",
];
/// Short, non-identifying text findings copied when present.
const TEXT_FINDINGS: &[&str] = &[
    "document_type",
    "issuing_state",
    "method",
    "ip_country_code",
    "line_type",
];

/// A Didit status as written and as a stable code (`In Review` → `in_review`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Status {
    /// As Didit wrote it.
    pub text: String,
    /// Lowercase, words joined by `_`: stable across Didit's casing (`FLAGGED`, `Kyc Expired`).
    pub code: String,
}

impl Status {
    /// Reads a status string.
    pub fn of(text: &str) -> Self {
        Self {
            text: text.into(),
            code: status_code(text),
        }
    }
}

/// `In Review` → `in_review`, `FLAGGED` → `flagged`, `Not-Finished` → `not_finished`.
pub fn status_code(text: &str) -> String {
    let mut code = String::with_capacity(text.len());
    for word in text
        .split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
    {
        if !code.is_empty() {
            code.push('_');
        }
        code.extend(word.chars().flat_map(char::to_lowercase));
    }
    code
}

/// One warning Didit attached to a feature result.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Warning {
    /// Didit's risk tag (`PRIVATE_NETWORK_DETECTED`, `LOW_LIVENESS_SCORE`, …).
    pub risk: String,
    /// `error` (declined the step), `warning` (sent it to review) or `information`.
    pub log_type: Option<String>,
}

/// One feature result (one node of a v3 workflow, or one v1/v2 feature object).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct FeatureResult {
    /// `id_verification`, `liveness`, `face_match`, `aml`, `phone`, `email`,
    /// `proof_of_address`, `ip_analysis`, `database_validation`, `nfc`, `registry_check`, `review`.
    pub feature: &'static str,
    /// The workflow node (v3), when given.
    pub node_id: Option<String>,
    /// The feature's own status, when given.
    pub status: Option<Status>,
    /// The feature's score, when given.
    pub score: Option<f64>,
    /// Didit's warnings on this result.
    pub warnings: Vec<Warning>,
    /// Key findings: every `is_*` flag, scores and hit counts, document type and issuing state.
    pub findings: BTreeMap<String, Value>,
}

/// What the decision of a payload says, feature by feature.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct DecisionSummary {
    /// Every feature result, in Didit's order within each feature.
    pub features: Vec<FeatureResult>,
}

/// Detects the payload version from a decision's keys.
pub fn payload_version(decision: &Value) -> Option<PayloadVersion> {
    let object = decision.as_object()?;
    let has = |version: PayloadVersion, ignore_aml: bool| {
        FEATURE_KEYS.iter().any(|(key, _, v)| {
            *v == version && !(ignore_aml && *key == "aml") && object.contains_key(*key)
        })
    };
    if has(PayloadVersion::V3, false) {
        Some(PayloadVersion::V3)
    } else if has(PayloadVersion::V1, false) {
        Some(PayloadVersion::V1)
    } else if has(PayloadVersion::V2, false) {
        Some(PayloadVersion::V2)
    } else {
        None
    }
}

/// Summarizes a decision of any version.
pub fn summarize(decision: &Value) -> DecisionSummary {
    let Some(object) = decision.as_object() else {
        return DecisionSummary::default();
    };
    let version = payload_version(decision);
    let mut features = Vec::new();
    for (key, feature, key_version) in FEATURE_KEYS {
        // `aml` belongs to whichever of v1/v2 the rest of the decision is.
        let applies = *key == "aml" || Some(*key_version) == version || version.is_none();
        let Some(value) = object.get(*key).filter(|_| applies) else {
            continue;
        };
        match value {
            Value::Array(items) => {
                features.extend(
                    items
                        .iter()
                        .filter_map(|item| feature_result(feature, item)),
                );
            }
            Value::Object(_) => features.extend(feature_result(feature, value)),
            _ => {}
        }
    }
    DecisionSummary { features }
}

fn feature_result(feature: &'static str, item: &Value) -> Option<FeatureResult> {
    let object = item.as_object()?;
    let text = |key: &str| object.get(key).and_then(Value::as_str).map(String::from);
    let mut findings = BTreeMap::new();
    for (key, value) in object {
        if key.starts_with("is_") && value.is_boolean() {
            findings.insert(key.clone(), value.clone());
        }
    }
    for key in NUMBER_FINDINGS {
        if let Some(value) = object.get(*key).filter(|v| v.is_number()) {
            findings.insert(String::from(*key), value.clone());
        }
    }
    for key in TEXT_FINDINGS {
        if let Some(value) = object.get(*key).filter(|v| v.is_string()) {
            findings.insert(String::from(*key), value.clone());
        }
    }
    let warnings = object
        .get("warnings")
        .and_then(Value::as_array)
        .map(|list| list.iter().filter_map(warning).collect())
        .unwrap_or_default();
    Some(FeatureResult {
        feature,
        node_id: text("node_id"),
        status: object.get("status").and_then(Value::as_str).map(Status::of),
        score: object.get("score").and_then(Value::as_f64),
        warnings,
        findings,
    })
}

fn warning(value: &Value) -> Option<Warning> {
    match value {
        Value::String(risk) => Some(Warning {
            risk: risk.clone(),
            log_type: None,
        }),
        Value::Object(object) => Some(Warning {
            risk: object.get("risk").and_then(Value::as_str)?.into(),
            log_type: object
                .get("log_type")
                .and_then(Value::as_str)
                .map(String::from),
        }),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    use super::*;
    use serde_json::json;

    #[test]
    fn status_codes_are_stable() {
        for (text, code) in [
            ("In Review", "in_review"),
            ("FLAGGED", "flagged"),
            ("Kyc Expired", "kyc_expired"),
            ("Not Started", "not_started"),
            ("  Awaiting  User ", "awaiting_user"),
            ("Not-Finished", "not_finished"),
        ] {
            assert_eq!(status_code(text), code);
        }
    }

    #[test]
    fn detects_versions() {
        assert_eq!(
            payload_version(&json!({"id_verifications": []})),
            Some(PayloadVersion::V3)
        );
        assert_eq!(
            payload_version(&json!({"liveness": {}, "aml": {}})),
            Some(PayloadVersion::V2)
        );
        assert_eq!(
            payload_version(&json!({"kyc": {}, "aml": {}})),
            Some(PayloadVersion::V1)
        );
        assert_eq!(
            payload_version(&json!({"aml": {}})),
            Some(PayloadVersion::V2)
        );
        assert_eq!(payload_version(&json!({"something_new": {}})), None);
        assert_eq!(payload_version(&json!(null)), None);
    }

    #[test]
    fn v3_items_become_feature_results() {
        let decision = json!({
            "ip_analyses": [{"node_id": "ip-1", "status": "Declined", "is_vpn_or_tor": true,
                "ip_country_code": "NL", "ip_address": "45.61.20.5",
                "warnings": [{"risk": "PRIVATE_NETWORK_DETECTED", "log_type": "warning", "node_id": "ip-1"}]}],
            "aml_screenings": [{"node_id": "aml-1", "status": "In Review", "total_hits": 2, "score": 88.5}],
            "unknown_feature": [{"status": "Approved"}]
        });
        let summary = summarize(&decision);
        assert_eq!(summary.features.len(), 2);
        let aml = &summary.features[0];
        assert_eq!(
            (aml.feature, aml.status.as_ref().map(|s| s.code.as_str())),
            ("aml", Some("in_review"))
        );
        assert_eq!(aml.score, Some(88.5));
        assert_eq!(aml.findings.get("total_hits"), Some(&json!(2)));
        let ip = &summary.features[1];
        assert_eq!(ip.node_id.as_deref(), Some("ip-1"));
        assert_eq!(ip.findings.get("is_vpn_or_tor"), Some(&json!(true)));
        assert!(
            !ip.findings.contains_key("ip_address"),
            "identifying data stays in the payload"
        );
        assert_eq!(
            ip.warnings,
            [Warning {
                risk: "PRIVATE_NETWORK_DETECTED".into(),
                log_type: Some("warning".into())
            }]
        );
    }

    #[test]
    fn v1_and_v2_objects_map_to_the_same_features() {
        let v2 = summarize(
            &json!({"id_verification": {"status": "Approved", "document_type": "Passport"},
                                   "face_match": {"status": "Declined", "score": 12.0}, "aml": {"status": "Approved", "total_hits": 0}}),
        );
        let names: Vec<&str> = v2.features.iter().map(|f| f.feature).collect();
        assert_eq!(names, ["id_verification", "face_match", "aml"]);
        let v1 = summarize(
            &json!({"kyc": {"status": "Approved"}, "face": {"status": "Approved"},
                                   "location": {"status": "Approved", "is_vpn_or_tor": false}, "aml": {"status": "Approved"}}),
        );
        let names: Vec<&str> = v1.features.iter().map(|f| f.feature).collect();
        assert_eq!(
            names,
            ["id_verification", "face_match", "ip_analysis", "aml"]
        );
    }

    #[test]
    fn odd_shapes_are_skipped_not_fatal() {
        let summary = summarize(
            &json!({"liveness_checks": [1, null, "x", {"status": 5, "warnings": [3, {"no_risk": 1}, "TAG"]}]}),
        );
        assert_eq!(summary.features.len(), 1);
        assert_eq!(summary.features[0].status, None);
        assert_eq!(
            summary.features[0].warnings,
            [Warning {
                risk: "TAG".into(),
                log_type: None
            }]
        );
    }
}
