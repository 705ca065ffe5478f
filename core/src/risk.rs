//! Identity risk: a level and the signals that produced it, from rules that are data.
//!
//! A rule names a signal code, a level, and a condition over the normalized event. Event
//! conditions look at the event's status and type; feature conditions look at each feature
//! result (its feature, status, warnings, findings) and name the result as the signal's source.
//! The default rules ship in the core ([`DEFAULT_RULES`]); `RISK_RULES` replaces them without a
//! rebuild, and is checked as strictly as code would be (unknown keys, empty lists and
//! contradictory conditions are refused).

use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::normalize::{DecisionSummary, FeatureResult};

/// The default rules, as JSON: the same format `RISK_RULES` takes.
pub const DEFAULT_RULES: &str = r#"[
  {"code": "declined", "level": "high", "when": {"event_status": ["declined"]}},
  {"code": "entity_blocked", "level": "high", "when": {"event_status": ["blocked"]}},
  {"code": "entity_flagged", "level": "medium", "when": {"event_status": ["flagged"]}},
  {"code": "manual_review_pending", "level": "medium", "when": {"event_status": ["in_review"]}},
  {"code": "resubmission_requested", "level": "medium", "when": {"event_status": ["resubmitted"]}},
  {"code": "document_declined", "level": "high", "when": {"feature": ["id_verification", "nfc"], "feature_status": ["declined"]}},
  {"code": "document_expired", "level": "high", "when": {"warning": ["DOCUMENT_EXPIRED", "EXPIRED_DOCUMENT"]}},
  {"code": "liveness_failed", "level": "high", "when": {"feature": ["liveness"], "feature_status": ["declined"]}},
  {"code": "presentation_attack", "level": "high", "when": {"warning": ["LIVENESS_FACE_ATTACK"]}},
  {"code": "face_mismatch", "level": "high", "when": {"feature": ["face_match"], "feature_status": ["declined"]}},
  {"code": "low_face_match_similarity", "level": "medium", "when": {"warning": ["LOW_FACE_MATCH_SIMILARITY"]}},
  {"code": "blocklist_match", "level": "high", "when": {"warning": ["FACE_IN_BLOCKLIST", "IP_ADDRESS_IN_BLOCKLIST", "DEVICE_FINGERPRINT_IN_BLOCKLIST", "DOCUMENT_IN_BLOCKLIST"]}},
  {"code": "aml_declined", "level": "high", "when": {"feature": ["aml"], "feature_status": ["declined"]}},
  {"code": "aml_hit", "level": "high", "when": {"feature": ["aml"], "finding": "total_hits", "above": 0}},
  {"code": "aml_possible_match", "level": "medium", "when": {"warning": ["POSSIBLE_MATCH_FOUND"]}},
  {"code": "duplicated_identity", "level": "high", "when": {"warning": ["POSSIBLE_DUPLICATED_USER", "DUPLICATED_FACE", "POSSIBLE_DUPLICATED_FACE", "DUPLICATED_DOCUMENT", "DUPLICATED_DEVICE_FINGERPRINT"]}},
  {"code": "vpn_tor_or_proxy", "level": "medium", "when": {"feature": ["ip_analysis"], "finding": "is_vpn_or_tor", "equals": true}},
  {"code": "vpn_tor_or_proxy", "level": "medium", "when": {"warning": ["PRIVATE_NETWORK_DETECTED"]}},
  {"code": "data_center_ip", "level": "medium", "when": {"feature": ["ip_analysis"], "finding": "is_data_center", "equals": true}},
  {"code": "ip_country_mismatch", "level": "medium", "when": {"warning": ["COUNTRY_FROM_DOCUMENT_DOES_NOT_MATCH_COUNTRY_FROM_IP"]}},
  {"code": "disposable_email", "level": "medium", "when": {"feature": ["email"], "finding": "is_disposable", "equals": true}},
  {"code": "disposable_phone", "level": "medium", "when": {"feature": ["phone"], "finding": "is_disposable", "equals": true}},
  {"code": "voip_phone", "level": "medium", "when": {"feature": ["phone"], "finding": "is_virtual", "equals": true}},
  {"code": "voip_phone", "level": "medium", "when": {"feature": ["phone"], "finding": "line_type", "equals": "voip"}},
  {"code": "proof_of_address_declined", "level": "medium", "when": {"feature": ["proof_of_address"], "feature_status": ["declined"]}},
  {"code": "database_no_match", "level": "medium", "when": {"warning": ["DATABASE_VALIDATION_NO_MATCH", "DATABASE_VALIDATION_PARTIAL_MATCH"]}},
  {"code": "feature_in_review", "level": "medium", "when": {"feature_status": ["in_review"]}},
  {"code": "feature_declined", "level": "high", "when": {"feature_status": ["declined"]}}
]"#;

/// Statuses that are a verdict on their own (a decision was taken, or an entity was rated), so
/// an event with one and no signals is `low` rather than `unknown`.
pub const JUDGED_STATUSES: &[&str] = &[
    "approved",
    "declined",
    "in_review",
    "resubmitted",
    "abandoned",
    "expired",
    "kyc_expired",
    "active",
    "flagged",
    "blocked",
];

/// How risky an event looks.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    /// Nothing to judge: no decision and no telling status (a session in progress, a transaction).
    Unknown,
    /// Judged, and nothing raised.
    Low,
    /// Something for a person to look at.
    Medium,
    /// Something to act on.
    High,
}

crate::named::by_name!(Level {
    Unknown = "unknown",
    Low = "low",
    Medium = "medium",
    High = "high",
});

impl core::str::FromStr for Level {
    type Err = ();

    /// Reads a name written by [`Level::as_str`].
    fn from_str(text: &str) -> Result<Self, ()> {
        match text {
            "unknown" => Ok(Self::Unknown),
            "low" => Ok(Self::Low),
            "medium" => Ok(Self::Medium),
            "high" => Ok(Self::High),
            _ => Err(()),
        }
    }
}

impl Level {
    /// The level's name as in events and `ORIGINS` filters.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Unknown => "unknown",
            Self::Low => "low",
            Self::Medium => "medium",
            Self::High => "high",
        }
    }
}

/// One reason for the level.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct Signal {
    /// The rule's stable code (`aml_hit`, `vpn_tor_or_proxy`, …).
    pub code: String,
    /// What raised it: `event`, or the feature and its node (`ip_analysis:ip-1`).
    pub source: String,
}

/// The risk of one event.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Risk {
    /// The highest level among the signals; `low` with none; `unknown` with nothing to judge.
    pub level: Level,
    /// The signals, each code and source once, in rule order.
    pub signals: Vec<Signal>,
}

#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
struct Rule {
    code: String,
    level: Level,
    when: Condition,
}

#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
struct Condition {
    event_status: Option<Vec<String>>,
    webhook_type: Option<Vec<String>>,
    feature: Option<Vec<String>>,
    feature_status: Option<Vec<String>>,
    warning: Option<Vec<String>>,
    finding: Option<String>,
    equals: Option<Value>,
    above: Option<f64>,
}

/// An absent list allows anything; a present one requires a value it names.
fn listed(list: &Option<Vec<String>>, value: Option<&str>) -> bool {
    list.as_ref()
        .is_none_or(|list| value.is_some_and(|v| list.iter().any(|item| item == v)))
}

impl Condition {
    fn is_feature_condition(&self) -> bool {
        self.feature.is_some()
            || self.feature_status.is_some()
            || self.warning.is_some()
            || self.finding.is_some()
    }

    fn event_matches(&self, webhook_type: &str, status_code: Option<&str>) -> bool {
        listed(&self.event_status, status_code) && listed(&self.webhook_type, Some(webhook_type))
    }

    fn feature_matches(&self, result: &FeatureResult) -> bool {
        if !listed(&self.feature, Some(result.feature))
            || !listed(
                &self.feature_status,
                result.status.as_ref().map(|s| s.code.as_str()),
            )
        {
            return false;
        }
        if let Some(risks) = &self.warning {
            if !result.warnings.iter().any(|w| risks.contains(&w.risk)) {
                return false;
            }
        }
        if let Some(name) = &self.finding {
            let Some(value) = result.findings.get(name) else {
                return false;
            };
            if let Some(expected) = &self.equals {
                return value == expected;
            }
            if let Some(threshold) = self.above {
                return value.as_f64().is_some_and(|v| v > threshold);
            }
        }
        true
    }
}

/// A checked rule set.
#[derive(Clone, Debug, PartialEq)]
pub struct RiskRules(Vec<Rule>);

/// Why a rule set was refused.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum RulesError {
    /// Not a JSON array of rules (the parser's message says where).
    Json(String),
    /// A rule's code is empty or not `lower_snake_case`; the 1-based rule is given.
    BadCode(usize),
    /// A rule has no condition at all, so it would fire on every event.
    NoCondition(usize),
    /// A condition lists nothing (`[]`), so it could never fire.
    EmptyList(usize),
    /// `equals` or `above` without `finding`, or both together.
    BadFindingTest(usize),
    /// A rule raises `unknown`, which is the absence of evidence, not a finding.
    UnknownLevel(usize),
}

impl core::fmt::Display for RulesError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::Json(error) => write!(f, "is not a JSON array of rules: {error}"),
            Self::BadCode(at) => write!(f, "rule {at}: code must be lower_snake_case"),
            Self::NoCondition(at) => write!(f, "rule {at}: `when` has no condition"),
            Self::EmptyList(at) => write!(f, "rule {at}: a condition lists nothing"),
            Self::BadFindingTest(at) => {
                write!(
                    f,
                    "rule {at}: `equals` or `above` needs `finding`, and not both"
                )
            }
            Self::UnknownLevel(at) => write!(f, "rule {at}: level must be low, medium or high"),
        }
    }
}

impl core::error::Error for RulesError {}

impl RiskRules {
    /// Parses and checks a rule set in the [`DEFAULT_RULES`] format.
    pub fn parse(json: &str) -> Result<Self, RulesError> {
        let rules: Vec<Rule> =
            crate::json::from_str(json).map_err(|e| RulesError::Json(format!("{e}")))?;
        for (index, rule) in rules.iter().enumerate() {
            let at = index + 1;
            let code_ok = !rule.code.is_empty()
                && rule
                    .code
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
            if !code_ok {
                return Err(RulesError::BadCode(at));
            }
            if rule.level == Level::Unknown {
                return Err(RulesError::UnknownLevel(at));
            }
            let when = &rule.when;
            let lists = [
                &when.event_status,
                &when.webhook_type,
                &when.feature,
                &when.feature_status,
                &when.warning,
            ];
            if lists
                .iter()
                .any(|list| list.as_ref().is_some_and(Vec::is_empty))
            {
                return Err(RulesError::EmptyList(at));
            }
            if lists.iter().all(|list| list.is_none()) && when.finding.is_none() {
                return Err(RulesError::NoCondition(at));
            }
            let tests = usize::from(when.equals.is_some()) + usize::from(when.above.is_some());
            if (tests > 0 && when.finding.is_none()) || tests > 1 {
                return Err(RulesError::BadFindingTest(at));
            }
        }
        Ok(Self(rules))
    }

    /// The built-in rules.
    pub fn default_rules() -> Self {
        // DEFAULT_RULES is checked by a test; an error here would be a build defect, and an
        // empty rule set (every event `low` or `unknown`) is the safe way to stay total.
        Self::parse(DEFAULT_RULES).unwrap_or(Self(Vec::new()))
    }

    /// Judges one event.
    pub fn assess(
        &self,
        webhook_type: &str,
        status_code: Option<&str>,
        decision: Option<&DecisionSummary>,
    ) -> Risk {
        let mut signals: Vec<Signal> = Vec::new();
        let mut level = None;
        let features = decision.map(|d| d.features.as_slice()).unwrap_or(&[]);
        for rule in &self.0 {
            if !rule.when.event_matches(webhook_type, status_code) {
                continue;
            }
            let mut sources = Vec::new();
            if rule.when.is_feature_condition() {
                for result in features.iter().filter(|r| rule.when.feature_matches(r)) {
                    sources.push(match &result.node_id {
                        Some(node) => format!("{}:{node}", result.feature),
                        None => String::from(result.feature),
                    });
                }
            } else {
                sources.push(String::from("event"));
            }
            for source in sources {
                level = level.max(Some(rule.level));
                let signal = Signal {
                    code: rule.code.clone(),
                    source,
                };
                // A list search rather than a set: a rule set raises a handful of signals.
                if !signals.contains(&signal) {
                    signals.push(signal);
                }
            }
        }
        let judged =
            !features.is_empty() || status_code.is_some_and(|s| JUDGED_STATUSES.contains(&s));
        let level = level.unwrap_or(if judged { Level::Low } else { Level::Unknown });
        Risk { level, signals }
    }
}

impl Default for RiskRules {
    fn default() -> Self {
        Self::default_rules()
    }
}

#[cfg(test)]
mod tests {
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    use super::*;
    use crate::normalize::summarize;
    use serde_json::json;

    fn codes(risk: &Risk) -> Vec<(&str, &str)> {
        risk.signals
            .iter()
            .map(|s| (s.code.as_str(), s.source.as_str()))
            .collect()
    }

    #[test]
    fn level_names_round_trip() {
        for level in [Level::Unknown, Level::Low, Level::Medium, Level::High] {
            assert_eq!(level.as_str().parse::<Level>(), Ok(level));
        }
        assert_eq!("severe".parse::<Level>(), Err(()));
    }

    #[test]
    fn default_rules_parse() {
        let rules = RiskRules::parse(DEFAULT_RULES).expect("default rules are valid");
        assert!(rules.0.len() >= 20);
        assert_eq!(RiskRules::default(), rules);
    }

    #[test]
    fn declined_session_with_failures_is_high_with_each_source() {
        let decision = summarize(&json!({
            "liveness_checks": [{"node_id": "live-1", "status": "Declined",
                "warnings": [{"risk": "LIVENESS_FACE_ATTACK", "log_type": "error"}]}],
            "aml_screenings": [{"node_id": "aml-1", "status": "Approved", "total_hits": 3}],
            "ip_analyses": [{"node_id": "ip-1", "status": "Approved", "is_vpn_or_tor": true,
                "warnings": [{"risk": "PRIVATE_NETWORK_DETECTED", "log_type": "information"}]}]
        }));
        let risk = RiskRules::default().assess("status.updated", Some("declined"), Some(&decision));
        assert_eq!(risk.level, Level::High);
        assert_eq!(
            codes(&risk),
            [
                ("declined", "event"),
                ("liveness_failed", "liveness:live-1"),
                ("presentation_attack", "liveness:live-1"),
                ("aml_hit", "aml:aml-1"),
                ("vpn_tor_or_proxy", "ip_analysis:ip-1"),
                ("feature_declined", "liveness:live-1"),
            ]
        );
    }

    #[test]
    fn clean_approval_is_low_and_nothing_to_judge_is_unknown() {
        let decision = summarize(&json!({"id_verifications": [{"status": "Approved"}]}));
        let rules = RiskRules::default();
        assert_eq!(
            rules.assess("status.updated", Some("approved"), Some(&decision)),
            Risk {
                level: Level::Low,
                signals: Vec::new()
            }
        );
        assert_eq!(
            rules
                .assess("status.updated", Some("in_progress"), None)
                .level,
            Level::Unknown
        );
        assert_eq!(
            rules.assess("transaction.created", None, None).level,
            Level::Unknown
        );
        assert_eq!(
            rules
                .assess("user.status.updated", Some("flagged"), None)
                .level,
            Level::Medium
        );
    }

    #[test]
    fn custom_rules_replace_the_defaults() {
        let rules = RiskRules::parse(
            r#"[{"code":"sandbox_traffic","level":"low","when":{"webhook_type":["status.updated"],"event_status":["approved"]}},
                {"code":"weak_liveness","level":"high","when":{"feature":["liveness"],"finding":"score","above":10}}]"#,
        )
        .expect("valid");
        let decision =
            summarize(&json!({"liveness_checks": [{"status": "Approved", "score": 42.0}]}));
        let risk = rules.assess("status.updated", Some("approved"), Some(&decision));
        assert_eq!(risk.level, Level::High);
        assert_eq!(
            codes(&risk),
            [("sandbox_traffic", "event"), ("weak_liveness", "liveness")]
        );
    }

    #[test]
    fn invalid_rule_sets_are_refused_with_the_rule_named() {
        for (json, error) in [
            ("{}", None),
            (r#"[{"code":"x","level":"high"}]"#, None),
            (
                r#"[{"code":"x","level":"severe","when":{"event_status":["declined"]}}]"#,
                None,
            ),
            (
                r#"[{"code":"x","level":"high","when":{"event_statuz":["declined"]}}]"#,
                None,
            ),
            (
                r#"[{"code":"Bad Code","level":"high","when":{"event_status":["declined"]}}]"#,
                Some(RulesError::BadCode(1)),
            ),
            (
                r#"[{"code":"x","level":"high","when":{}}]"#,
                Some(RulesError::NoCondition(1)),
            ),
            (
                r#"[{"code":"x","level":"high","when":{"warning":[]}}]"#,
                Some(RulesError::EmptyList(1)),
            ),
            (
                r#"[{"code":"x","level":"high","when":{"feature":["aml"],"above":1}}]"#,
                Some(RulesError::BadFindingTest(1)),
            ),
            (
                r#"[{"code":"x","level":"unknown","when":{"feature":["aml"]}}]"#,
                Some(RulesError::UnknownLevel(1)),
            ),
        ] {
            let result = RiskRules::parse(json);
            match error {
                Some(expected) => assert_eq!(result.err(), Some(expected), "{json}"),
                None => assert!(matches!(result, Err(RulesError::Json(_))), "{json}"),
            }
        }
    }
}
