//! Cloudflare Access in front of the console and the admin API: the `Cf-Access-Jwt-Assertion`
//! header Access adds to every request it lets through, and the team's published keys (JWKS).
//!
//! The core parses the assertion and the keys and judges every claim; the RS256 signature
//! itself is checked by the adapter with WebCrypto (an RSA crate would cost the upload more than
//! the whole console), and its verdict comes back in before a single claim is read. Which
//! identity is an operator and which may only read is [`AccessConfig::role_of`].

use alloc::string::String;
use alloc::vec::Vec;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use core::fmt;
use serde_json::Value;

use crate::admin::Role;

/// Longest assertion read at all: Access's are about a kilobyte.
pub const MAX_ASSERTION_LEN: usize = 8192;
/// Clock skew tolerated between Access and the edge, on `exp`, `nbf` and `iat`.
pub const LEEWAY_SECS: i64 = 60;
/// Shortest wait between two fetches of the keys caused by an unknown `kid`, so that forged
/// assertions naming random keys cannot make every request a subrequest.
pub const REFETCH_AFTER_SECS: i64 = 30;
/// How long fetched keys are used before they are fetched again anyway (Access rotates its
/// keys every six weeks and keeps the previous one valid for seven days).
pub const KEYS_FRESH_SECS: i64 = 3600;

/// How Access is set up for this receiver.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AccessConfig {
    /// `https://<team>.cloudflareaccess.com`: the `iss` every assertion must carry.
    pub issuer: String,
    /// Where the team's keys are published (the issuer's `/cdn-cgi/access/certs` unless set).
    pub jwks_url: String,
    /// The Access application's audience tag, which `aud` must contain.
    pub audience: String,
    /// Identities (emails, or service tokens' client ids) that are operators, lower-cased.
    pub operators: Vec<String>,
    /// Identities that may read; `None`: every identity Access lets through may.
    pub readers: Option<Vec<String>>,
}

impl AccessConfig {
    /// The role of an identity Access vouched for, or why it has none here.
    pub fn role_of(&self, identity: &Identity) -> Result<Role, AccessError> {
        let name = identity.name.to_ascii_lowercase();
        if self.operators.contains(&name) {
            return Ok(Role::Operator);
        }
        match &self.readers {
            None => Ok(Role::ReadOnly),
            Some(readers) if readers.contains(&name) => Ok(Role::ReadOnly),
            Some(_) => Err(AccessError::NotListed),
        }
    }
}

/// Who an assertion names once every check passed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Identity {
    /// The user's `email`, or a service token's `common_name` (its client id).
    pub name: String,
}

/// Why an assertion was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum AccessError {
    /// Not three base64url parts holding JSON, or longer than [`MAX_ASSERTION_LEN`].
    Malformed,
    /// The header names an algorithm other than RS256, or no `kid`.
    Algorithm,
    /// No published key has the assertion's `kid`, even after fetching them again.
    UnknownKey,
    /// The signature does not verify under the named key.
    Signature,
    /// `iss` is not the configured team.
    WrongIssuer,
    /// `aud` does not contain the configured application audience.
    WrongAudience,
    /// `exp` has passed (beyond the leeway), or is missing.
    Expired,
    /// `nbf` or `iat` is in the future (beyond the leeway).
    NotYetValid,
    /// Neither `email` nor `common_name` names who it is.
    NoIdentity,
    /// A valid identity that `ACCESS_READERS` does not list.
    NotListed,
    /// The team's keys could not be read as a JWKS.
    Keys,
}

impl fmt::Display for AccessError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Malformed => "the Access assertion is not a well-formed JWT",
            Self::Algorithm => "the Access assertion must be RS256 with a `kid`",
            Self::UnknownKey => "the Access assertion names a key the team does not publish",
            Self::Signature => "the Access assertion's signature does not verify",
            Self::WrongIssuer => "the Access assertion is from another team (ACCESS_TEAM_DOMAIN)",
            Self::WrongAudience => "the Access assertion is for another application (ACCESS_AUD)",
            Self::Expired => "the Access assertion has expired",
            Self::NotYetValid => "the Access assertion is not valid yet",
            Self::NoIdentity => "the Access assertion names no email or service token",
            Self::NotListed => "this Access identity is not allowed here (ACCESS_READERS)",
            Self::Keys => "the Access team's keys could not be read",
        })
    }
}

impl core::error::Error for AccessError {}

fn decode(part: &str) -> Result<Vec<u8>, AccessError> {
    URL_SAFE_NO_PAD
        .decode(part)
        .map_err(|_| AccessError::Malformed)
}

/// A JSON object. Read as a `Value`, whose reader the upload already holds, rather than
/// through derived readers of their own (docs/performance.md): these are few small objects.
fn object(bytes: &[u8]) -> Result<Value, AccessError> {
    core::str::from_utf8(bytes)
        .ok()
        .and_then(|text| crate::json::from_str::<Value>(text).ok())
        .filter(Value::is_object)
        .ok_or(AccessError::Malformed)
}

fn text<'v>(value: &'v Value, key: &str) -> Option<&'v str> {
    value.get(key).and_then(Value::as_str)
}

/// An assertion split and decoded, its signature not yet checked: what the adapter needs to
/// check it (the key's id, the signed bytes, the signature), and its claims, which
/// [`Assertion::identity`] reads only after that check.
#[derive(Debug)]
pub struct Assertion<'t> {
    /// The published key it says it is signed with.
    pub kid: String,
    signed: &'t str,
    signature: Vec<u8>,
    claims: Vec<u8>,
}

impl<'t> Assertion<'t> {
    /// Splits and decodes `token`; refuses any algorithm but RS256 before a key is looked at.
    pub fn parse(token: &'t str) -> Result<Self, AccessError> {
        let token = token.trim();
        if token.len() > MAX_ASSERTION_LEN {
            return Err(AccessError::Malformed);
        }
        let mut parts = token.split('.');
        let (Some(header_b64), Some(claims_b64), Some(signature_b64), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(AccessError::Malformed);
        };
        let header = object(&decode(header_b64)?)?;
        let kid = match text(&header, "kid") {
            Some(kid)
                if text(&header, "alg") == Some("RS256")
                    && header.get("crit").is_none()
                    && !kid.is_empty() =>
            {
                kid.into()
            }
            _ => return Err(AccessError::Algorithm),
        };
        let signed = token
            .get(..header_b64.len() + 1 + claims_b64.len())
            .ok_or(AccessError::Malformed)?;
        Ok(Self {
            kid,
            signed,
            signature: decode(signature_b64)?,
            claims: decode(claims_b64)?,
        })
    }

    /// The bytes the signature covers.
    pub fn signed(&self) -> &[u8] {
        self.signed.as_bytes()
    }

    /// The RS256 signature.
    pub fn signature(&self) -> &[u8] {
        &self.signature
    }

    /// Who it names, once the adapter found its signature `verified` under the key it names:
    /// issued by the configured team, for the configured application, valid at `now_secs`.
    pub fn identity(
        &self,
        verified: bool,
        config: &AccessConfig,
        now_secs: i64,
    ) -> Result<Identity, AccessError> {
        if !verified {
            return Err(AccessError::Signature);
        }
        let claims = object(&self.claims)?;
        if text(&claims, "iss") != Some(config.issuer.as_str()) {
            return Err(AccessError::WrongIssuer);
        }
        let audience = Some(config.audience.as_str());
        let for_us = match claims.get("aud") {
            Some(Value::Array(many)) => many.iter().any(|one| one.as_str() == audience),
            Some(one) => one.as_str() == audience,
            None => false,
        };
        if !for_us {
            return Err(AccessError::WrongAudience);
        }
        let time = |key| claims.get(key).and_then(Value::as_i64);
        if time("exp").is_none_or(|exp| exp.saturating_add(LEEWAY_SECS) <= now_secs) {
            return Err(AccessError::Expired);
        }
        let early = |key| time(key).is_some_and(|at| at > now_secs.saturating_add(LEEWAY_SECS));
        if early("nbf") || early("iat") {
            return Err(AccessError::NotYetValid);
        }
        let name = text(&claims, "email")
            .or_else(|| text(&claims, "common_name"))
            .filter(|name| !name.is_empty() && name.len() <= 320)
            .ok_or(AccessError::NoIdentity)?;
        Ok(Identity { name: name.into() })
    }
}

/// One RSA key of the team's JWKS, as WebCrypto's `importKey("jwk", …)` takes it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RsaKey {
    /// The key's id, matched against an assertion's `kid`.
    pub kid: String,
    /// The modulus, base64url.
    pub n: String,
    /// The public exponent, base64url.
    pub e: String,
}

/// The team's published keys: the RSA signing keys of `{"keys":[…]}`; others are skipped.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Jwks {
    /// The usable keys.
    pub keys: Vec<RsaKey>,
}

impl Jwks {
    /// Reads a JWKS document, keeping each RSA key meant for RS256 signatures.
    pub fn parse(document: &str) -> Result<Self, AccessError> {
        let document: Value = crate::json::from_str(document).map_err(|_| AccessError::Keys)?;
        let entries = document
            .get("keys")
            .and_then(Value::as_array)
            .ok_or(AccessError::Keys)?;
        let keys = entries
            .iter()
            .filter(|entry| {
                let is_or_absent = |key, want| text(entry, key).is_none_or(|v| v == want);
                text(entry, "kty") == Some("RSA")
                    && is_or_absent("alg", "RS256")
                    && is_or_absent("use", "sig")
            })
            .filter_map(|entry| {
                Some(RsaKey {
                    kid: text(entry, "kid")?.into(),
                    n: text(entry, "n")?.into(),
                    e: text(entry, "e")?.into(),
                })
            })
            .collect();
        Ok(Self { keys })
    }

    /// The key named `kid`.
    pub fn key(&self, kid: &str) -> Option<&RsaKey> {
        self.keys.iter().find(|key| key.kid == kid)
    }
}

/// Whether keys fetched at `fetched_at` (never: `None`) should be fetched again before judging
/// an assertion whose key is `known` or not, a fetch having last failed at `failed_at`: an
/// unknown key after a rotation is fetched at once, known keys are kept [`KEYS_FRESH_SECS`],
/// and no fetch follows another within [`REFETCH_AFTER_SECS`], whether it worked or failed, so
/// that a keys URL that is down cannot turn each forged assertion into a subrequest either.
pub fn fetch_keys(
    fetched_at: Option<i64>,
    failed_at: Option<i64>,
    known: bool,
    now_secs: i64,
) -> bool {
    if failed_at.is_some_and(|at| now_secs.saturating_sub(at) < REFETCH_AFTER_SECS) {
        return false;
    }
    let Some(at) = fetched_at else {
        return true;
    };
    let age = now_secs.saturating_sub(at);
    age >= KEYS_FRESH_SECS || (!known && age >= REFETCH_AFTER_SECS)
}

/// The comma-separated identities of `ACCESS_OPERATORS` or `ACCESS_READERS`, lower-cased
/// (emails compare without case); `None` when one is blank.
pub fn identities(text: &str) -> Option<Vec<String>> {
    text.split(',')
        .map(|one| {
            let one = one.trim();
            (!one.is_empty() && one.len() <= 320).then(|| one.to_ascii_lowercase())
        })
        .collect()
}

/// The issuer named by `ACCESS_TEAM_DOMAIN` (`myteam.cloudflareaccess.com`, with or without
/// `https://`), or `None` when it is not a bare host name.
pub fn issuer(team_domain: &str) -> Option<String> {
    let host = team_domain.trim();
    let host = host.strip_prefix("https://").unwrap_or(host);
    let host = host.strip_suffix('/').unwrap_or(host);
    let valid = !host.is_empty()
        && host.len() <= 253
        && host.contains('.')
        && host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.');
    valid.then(|| alloc::format!("https://{host}"))
}

#[cfg(test)]
mod tests;
