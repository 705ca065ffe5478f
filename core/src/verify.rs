//! Didit's three signatures, as challenges to answer.
//!
//! A delivery yields a list of [`Challenge`]s: a message that Didit may have signed and the tag
//! it sent for it. Whoever holds the secrets computes HMAC-SHA256 of each message (any
//! [`HmacSha256`] provider, synchronous or not) and asks the challenge whether the tag answers
//! it; the comparison is constant-time. The order is the order of trust: the raw body first
//! (`X-Signature`, cheapest and covering every byte), then the canonical forms
//! (`X-Signature-V2`), then the four-field `X-Signature-Simple` when allowed.

use alloc::borrow::Cow;
use alloc::format;
use alloc::vec::Vec;
use core::fmt;
use serde::{Deserialize, Serialize};

use crate::canonical::{CanonicalJson, NonAscii};
use crate::envelope::Envelope;
use crate::mac::{tags_equal, HmacSha256, Tag, TAG_LEN};
use crate::secret::WebhookSecrets;

/// The signature headers as a delivery carries them (values as received; absent is `None`).
#[derive(Clone, Copy, Debug, Default)]
pub struct SignatureHeaders<'a> {
    /// `X-Signature`: HMAC of the raw body.
    pub signature: Option<&'a str>,
    /// `X-Signature-V2`: HMAC of the canonical JSON.
    pub signature_v2: Option<&'a str>,
    /// `X-Signature-Simple`: HMAC of `timestamp:session_id:status:webhook_type`.
    pub signature_simple: Option<&'a str>,
    /// `X-Timestamp`: Unix seconds, not itself covered by `X-Signature`.
    pub timestamp: Option<&'a str>,
}

/// Largest body whose canonical forms are still tried after its X-Signature failed.
pub const MAX_CANONICAL_FALLBACK_BYTES: usize = 64 * 1024;

/// Which header a verified signature came in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SignatureHeader {
    /// `X-Signature`.
    Raw,
    /// `X-Signature-V2`.
    Canonical,
    /// `X-Signature-Simple`.
    Simple,
}

crate::named::by_name!(SignatureHeader {
    Raw = "Raw",
    Canonical = "Canonical",
    Simple = "Simple",
});

impl SignatureHeader {
    /// The header's name as Didit sends it.
    pub fn header_name(self) -> &'static str {
        match self {
            Self::Raw => "X-Signature",
            Self::Canonical => "X-Signature-V2",
            Self::Simple => "X-Signature-Simple",
        }
    }

    /// Whether the signature vouches for the whole payload, or only for the four fields of the
    /// simple form (`decision`, `vendor_data` and `metadata` are then unauthenticated).
    pub fn covers_payload(self) -> bool {
        !matches!(self, Self::Simple)
    }
}

/// Exactly which message a signature was found over; recorded for diagnostics and tests.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum SignedMessage {
    /// The body bytes as received.
    RawBody,
    /// Canonical JSON, optionally behind `"{X-Timestamp}:"`.
    Canonical {
        /// How non-ASCII characters were written.
        non_ascii: NonAscii,
        /// Whether the message was `"{X-Timestamp}:{canonical}"`.
        timestamp_prefix: bool,
    },
    /// `"{timestamp}:{session_id}:{status}:{webhook_type}"`.
    SimpleFields,
}

/// One message Didit may have signed, with the tag the delivery claims for it.
#[derive(Clone, Debug)]
pub struct Challenge<'a> {
    header: SignatureHeader,
    form: SignedMessage,
    claimed: Tag,
    message: Cow<'a, [u8]>,
}

impl<'a> Challenge<'a> {
    /// The bytes to MAC.
    pub fn message(&self) -> &[u8] {
        &self.message
    }

    /// The header this challenge comes from.
    pub fn header(&self) -> SignatureHeader {
        self.header
    }

    /// The exact message form.
    pub fn form(&self) -> SignedMessage {
        self.form
    }

    /// Whether `computed` (the HMAC of [`Self::message`] under some secret) is the claimed tag.
    pub fn is_answered_by(&self, computed: &Tag) -> bool {
        tags_equal(&self.claimed, computed)
    }

    /// The verdict once the secret at `secret_index` answered this challenge.
    pub fn verified_with(&self, secret_index: usize) -> Verified {
        Verified {
            header: self.header,
            form: self.form,
            secret_index,
        }
    }
}

/// A delivery whose signature checked out. Kept with an event stored before it could be
/// classified, so the CloudEvent made later says how it was authenticated.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Verified {
    /// The header whose signature matched.
    pub header: SignatureHeader,
    /// The message form that matched.
    pub form: SignedMessage,
    /// Which configured secret matched (0 is the first); tells when an old secret can go.
    pub secret_index: usize,
}

/// How an event's content came to be trusted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Provenance {
    /// A webhook whose signature matched.
    Signed(Verified),
    /// Read from Didit's API over TLS with the API key, by reconciliation: Didit signed
    /// nothing, the connection and the key vouch for it.
    Api,
}

impl Provenance {
    /// Whether every byte of the content is vouched for (not only the simple signature's
    /// four fields).
    pub fn covers_payload(self) -> bool {
        match self {
            Self::Signed(verified) => verified.header.covers_payload(),
            Self::Api => true,
        }
    }
}

/// Why a delivery is not authentic.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum VerifyError {
    /// None of Didit's signature headers is present.
    MissingSignature,
    /// Only `X-Signature-Simple` is present, and it is not accepted by configuration.
    SimpleSignatureNotAllowed,
    /// Signatures are present but none matches any accepted secret.
    SignatureMismatch,
}

impl fmt::Display for VerifyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::MissingSignature => "no X-Signature, X-Signature-V2 or X-Signature-Simple header",
            Self::SimpleSignatureNotAllowed => {
                "only X-Signature-Simple was sent, and ALLOW_SIMPLE_SIGNATURE is off"
            }
            Self::SignatureMismatch => "no signature matches any configured secret",
        })
    }
}

impl core::error::Error for VerifyError {}

/// Decodes a hex tag of either case; anything else (wrong length, non-hex) is `None`, which
/// simply leaves that header unable to match.
fn decode_tag(value: &str) -> Option<Tag> {
    let mut tag = [0u8; TAG_LEN];
    hex::decode_to_slice(value.trim(), &mut tag).ok()?;
    Some(tag)
}

/// The fields the simple signature covers, read from the envelope.
#[derive(Clone, Debug)]
struct SimpleFields {
    session_id: alloc::string::String,
    status: alloc::string::String,
    webhook_type: alloc::string::String,
    body_timestamp: Option<i64>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Tier {
    Raw,
    Canonical,
    Simple,
    Done,
}

/// The challenges a delivery poses, produced one tier at a time: the raw body, then the
/// canonical forms, then the simple form. A later tier is built only if every challenge of the
/// earlier ones went unanswered, so the common case (Didit sends all three headers and
/// `X-Signature` matches) never pays for canonicalizing the body.
#[derive(Clone, Debug)]
pub struct ChallengeTiers<'a> {
    body: &'a [u8],
    raw: Option<Tag>,
    canonical: Option<Tag>,
    simple: Option<Tag>,
    x_timestamp: Option<&'a str>,
    simple_fields: Option<SimpleFields>,
    next: Tier,
}

impl<'a> ChallengeTiers<'a> {
    fn raw_tier(&self) -> Vec<Challenge<'a>> {
        self.raw
            .map(|claimed| Challenge {
                header: SignatureHeader::Raw,
                form: SignedMessage::RawBody,
                claimed,
                message: Cow::Borrowed(self.body),
            })
            .into_iter()
            .collect()
    }

    fn canonical_tier(&self) -> Vec<Challenge<'a>> {
        let mut list = Vec::new();
        let Some(claimed) = self.canonical else {
            return list;
        };
        // A well-formed X-Signature that did not match means the bytes were changed on the way
        // (or forged). X-Signature-V2 can still vouch for a body a proxy re-encoded, but only a
        // small one: rebuilding and MACing every canonical form of a large unauthenticated
        // body would cost far more than the genuine delivery it imitates.
        if self.raw.is_some() && self.body.len() > MAX_CANONICAL_FALLBACK_BYTES {
            return list;
        }
        let Ok(canonical) = CanonicalJson::parse(self.body) else {
            return list;
        };
        let escaped = canonical.to_string(NonAscii::Escaped);
        let utf8 = canonical.to_string(NonAscii::Utf8);
        let mut forms = Vec::with_capacity(2);
        let same = escaped == utf8;
        forms.push((NonAscii::Escaped, escaped));
        if !same {
            forms.push((NonAscii::Utf8, utf8));
        }
        for (non_ascii, text) in forms {
            if let Some(timestamp) = self.x_timestamp.map(str::trim) {
                list.push(Challenge {
                    header: SignatureHeader::Canonical,
                    form: SignedMessage::Canonical {
                        non_ascii,
                        timestamp_prefix: true,
                    },
                    claimed,
                    message: Cow::Owned(format!("{timestamp}:{text}").into_bytes()),
                });
            }
            list.push(Challenge {
                header: SignatureHeader::Canonical,
                form: SignedMessage::Canonical {
                    non_ascii,
                    timestamp_prefix: false,
                },
                claimed,
                message: Cow::Owned(text.into_bytes()),
            });
        }
        list
    }

    fn simple_tier(&self) -> Vec<Challenge<'a>> {
        let (Some(claimed), Some(fields)) = (self.simple, self.simple_fields.as_ref()) else {
            return Vec::new();
        };
        let mut stamps: Vec<alloc::string::String> = self
            .x_timestamp
            .map(|t| t.trim().into())
            .into_iter()
            .collect();
        if let Some(body_ts) = fields.body_timestamp.map(|t| format!("{t}")) {
            if !stamps.contains(&body_ts) {
                stamps.push(body_ts);
            }
        }
        stamps
            .into_iter()
            .map(|stamp| Challenge {
                header: SignatureHeader::Simple,
                form: SignedMessage::SimpleFields,
                claimed,
                message: Cow::Owned(
                    format!(
                        "{stamp}:{}:{}:{}",
                        fields.session_id, fields.status, fields.webhook_type
                    )
                    .into_bytes(),
                ),
            })
            .collect()
    }
}

impl<'a> Iterator for ChallengeTiers<'a> {
    type Item = Vec<Challenge<'a>>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            let (tier, after) = match self.next {
                Tier::Raw => (self.raw_tier(), Tier::Canonical),
                Tier::Canonical => (self.canonical_tier(), Tier::Simple),
                Tier::Simple => (self.simple_tier(), Tier::Done),
                Tier::Done => return None,
            };
            self.next = after;
            if !tier.is_empty() {
                return Some(tier);
            }
        }
    }
}

/// The challenges a delivery poses, tier by tier.
///
/// `envelope` is the body read as a Didit envelope, when it is one (the simple form needs its
/// fields). A header whose value is not a 64-digit hex tag poses no challenge: it cannot match.
pub fn challenges<'a>(
    body: &'a [u8],
    headers: &SignatureHeaders<'a>,
    envelope: Option<&Envelope<'_>>,
    allow_simple: bool,
) -> Result<ChallengeTiers<'a>, VerifyError> {
    let any_full = headers.signature.is_some() || headers.signature_v2.is_some();
    if !any_full && headers.signature_simple.is_none() {
        return Err(VerifyError::MissingSignature);
    }
    if !any_full && !allow_simple {
        return Err(VerifyError::SimpleSignatureNotAllowed);
    }
    let simple_fields = envelope.filter(|_| allow_simple).and_then(|envelope| {
        Some(SimpleFields {
            session_id: envelope.session_id.as_deref()?.into(),
            status: envelope.status.as_deref()?.into(),
            webhook_type: envelope.webhook_type.as_deref()?.into(),
            body_timestamp: envelope.timestamp,
        })
    });
    Ok(ChallengeTiers {
        body,
        raw: headers.signature.and_then(decode_tag),
        canonical: headers.signature_v2.and_then(decode_tag),
        simple: headers
            .signature_simple
            .and_then(decode_tag)
            .filter(|_| allow_simple),
        x_timestamp: headers.timestamp,
        simple_fields,
        next: Tier::Raw,
    })
}

/// Answers the challenges synchronously with `mac`, tier by tier, trying each secret on each
/// challenge in order, and stops at the first match.
pub fn answer(
    tiers: ChallengeTiers<'_>,
    secrets: &WebhookSecrets,
    mac: &mut impl HmacSha256,
) -> Result<Verified, VerifyError> {
    for tier in tiers {
        for challenge in &tier {
            for (secret_index, secret) in secrets.iter().enumerate() {
                if challenge.is_answered_by(&mac.tag(secret.key(), challenge.message())) {
                    return Ok(challenge.verified_with(secret_index));
                }
            }
        }
    }
    Err(VerifyError::SignatureMismatch)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mac::RustCrypto;
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    fn sign(secret: &str, message: &[u8]) -> alloc::string::String {
        hex::encode(RustCrypto.tag(secret.as_bytes(), message))
    }

    const BODY: &[u8] = br#"{"webhook_type":"status.updated","session_id":"s1","status":"Approved","timestamp":1700000000,"name":"Jos\u00e9"}"#;

    #[test]
    fn raw_signature_matches_in_either_hex_case() {
        let secrets = WebhookSecrets::parse("k").expect("secret");
        for tag in [sign("k", BODY), sign("k", BODY).to_uppercase()] {
            let headers = SignatureHeaders {
                signature: Some(&tag),
                ..Default::default()
            };
            let list = challenges(BODY, &headers, None, false).expect("challenges");
            let verified = answer(list, &secrets, &mut RustCrypto).expect("verifies");
            assert_eq!(verified.header, SignatureHeader::Raw);
        }
    }

    #[test]
    fn malformed_tags_are_mismatches_not_panics() {
        let secrets = WebhookSecrets::parse("k").expect("secret");
        for bad in [
            "",
            "zz",
            "abc",
            &"0".repeat(63),
            &"0".repeat(65),
            "é",
            &"g".repeat(64),
        ] {
            let headers = SignatureHeaders {
                signature: Some(bad),
                ..Default::default()
            };
            let list = challenges(BODY, &headers, None, false).expect("challenges");
            assert_eq!(
                answer(list, &secrets, &mut RustCrypto),
                Err(VerifyError::SignatureMismatch)
            );
        }
    }

    #[test]
    fn second_secret_verifies_during_rotation() {
        let secrets = WebhookSecrets::parse("new,old").expect("secrets");
        let tag = sign("old", BODY);
        let headers = SignatureHeaders {
            signature: Some(&tag),
            ..Default::default()
        };
        let list = challenges(BODY, &headers, None, false).expect("challenges");
        assert_eq!(
            answer(list, &secrets, &mut RustCrypto).map(|v| v.secret_index),
            Ok(1)
        );
    }

    #[test]
    fn v2_accepts_each_canonical_variant() {
        let secrets = WebhookSecrets::parse("k").expect("secret");
        let escaped = r#"{"name":"Jos\u00e9","session_id":"s1","status":"Approved","timestamp":1700000000,"webhook_type":"status.updated"}"#;
        let utf8 = "{\"name\":\"Jos\u{e9}\",\"session_id\":\"s1\",\"status\":\"Approved\",\"timestamp\":1700000000,\"webhook_type\":\"status.updated\"}";
        for (message, non_ascii, prefix) in [
            (escaped.into(), NonAscii::Escaped, false),
            (utf8.into(), NonAscii::Utf8, false),
            (format!("1700000000:{escaped}"), NonAscii::Escaped, true),
            (format!("1700000000:{utf8}"), NonAscii::Utf8, true),
        ] {
            let tag = sign("k", message.as_bytes());
            let headers = SignatureHeaders {
                signature_v2: Some(&tag),
                timestamp: Some("1700000000"),
                ..Default::default()
            };
            let list = challenges(BODY, &headers, None, false).expect("challenges");
            let verified = answer(list, &secrets, &mut RustCrypto).expect("verifies");
            assert_eq!(
                verified.form,
                SignedMessage::Canonical {
                    non_ascii,
                    timestamp_prefix: prefix
                }
            );
        }
    }

    #[test]
    fn simple_signature_only_when_allowed() {
        let envelope = Envelope::parse(BODY).expect("envelope");
        let secrets = WebhookSecrets::parse("k").expect("secret");
        let tag = sign("k", b"1700000000:s1:Approved:status.updated");
        let headers = SignatureHeaders {
            signature_simple: Some(&tag),
            timestamp: Some("1700000000"),
            ..Default::default()
        };
        assert_eq!(
            challenges(BODY, &headers, Some(&envelope), false).err(),
            Some(VerifyError::SimpleSignatureNotAllowed)
        );
        let list = challenges(BODY, &headers, Some(&envelope), true).expect("challenges");
        let verified = answer(list, &secrets, &mut RustCrypto).expect("verifies");
        assert_eq!(verified.header, SignatureHeader::Simple);
        assert!(!verified.header.covers_payload());
    }

    #[test]
    fn canonical_forms_are_built_only_when_the_raw_body_fails() {
        let tag = sign("k", BODY);
        let headers = SignatureHeaders {
            signature: Some(&tag),
            signature_v2: Some(&tag),
            timestamp: Some("1700000000"),
            ..Default::default()
        };
        let mut tiers = challenges(BODY, &headers, None, false).expect("challenges");
        let first = tiers.next().expect("raw tier");
        assert_eq!(first.len(), 1);
        assert_eq!(first[0].form(), SignedMessage::RawBody);
        let second = tiers.next().expect("canonical tier");
        // Two non-ASCII modes (the body has an escaped é), each with and without the prefix.
        assert_eq!(second.len(), 4);
        assert!(second
            .iter()
            .all(|c| c.header() == SignatureHeader::Canonical));
        assert!(tiers.next().is_none());
    }

    #[test]
    fn a_large_body_whose_raw_signature_failed_is_not_canonicalized() {
        let padding = "x".repeat(MAX_CANONICAL_FALLBACK_BYTES);
        let body = alloc::format!(r#"{{"webhook_type":"status.updated","pad":"{padding}"}}"#);
        let v2 = CanonicalJson::parse(body.as_bytes())
            .expect("json")
            .to_string(NonAscii::Escaped);
        let v2_tag = sign("k", v2.as_bytes());
        let wrong = "0".repeat(64);
        let secrets = WebhookSecrets::parse("k").expect("secret");
        // With a failing X-Signature, the large body's V2 is not even tried...
        let with_raw = SignatureHeaders {
            signature: Some(&wrong),
            signature_v2: Some(&v2_tag),
            ..Default::default()
        };
        let mut tiers = challenges(body.as_bytes(), &with_raw, None, false).expect("challenges");
        assert_eq!(tiers.next().map(|t| t.len()), Some(1), "the raw tier");
        assert!(tiers.next().is_none(), "no canonical tier");
        // ...while V2 alone still vouches for it.
        let v2_only = SignatureHeaders {
            signature_v2: Some(&v2_tag),
            ..Default::default()
        };
        let list = challenges(body.as_bytes(), &v2_only, None, false).expect("challenges");
        assert_eq!(
            answer(list, &secrets, &mut RustCrypto).map(|v| v.header),
            Ok(SignatureHeader::Canonical)
        );
    }

    #[test]
    fn no_headers_is_missing_signature() {
        assert_eq!(
            challenges(BODY, &SignatureHeaders::default(), None, true).err(),
            Some(VerifyError::MissingSignature)
        );
    }
}
