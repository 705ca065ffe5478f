//! The headers of a delivery: Didit's three signatures over a body (`X-Signature`,
//! `X-Signature-V2`, `X-Signature-Simple`), its timestamp, and the headers that come with them,
//! in the order `tests/didit.py` writes them.

use didit_edge_core::canonical::{CanonicalError, CanonicalJson, NonAscii};
use didit_edge_core::mac::{HmacSha256, RustCrypto};
use serde_json::Value;

use super::python_json::python_float_repr;
use crate::config;
use crate::error::{Failure, Result};

/// What Didit sends as `User-Agent`.
pub(crate) const USER_AGENT: &str = "DiditWebhook/2.0 +https://didit.me";
/// The header of a test delivery sent from Didit's console.
pub(crate) const TEST_HEADER: &str = "X-Didit-Test-Webhook";

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
        match v2_message(body, options, &timestamp) {
            Ok(message) => headers.push((
                "X-Signature-V2".into(),
                hmac_hex(secret, message.as_bytes()),
            )),
            Err(error) if explicit => {
                return Err(Failure::usage(format!(
                    "X-Signature-V2 needs a JSON body ({error})"
                )))
            }
            Err(_) => {}
        }
    }
    if kinds.contains(&SignatureKind::Simple) {
        match simple_message(parsed.as_ref(), &timestamp) {
            Some(message) => headers.push((
                "X-Signature-Simple".into(),
                hmac_hex(secret, message.as_bytes()),
            )),
            None if explicit => return Err(Failure::usage(
                "X-Signature-Simple needs `session_id`, `status` and `webhook_type` in the body",
            )),
            None => {}
        }
    }
    if options.test_header {
        headers.push((TEST_HEADER.into(), "true".into()));
    }
    Ok(headers)
}

/// What `X-Signature-V2` signs: the body's canonical JSON in the chosen form, after
/// `"{X-Timestamp}:"` with `v2_timestamp_prefix`.
fn v2_message(
    body: &[u8],
    options: &SignOptions,
    timestamp: &str,
) -> std::result::Result<String, CanonicalError> {
    let canonical = CanonicalJson::parse(body)?;
    let non_ascii = match options.v2_form {
        V2Form::Escaped => NonAscii::Escaped,
        V2Form::Utf8 => NonAscii::Utf8,
    };
    let message = canonical.to_string(non_ascii);
    Ok(if options.v2_timestamp_prefix {
        format!("{timestamp}:{message}")
    } else {
        message
    })
}

/// What `X-Signature-Simple` signs, `"{X-Timestamp}:{session_id}:{status}:{webhook_type}"`;
/// `None` unless the body has all three as scalars.
fn simple_message(parsed: Option<&Value>, timestamp: &str) -> Option<String> {
    let field = |name: &str| parsed.and_then(|p| p.get(name)).and_then(python_str);
    let (session_id, status, webhook_type) = (
        field("session_id")?,
        field("status")?,
        field("webhook_type")?,
    );
    Some(format!("{timestamp}:{session_id}:{status}:{webhook_type}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::didit::tests::{header, vectors};

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
