//! One event schema for every Didit payload version and event type.
//!
//! Origins read these fields and never Didit's three payload versions: v3 keeps arrays of
//! feature results keyed by `node_id` (`id_verifications[]`, `liveness_checks[]`, …), v2 one
//! object per feature (`id_verification`, `liveness`, …), v1 `kyc`, `aml`, `face`, `location`.
//! Each becomes a [`FeatureResult`] with its status, score, warnings and key findings. Findings
//! are deliberately non-identifying (flags, scores, document type and issuing state); names,
//! document numbers and images stay in the original payload, which travels untouched beside them.
//! Unknown feature keys, fields and event types are carried through in the payload, never refused.

use alloc::borrow::Cow;
use alloc::collections::BTreeMap;
use alloc::string::String;
use alloc::vec::Vec;
use core::fmt;
use serde::de::{Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::lenient::{scalars_yield, skip_seq};

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
        // The standard library's `char::to_lowercase`, from a smaller table (`crate::unicode`).
        for c in word.chars() {
            crate::unicode::push_lowercase(c, &mut code);
        }
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

/// A decision read straight from the payload's text: only the fields a summary needs are
/// kept, everything else (AML hit lists, extracted document data, image URLs) is skipped by the
/// parser without being built, so a decision of hundreds of KB costs little more than reading it.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Decision {
    /// The payload version the decision's keys tell.
    pub version: Option<PayloadVersion>,
    /// The feature results.
    pub summary: DecisionSummary,
}

/// Detects the payload version from a decision's keys.
pub fn payload_version(decision: &Value) -> Option<PayloadVersion> {
    Decision::deserialize(decision).ok().and_then(|d| d.version)
}

/// Summarizes a decision of any version held as a `Value`.
pub fn summarize(decision: &Value) -> DecisionSummary {
    Decision::deserialize(decision)
        .map(|d| d.summary)
        .unwrap_or_default()
}

fn version_of(keys: &[usize]) -> Option<PayloadVersion> {
    let has = |version: PayloadVersion| {
        keys.iter().any(|&i| {
            FEATURE_KEYS
                .get(i)
                .is_some_and(|(key, _, v)| *v == version && *key != "aml")
        })
    };
    if has(PayloadVersion::V3) {
        Some(PayloadVersion::V3)
    } else if has(PayloadVersion::V1) {
        Some(PayloadVersion::V1)
    } else if keys.iter().any(|&i| {
        FEATURE_KEYS
            .get(i)
            .is_some_and(|(_, _, v)| *v == PayloadVersion::V2)
    }) {
        Some(PayloadVersion::V2)
    } else {
        None
    }
}

impl<'de> Deserialize<'de> for Decision {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct DecisionVisitor;
        impl<'de> Visitor<'de> for DecisionVisitor {
            type Value = Decision;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a Didit decision")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Decision, A::Error> {
                let mut found: Vec<(usize, Vec<ItemFields>)> = Vec::new();
                while let Some(key) = map.next_key::<Cow<'de, str>>()? {
                    match FEATURE_KEYS.iter().position(|(k, _, _)| *k == key) {
                        Some(index) => found.push((index, map.next_value::<Items>()?.0)),
                        None => {
                            map.next_value::<IgnoredAny>()?;
                        }
                    }
                }
                let keys: Vec<usize> = found.iter().map(|(i, _)| *i).collect();
                let version = version_of(&keys);
                // Results in a fixed feature order; `aml` belongs to whichever of v1/v2 the rest is.
                crate::sorted::sort_by_key(&mut found, |(index, _)| *index);
                let mut features = Vec::new();
                for (index, items) in found {
                    let Some((key, feature, key_version)) = FEATURE_KEYS.get(index) else {
                        continue;
                    };
                    if *key == "aml" || Some(*key_version) == version || version.is_none() {
                        features.extend(items.into_iter().map(|item| item.into_result(feature)));
                    }
                }
                Ok(Decision {
                    version,
                    summary: DecisionSummary { features },
                })
            }
            fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Decision, A::Error> {
                skip_seq(seq).map(|()| Decision::default())
            }
            scalars_yield!(Decision, Decision::default());
        }
        deserializer.deserialize_any(DecisionVisitor)
    }
}

/// The fields of one feature result that a summary keeps.
#[derive(Default)]
struct ItemFields {
    node_id: Option<String>,
    status: Option<String>,
    score: Option<f64>,
    warnings: Vec<Warning>,
    findings: BTreeMap<String, Value>,
}

impl ItemFields {
    fn into_result(self, feature: &'static str) -> FeatureResult {
        FeatureResult {
            feature,
            node_id: self.node_id,
            status: self.status.as_deref().map(Status::of),
            score: self.score,
            warnings: self.warnings,
            findings: self.findings,
        }
    }
}

/// A feature key's value: a v3 list of results, or one v1/v2 result; anything else, none.
struct Items(Vec<ItemFields>);

impl<'de> Deserialize<'de> for Items {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct ItemsVisitor;
        impl<'de> Visitor<'de> for ItemsVisitor {
            type Value = Items;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("feature results")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Items, A::Error> {
                let mut items = Vec::new();
                while let Some(item) = seq.next_element::<Item>()? {
                    items.extend(item.0);
                }
                Ok(Items(items))
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Items, A::Error> {
                ItemVisitor
                    .visit_map(map)
                    .map(|item| Items(item.0.into_iter().collect()))
            }
            scalars_yield!(Items, Items(Vec::new()));
        }
        deserializer.deserialize_any(ItemsVisitor)
    }
}

/// One element of a results list: an object is a result, anything else is skipped.
struct Item(Option<ItemFields>);

struct ItemVisitor;

impl<'de> Visitor<'de> for ItemVisitor {
    type Value = Item;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a feature result")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Item, A::Error> {
        let mut fields = ItemFields::default();
        while let Some(key) = map.next_key::<Cow<'de, str>>()? {
            let key = key.as_ref();
            if key == "warnings" {
                fields.warnings = map.next_value::<Warnings>()?.0;
            } else if key == "node_id"
                || key == "status"
                || key == "score"
                || key.starts_with("is_")
                || NUMBER_FINDINGS.contains(&key)
                || TEXT_FINDINGS.contains(&key)
            {
                // Only small scalars are kept; a large value here is built once and dropped.
                let value = map.next_value::<Value>()?;
                match key {
                    "node_id" => fields.node_id = value.as_str().map(String::from),
                    "status" => fields.status = value.as_str().map(String::from),
                    _ => {}
                }
                if key == "score" {
                    fields.score = value.as_f64();
                }
                let keep = (key.starts_with("is_") && value.is_boolean())
                    || (NUMBER_FINDINGS.contains(&key) && value.is_number())
                    || (TEXT_FINDINGS.contains(&key) && value.is_string());
                if keep {
                    fields.findings.insert(String::from(key), value);
                }
            } else {
                map.next_value::<IgnoredAny>()?;
            }
        }
        Ok(Item(Some(fields)))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Item, A::Error> {
        skip_seq(seq).map(|()| Item(None))
    }
    scalars_yield!(Item, Item(None));
}

impl<'de> Deserialize<'de> for Item {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(ItemVisitor)
    }
}

/// A `warnings` list: objects with a `risk` tag, or bare tags; anything else is skipped.
struct Warnings(Vec<Warning>);

impl<'de> Deserialize<'de> for Warnings {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let value = Value::deserialize(deserializer)?;
        let list = value
            .as_array()
            .map(|list| list.iter().filter_map(warning).collect())
            .unwrap_or_default();
        Ok(Self(list))
    }
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
    fn scalars_where_results_belong_summarize_to_nothing() {
        let text = r#"{"aml_screenings": 5, "liveness_checks": "x", "face_matches": null, "ip_analyses": true,
                       "id_verifications": [{"status": "Approved"}]}"#;
        let decision: Decision = serde_json::from_str(text).expect("lenient");
        assert_eq!(decision.version, Some(PayloadVersion::V3));
        let names: Vec<&str> = decision
            .summary
            .features
            .iter()
            .map(|f| f.feature)
            .collect();
        assert_eq!(names, ["id_verification"]);
        let not_an_object: Decision = serde_json::from_str("[1, {}]").expect("lenient");
        assert_eq!(not_an_object, Decision::default());
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
