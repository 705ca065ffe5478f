//! Didit's side of a delivery: payloads for every `webhook_type` and payload version, written
//! the way Didit's Python service writes them (`json.dumps(sort_keys=True, separators=(",",
//! ":"), ensure_ascii=True)`), and signed with every signature Didit sends. The output matches
//! `tests/didit.py` byte for byte: the same body for the same payload, the same headers in the
//! same order.

use std::fmt::Write as _;

use didit_edge_core::canonical::{CanonicalJson, NonAscii};
use didit_edge_core::mac::{HmacSha256, RustCrypto};
use serde_json::{json, Map, Value};

use crate::config;
use crate::error::{Failure, Result};

/// What Didit sends as `User-Agent`.
pub(crate) const USER_AGENT: &str = "DiditWebhook/2.0 +https://didit.me";
/// The header of a test delivery sent from Didit's console.
pub(crate) const TEST_HEADER: &str = "X-Didit-Test-Webhook";
/// The application id of generated payloads (as in `tests/didit.py`).
const APPLICATION_ID: &str = "app-7d1c";

/// Every `webhook_type` Didit sends.
pub(crate) const WEBHOOK_TYPES: [&str; 9] = [
    "status.updated",
    "data.updated",
    "user.status.updated",
    "user.data.updated",
    "business.status.updated",
    "business.data.updated",
    "activity.created",
    "transaction.created",
    "transaction.status.updated",
];

// ------------------------------------------------------------------------------------------
// Serializing as Python does

/// `json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=…)`.
pub(crate) fn python_json(value: &Value, ensure_ascii: bool) -> String {
    let mut out = String::new();
    write_value(value, ensure_ascii, &mut out);
    out
}

fn write_value(value: &Value, ensure_ascii: bool, out: &mut String) {
    match value {
        Value::Null => out.push_str("null"),
        Value::Bool(true) => out.push_str("true"),
        Value::Bool(false) => out.push_str("false"),
        Value::Number(number) => {
            if let Some(int) = number.as_i64() {
                let _ = write!(out, "{int}");
            } else if let Some(int) = number.as_u64() {
                let _ = write!(out, "{int}");
            } else if let Some(float) = number.as_f64() {
                out.push_str(&python_float_repr(float));
            }
        }
        Value::String(text) => write_string(text, ensure_ascii, out),
        Value::Array(items) => {
            out.push('[');
            for (index, item) in items.iter().enumerate() {
                if index > 0 {
                    out.push(',');
                }
                write_value(item, ensure_ascii, out);
            }
            out.push(']');
        }
        Value::Object(members) => {
            // Python sorts by code point, which is the byte order of UTF-8.
            let mut keys: Vec<&String> = members.keys().collect();
            keys.sort();
            out.push('{');
            for (index, key) in keys.into_iter().enumerate() {
                if index > 0 {
                    out.push(',');
                }
                write_string(key, ensure_ascii, out);
                out.push(':');
                if let Some(member) = members.get(key) {
                    write_value(member, ensure_ascii, out);
                }
            }
            out.push('}');
        }
    }
}

/// A string as Python's `json` writes it: `"`, `\` and control characters escaped (`\n` and
/// friends by name), and with `ensure_ascii` everything outside printable ASCII as `\uXXXX`
/// (lowercase hex, surrogate pairs above the BMP).
fn write_string(text: &str, ensure_ascii: bool, out: &mut String) {
    out.push('"');
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{08}' => out.push_str("\\b"),
            '\u{0c}' => out.push_str("\\f"),
            c if (c as u32) < 0x20 || (ensure_ascii && !(' '..='~').contains(&c)) => {
                let mut units = [0u16; 2];
                for unit in c.encode_utf16(&mut units) {
                    let _ = write!(out, "\\u{unit:04x}");
                }
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

/// Python's `repr(float)`: the shortest digits that read back the same, in positional form
/// from 1e-4 up to 1e16 (always with a fraction, `97.0`), else as `1e-05` / `1.5e+20`.
pub(crate) fn python_float_repr(value: f64) -> String {
    if value.is_nan() {
        return "NaN".into();
    }
    if value.is_infinite() {
        return if value > 0.0 { "Infinity" } else { "-Infinity" }.into();
    }
    // Rust's `{:e}` writes the same shortest round-trip digits: `d.ddde±x`.
    let scientific = format!("{:e}", value.abs());
    let (mantissa, exponent) = scientific.split_once('e').unwrap_or((&scientific, "0"));
    let exponent: i32 = exponent.parse().unwrap_or(0);
    let digits: String = mantissa.chars().filter(char::is_ascii_digit).collect();
    let sign = if value.is_sign_negative() { "-" } else { "" };
    // The decimal point sits `point` digits into `digits`.
    let point = exponent + 1;
    if !(-4 < point && point <= 16) {
        let (first, rest) = digits.split_at(1);
        let fraction = if rest.is_empty() {
            String::new()
        } else {
            format!(".{rest}")
        };
        let exp_sign = if exponent < 0 { '-' } else { '+' };
        return format!("{sign}{first}{fraction}e{exp_sign}{:02}", exponent.abs());
    }
    let len = i32::try_from(digits.len()).unwrap_or(i32::MAX);
    if point <= 0 {
        let zeros = "0".repeat(usize::try_from(-point).unwrap_or(0));
        format!("{sign}0.{zeros}{digits}")
    } else if point >= len {
        let zeros = "0".repeat(usize::try_from(point - len).unwrap_or(0));
        format!("{sign}{digits}{zeros}.0")
    } else {
        let (whole, fraction) = digits.split_at(usize::try_from(point).unwrap_or(0));
        format!("{sign}{whole}.{fraction}")
    }
}

/// The raw body as Didit sends it (`tests/didit.py`'s `encode`).
pub(crate) fn encode(payload: &Value) -> Vec<u8> {
    python_json(payload, true).into_bytes()
}

// ------------------------------------------------------------------------------------------
// Signing

/// Didit's signature headers.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub(crate) enum SignatureKind {
    /// `X-Signature`: HMAC-SHA256 of the raw body.
    Raw,
    /// `X-Signature-V2`: HMAC-SHA256 of the canonical JSON.
    V2,
    /// `X-Signature-Simple`: HMAC-SHA256 of `timestamp:session_id:status:webhook_type`.
    Simple,
    /// No signature at all (to see a delivery refused).
    None,
}

/// How the canonical JSON of `X-Signature-V2` writes non-ASCII text.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub(crate) enum V2Form {
    /// `\uXXXX` escapes (`ensure_ascii=True`, Didit's current documentation).
    Escaped,
    /// Raw UTF-8 (`ensure_ascii=False`, Didit's sample code).
    Utf8,
}

/// How to sign a body.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub(crate) struct SignOptions {
    /// The signatures to send; `None`: every one the body allows (Didit sends all three).
    pub(crate) kinds: Option<Vec<SignatureKind>>,
    pub(crate) v2_form: V2Form,
    /// Sign `"{X-Timestamp}:{canonical}"` for V2 (Didit's agent skill) instead of the JSON alone.
    pub(crate) v2_timestamp_prefix: bool,
    /// `X-Timestamp`; `None`: the body's `timestamp`.
    pub(crate) x_timestamp: Option<i64>,
    /// Add `X-Didit-Test-Webhook: true`, as a console test delivery does.
    pub(crate) test_header: bool,
}

/// HMAC-SHA256 in lowercase hex, keyed with the secret's UTF-8 bytes.
pub(crate) fn hmac_hex(secret: &str, message: &[u8]) -> String {
    hex::encode(RustCrypto.tag(secret.as_bytes(), message))
}

/// `str(value)` in Python for the scalars the simple signature joins.
fn python_str(value: &Value) -> Option<String> {
    match value {
        Value::String(text) => Some(text.clone()),
        Value::Null => Some("None".into()),
        Value::Bool(true) => Some("True".into()),
        Value::Bool(false) => Some("False".into()),
        Value::Number(number) if number.is_i64() || number.is_u64() => Some(number.to_string()),
        Value::Number(number) => number.as_f64().map(python_float_repr),
        _ => None,
    }
}

/// The headers of a delivery of `body`, in the order `tests/didit.py` writes them.
pub(crate) fn sign(
    body: &[u8],
    secret: &str,
    options: &SignOptions,
) -> Result<Vec<(String, String)>> {
    let parsed: Option<Value> = serde_json::from_slice(body).ok();
    let body_timestamp = parsed
        .as_ref()
        .and_then(|p| p.get("timestamp"))
        .and_then(Value::as_i64);
    let timestamp = options
        .x_timestamp
        .or(body_timestamp)
        .unwrap_or_else(config::now_secs)
        .to_string();
    let explicit = options.kinds.is_some();
    let kinds = options
        .kinds
        .clone()
        .unwrap_or_else(|| vec![SignatureKind::Raw, SignatureKind::V2, SignatureKind::Simple]);
    let mut headers = vec![
        ("Content-Type".to_owned(), "application/json".to_owned()),
        ("User-Agent".to_owned(), USER_AGENT.to_owned()),
        ("X-Timestamp".to_owned(), timestamp.clone()),
    ];
    if kinds.contains(&SignatureKind::Raw) {
        headers.push(("X-Signature".into(), hmac_hex(secret, body)));
    }
    if kinds.contains(&SignatureKind::V2) {
        match CanonicalJson::parse(body) {
            Ok(canonical) => {
                let non_ascii = match options.v2_form {
                    V2Form::Escaped => NonAscii::Escaped,
                    V2Form::Utf8 => NonAscii::Utf8,
                };
                let mut message = canonical.to_string(non_ascii);
                if options.v2_timestamp_prefix {
                    message = format!("{timestamp}:{message}");
                }
                headers.push((
                    "X-Signature-V2".into(),
                    hmac_hex(secret, message.as_bytes()),
                ));
            }
            Err(error) if explicit => {
                return Err(Failure::usage(format!(
                    "X-Signature-V2 needs a JSON body ({error})"
                )))
            }
            Err(_) => {}
        }
    }
    if kinds.contains(&SignatureKind::Simple) {
        let field = |name: &str| {
            parsed
                .as_ref()
                .and_then(|p| p.get(name))
                .and_then(python_str)
        };
        match (field("session_id"), field("status"), field("webhook_type")) {
            (Some(session_id), Some(status), Some(webhook_type)) => {
                let message = format!("{timestamp}:{session_id}:{status}:{webhook_type}");
                headers.push((
                    "X-Signature-Simple".into(),
                    hmac_hex(secret, message.as_bytes()),
                ));
            }
            _ if explicit => return Err(Failure::usage(
                "X-Signature-Simple needs `session_id`, `status` and `webhook_type` in the body",
            )),
            _ => {}
        }
    }
    if options.test_header {
        headers.push((TEST_HEADER.into(), "true".into()));
    }
    Ok(headers)
}

// ------------------------------------------------------------------------------------------
// Payloads

/// Didit's payload versions.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum PayloadVersion {
    V1,
    V2,
    V3,
}

/// A feature that fails in a declined (or in-review) session.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum Failing {
    /// The ID document: declined as expired.
    Document,
    /// Liveness: a presentation attack.
    Liveness,
    /// Face match: low similarity.
    FaceMatch,
    /// AML screening: hits.
    Aml,
    /// IP analysis: a VPN or Tor exit.
    Ip,
    /// Email: a disposable address.
    Email,
    /// Phone: a virtual (VoIP) number.
    Phone,
    /// Database validation: no match.
    Database,
    /// Proof of address: declined.
    Poa,
}

/// Everything a generated payload can vary.
#[derive(Clone, Debug)]
pub(crate) struct PayloadSpec {
    pub(crate) webhook_type: String,
    pub(crate) status: Option<String>,
    pub(crate) previous_status: Option<String>,
    pub(crate) version: PayloadVersion,
    pub(crate) failing: Vec<Failing>,
    pub(crate) kyb: bool,
    pub(crate) test: bool,
    pub(crate) session_id: Option<String>,
    pub(crate) vendor_data: Option<String>,
    pub(crate) business_id: Option<String>,
    pub(crate) transaction_id: Option<String>,
    pub(crate) event_id: Option<String>,
    pub(crate) timestamp: Option<i64>,
    /// Top-level fields to set last (`--set key=json`).
    pub(crate) set: Vec<(String, Value)>,
}

/// What kind of subject a `webhook_type` is about.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Family {
    Session,
    User,
    Business,
    Activity,
    Transaction,
}

fn family(webhook_type: &str) -> Family {
    match webhook_type.split('.').next() {
        Some("user") => Family::User,
        Some("business") => Family::Business,
        Some("activity") => Family::Activity,
        Some("transaction") => Family::Transaction,
        // status.updated, data.updated, and any type Didit adds later.
        _ => Family::Session,
    }
}

/// A status as typed (`approved`, `in-review`, `FLAGGED`) in Didit's spelling for the family.
fn didit_status(input: &str, family: Family) -> String {
    let key: String = input
        .chars()
        .filter(|c| c.is_ascii_alphanumeric())
        .collect::<String>()
        .to_ascii_lowercase();
    let entity = matches!(family, Family::User | Family::Business);
    let known = match key.as_str() {
        "active" if entity => "ACTIVE",
        "flagged" if entity => "FLAGGED",
        "blocked" if entity => "BLOCKED",
        "approved" => "Approved",
        "declined" => "Declined",
        "inreview" => "In Review",
        "notstarted" => "Not Started",
        "inprogress" => "In Progress",
        "awaitinguser" => "Awaiting User",
        "resubmitted" => "Resubmitted",
        "abandoned" => "Abandoned",
        "expired" => "Expired",
        "kycexpired" => "Kyc Expired",
        "pending" => "Pending",
        _ => return input.to_owned(),
    };
    known.to_owned()
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
fn decision(spec: &PayloadSpec, status: &str) -> Result<Option<Value>> {
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

impl PayloadSpec {
    /// The payload, with fresh ids where none were given.
    pub(crate) fn build(&self, now: i64) -> Result<Value> {
        let family = family(&self.webhook_type);
        let timestamp = self.timestamp.unwrap_or(now);
        let event_id = match &self.event_id {
            Some(id) => id.clone(),
            None => config::uuid4()?,
        };
        let vendor_data = self.vendor_data.clone().unwrap_or_else(|| "user-42".into());
        let status = self.status.as_deref().map(|s| didit_status(s, family));
        let mut payload = match family {
            Family::Session => self.session(timestamp, event_id, vendor_data, status)?,
            Family::User | Family::Business => {
                let status_event = self.webhook_type.ends_with(".status.updated");
                let status = status
                    .unwrap_or_else(|| if status_event { "FLAGGED" } else { "ACTIVE" }.into());
                let mut payload = json!({
                    "event_id": event_id, "webhook_type": self.webhook_type, "timestamp": timestamp,
                    "application_id": APPLICATION_ID, "environment": "live",
                });
                if family == Family::User {
                    payload["vendor_data"] = json!(vendor_data);
                    payload["uuid"] = json!(config::uuid4()?);
                } else {
                    payload["vendor_business_id"] =
                        json!(self.business_id.clone().unwrap_or_else(|| "acme-de".into()));
                }
                if status_event {
                    let previous = self.previous_status.as_deref().map_or_else(
                        || {
                            if status == "ACTIVE" {
                                "FLAGGED"
                            } else {
                                "ACTIVE"
                            }
                            .to_owned()
                        },
                        |s| didit_status(s, family),
                    );
                    payload["status"] = json!(status);
                    payload["previous_status"] = json!(previous);
                } else {
                    if family == Family::User || self.status.is_some() {
                        payload["status"] = json!(status);
                    }
                    let (field, before, after) = if family == Family::User {
                        ("full_name", "Jose Nunez", "José Núñez")
                    } else {
                        ("legal_name", "Acme", "Acme GmbH")
                    };
                    payload["changed_fields"] = json!([field]);
                    payload["changes"] = json!({field: {"previous": before, "current": after}});
                }
                payload
            }
            Family::Activity => {
                let mut payload = json!({
                    "event_id": event_id, "webhook_type": self.webhook_type, "timestamp": timestamp,
                    "application_id": APPLICATION_ID, "vendor_data": vendor_data,
                    "activity": {"type": "note", "text": "called the user"},
                });
                if let Some(status) = status {
                    payload["status"] = json!(status);
                }
                payload
            }
            Family::Transaction => {
                let created = self.webhook_type == "transaction.created";
                let status =
                    status.unwrap_or_else(|| if created { "Pending" } else { "Approved" }.into());
                let transaction_id = match &self.transaction_id {
                    Some(id) => id.clone(),
                    None => config::uuid4()?,
                };
                json!({
                    "event_id": event_id, "webhook_type": self.webhook_type, "timestamp": timestamp,
                    "application_id": APPLICATION_ID, "transaction_id": transaction_id,
                    "vendor_data": vendor_data, "status": status, "amount": 1250.5,
                    "currency": "EUR",
                })
            }
        };
        if self.test {
            match payload.get_mut("metadata") {
                Some(Value::Object(metadata)) => {
                    metadata.insert("test_webhook".into(), Value::Bool(true));
                }
                _ => payload["metadata"] = json!({"test_webhook": true}),
            }
        }
        if let Value::Object(fields) = &mut payload {
            for (key, value) in &self.set {
                fields.insert(key.clone(), value.clone());
            }
        }
        Ok(payload)
    }

    fn session(
        &self,
        timestamp: i64,
        event_id: String,
        vendor_data: String,
        status: Option<String>,
    ) -> Result<Value> {
        let status = status.unwrap_or_else(|| {
            if self.failing.is_empty() {
                "Approved".into()
            } else {
                "Declined".into()
            }
        });
        let session_id = match &self.session_id {
            Some(id) => id.clone(),
            None => config::uuid4()?,
        };
        // The fields of `tests/didit.py`'s `session_payload`.
        let mut payload = json!({
            "event_id": event_id,
            "webhook_type": self.webhook_type,
            "timestamp": timestamp,
            "created_at": timestamp - 30,
            "application_id": APPLICATION_ID,
            "session_id": session_id,
            "status": status,
            "workflow_id": if self.kyb { "wf-kyb-basic" } else { "wf-kyc-basic" },
            "workflow_version": 3,
            "vendor_data": vendor_data,
            "metadata": {"plan": "gold", "score": 97.0},
            "environment": "live",
        });
        if self.kyb {
            payload["session_kind"] = json!("business");
            payload["business_session_id"] = json!(session_id);
            payload["vendor_business_id"] =
                json!(self.business_id.clone().unwrap_or_else(|| "acme-de".into()));
        }
        if status == "Resubmitted" {
            payload["resubmit_info"] = json!({
                "nodes_to_resubmit": ["id-1"],
                "reasons": [{"node_id": "id-1", "reason": "Photo too blurry — réessayez"}],
            });
        }
        if let Some(decision) = decision(self, &status)? {
            payload["decision"] = decision;
        }
        Ok(payload)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use didit_edge_core::secret::WebhookSecrets;
    use didit_edge_core::verify::{self, SignatureHeader, SignatureHeaders, SignedMessage};

    const VECTORS: &str = include_str!("../../core/tests/vectors.json");
    const EVENTS: &str = include_str!("../../tests/fixtures/events.json");

    fn vectors() -> Value {
        serde_json::from_str(VECTORS).expect("vectors.json is JSON")
    }

    /// `tests/didit.py`'s `whole_floats_to_ints`, for values an f64 can hold exactly.
    fn whole_floats_to_ints(value: &Value) -> Option<Value> {
        Some(match value {
            Value::Number(n) if n.is_f64() => {
                let f = n.as_f64()?;
                if f.fract() == 0.0 {
                    if f.abs() >= 9.0e15 {
                        return None; // beyond what this test's i64 path holds exactly
                    }
                    json!(f as i64)
                } else {
                    value.clone()
                }
            }
            Value::Array(items) => Value::Array(
                items
                    .iter()
                    .map(whole_floats_to_ints)
                    .collect::<Option<_>>()?,
            ),
            Value::Object(fields) => Value::Object(
                fields
                    .iter()
                    .map(|(k, v)| Some((k.clone(), whole_floats_to_ints(v)?)))
                    .collect::<Option<_>>()?,
            ),
            other => other.clone(),
        })
    }

    #[test]
    fn the_encoder_writes_what_python_writes() {
        // Python's canonical() is json.dumps of whole_floats_to_ints: the same writer.
        let mut checked = 0;
        for case in vectors()["canonical"].as_array().expect("cases") {
            let body = case["body"].as_str().expect("body");
            let Ok(parsed) = serde_json::from_str::<Value>(body) else {
                continue;
            };
            // Integers beyond 64 bits are not held exactly by serde_json's Value; the CLI never
            // re-serializes a body it was given, so only generated payloads go through here.
            if body.contains("123456789012345678901234567890") {
                continue;
            }
            let Some(ints) = whole_floats_to_ints(&parsed) else {
                continue;
            };
            assert_eq!(python_json(&ints, true), case["escaped"], "{body}");
            assert_eq!(python_json(&ints, false), case["utf8"], "{body}");
            checked += 1;
        }
        assert!(checked >= 6, "only {checked} canonical vectors checked");
    }

    #[test]
    fn floats_are_written_as_python_repr() {
        for (value, repr) in [
            (97.0, "97.0"),
            (0.98765, "0.98765"),
            (-0.0, "-0.0"),
            (1e16, "1e+16"),
            (1e15, "1000000000000000.0"),
            (0.0001, "0.0001"),
            (0.00001, "1e-05"),
            (1.5e-7, "1.5e-07"),
            (1e20, "1e+20"),
            (123.456, "123.456"),
            (-189.99241999999998, "-189.99241999999998"),
            (1.2345678901234568e29, "1.2345678901234568e+29"),
        ] {
            assert_eq!(python_float_repr(value), repr);
        }
    }

    fn header<'h>(headers: &'h [(String, String)], name: &str) -> Option<&'h str> {
        headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    #[test]
    fn every_signature_matches_the_python_vectors() {
        // Each vector that verifies names the header and message form Python signed; the CLI
        // signing the same body the same way must give the same tag.
        let mut checked = 0;
        for case in vectors()["signatures"].as_array().expect("cases") {
            let Some(form) = case["expect"]["form"].as_str() else {
                continue;
            };
            if case["expect"]["secret_index"] != 0 {
                continue;
            }
            let secret = case["secrets"]
                .as_str()
                .and_then(|s| s.split(',').next())
                .expect("secret");
            let body = case["body"].as_str().expect("body").as_bytes();
            let timestamp = case["headers"]["timestamp"]
                .as_str()
                .map(|t| t.parse().expect("ts"));
            let (kind, name, sent) = match form {
                "raw" => (
                    SignatureKind::Raw,
                    "X-Signature",
                    &case["headers"]["signature"],
                ),
                "simple" => (
                    SignatureKind::Simple,
                    "X-Signature-Simple",
                    &case["headers"]["signature_simple"],
                ),
                _ => (
                    SignatureKind::V2,
                    "X-Signature-V2",
                    &case["headers"]["signature_v2"],
                ),
            };
            let options = SignOptions {
                kinds: Some(vec![kind]),
                v2_form: if form.contains("utf8") {
                    V2Form::Utf8
                } else {
                    V2Form::Escaped
                },
                v2_timestamp_prefix: form.ends_with("-prefixed"),
                x_timestamp: timestamp,
                test_header: false,
            };
            let headers = sign(body, secret, &options).expect("signs");
            let sent = sent.as_str().expect("tag").to_ascii_lowercase();
            assert_eq!(
                header(&headers, name),
                Some(sent.as_str()),
                "{}",
                case["name"]
            );
            checked += 1;
        }
        assert!(checked >= 6, "only {checked} signature vectors checked");
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
        let tiers = verify::challenges(body, &signature_headers, envelope.as_ref(), simple)
            .expect("signed");
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
        let python: Value =
            serde_json::from_str(vector["body"].as_str().expect("body")).expect("JSON");
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

    #[test]
    fn entity_and_transaction_events_carry_their_subjects() {
        let build = |webhook_type: &str, status: Option<&str>| {
            PayloadSpec {
                webhook_type: webhook_type.into(),
                status: status.map(Into::into),
                previous_status: None,
                version: PayloadVersion::V3,
                failing: vec![],
                kyb: false,
                test: false,
                session_id: None,
                vendor_data: Some("user-7".into()),
                business_id: Some("biz-1".into()),
                transaction_id: Some("tx-1".into()),
                event_id: None,
                timestamp: Some(5),
                set: vec![("extra".into(), json!({"a": 1}))],
            }
            .build(0)
            .expect("builds")
        };
        let user = build("user.status.updated", Some("blocked"));
        assert_eq!(
            (
                &user["vendor_data"],
                &user["status"],
                &user["previous_status"]
            ),
            (&json!("user-7"), &json!("BLOCKED"), &json!("ACTIVE"))
        );
        assert_eq!(user["extra"], json!({"a": 1}));
        let business = build("business.status.updated", None);
        assert_eq!(
            (&business["vendor_business_id"], &business["status"]),
            (&json!("biz-1"), &json!("FLAGGED"))
        );
        let data = build("business.data.updated", None);
        assert!(data.get("status").is_none());
        let tx = build("transaction.status.updated", Some("declined"));
        assert_eq!(
            (&tx["transaction_id"], &tx["status"]),
            (&json!("tx-1"), &json!("Declined"))
        );
        let kyb = PayloadSpec {
            kyb: true,
            session_id: Some("b-1".into()),
            ..PayloadSpec {
                webhook_type: "status.updated".into(),
                status: None,
                previous_status: None,
                version: PayloadVersion::V3,
                failing: vec![],
                kyb: false,
                test: false,
                session_id: None,
                vendor_data: None,
                business_id: None,
                transaction_id: None,
                event_id: None,
                timestamp: None,
                set: vec![],
            }
        }
        .build(9)
        .expect("kyb");
        assert_eq!(
            (&kyb["session_kind"], &kyb["business_session_id"]),
            (&json!("business"), &json!("b-1"))
        );
        assert!(kyb["decision"]["registry_checks"].is_array());
    }

    #[test]
    fn default_signatures_skip_what_the_body_cannot_carry_and_explicit_ones_insist() {
        let options = SignOptions {
            kinds: None,
            v2_form: V2Form::Escaped,
            v2_timestamp_prefix: false,
            x_timestamp: Some(7),
            test_header: false,
        };
        let headers = sign(b"not json", "k", &options).expect("raw only");
        let names: Vec<&str> = headers.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(
            names,
            ["Content-Type", "User-Agent", "X-Timestamp", "X-Signature"]
        );
        let explicit = SignOptions {
            kinds: Some(vec![SignatureKind::V2]),
            ..options
        };
        assert!(sign(b"not json", "k", &explicit).is_err());
        let simple = SignOptions {
            kinds: Some(vec![SignatureKind::Simple]),
            ..options
        };
        assert!(sign(br#"{"vendor_data":"u"}"#, "k", &simple).is_err());
        let none = SignOptions {
            kinds: Some(vec![SignatureKind::None]),
            ..options
        };
        let headers = sign(b"{}", "k", &none).expect("unsigned");
        assert!(headers.iter().all(|(n, _)| !n.starts_with("X-Signature")));
    }
}
