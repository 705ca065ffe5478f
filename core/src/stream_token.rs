//! Who may watch which identity statuses: the short-lived token an integrator's backend issues
//! for the status stream, a JWT signed HS256 with `STREAM_TOKEN_SECRET`.
//!
//! Verification is deliberately narrow: the algorithm is pinned to HS256 (so `none` and
//! algorithm-confusion tokens are refused before any key is used), the signature is checked in
//! constant time before a single claim is read, the token must name this receiver in `aud`
//! (so a token the same backend signs for another service cannot open the stream), `nbf` is
//! honoured, and the clock is passed in.

use alloc::string::String;
use alloc::vec::Vec;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use core::fmt;
use serde::{Deserialize, Serialize};

use crate::mac::{tags_equal, HmacSha256, Tag, TAG_LEN};
use crate::secret::SecretBytes;

/// Shortest accepted `STREAM_TOKEN_SECRET`: HS256 keys shorter than the hash are guessable.
pub const MIN_SECRET_LEN: usize = 32;
/// Longest token read at all: a real one is a few hundred bytes.
pub const MAX_TOKEN_LEN: usize = 4096;
/// Default and largest lifetime of a token (`exp` − `iat`, and `exp` − now).
pub const DEFAULT_MAX_LIFETIME_SECS: u64 = 900;
/// Clock skew tolerated between the issuing backend and the edge.
pub const CLOCK_SKEW_SECS: i64 = 30;

/// The key that signs stream tokens; never printed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StreamTokenSecret(SecretBytes);

impl StreamTokenSecret {
    /// Takes the secret's UTF-8 bytes as the HMAC key (what JWT libraries do with a string
    /// secret). Refuses short ones, giving only the length.
    pub fn parse(text: &str) -> Result<Self, usize> {
        let text = text.trim();
        if text.len() < MIN_SECRET_LEN {
            return Err(text.len());
        }
        Ok(Self(SecretBytes::new(text.as_bytes())))
    }

    /// The key bytes, for the HMAC provider.
    pub fn key(&self) -> &[u8] {
        self.0.expose()
    }
}

/// What a token lets its holder see.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scope {
    /// Only events whose `vendor_data` is the token's `sub` (`"self"`).
    OwnEvents,
    /// Every event (`"admin"`).
    Admin,
}

crate::named::by_name!(Scope {
    OwnEvents = "self",
    Admin = "admin",
});

/// A verified token's grant.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Grant {
    /// The integrator's user id, matched against `vendor_data`.
    pub sub: String,
    /// Session ids the holder may watch; `None`: every session of `sub`.
    pub sessions: Option<Vec<String>>,
    /// What the holder may see.
    pub scope: Scope,
    /// The token's id: a token opens at most one connection.
    pub jti: String,
    /// When the token stops being valid (Unix seconds): the connection closes then.
    pub exp: i64,
}

/// Why a token was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum TokenError {
    /// Not three base64url parts holding JSON, or longer than [`MAX_TOKEN_LEN`].
    Malformed,
    /// The header names an algorithm other than HS256 (`none` included), or critical extensions.
    Algorithm,
    /// The signature does not match the secret.
    Signature,
    /// A required claim is missing or has the wrong type.
    MissingClaim(&'static str),
    /// `exp` has passed.
    Expired,
    /// `iat` is in the future (beyond the tolerated clock skew).
    IssuedInFuture,
    /// The token lives longer than the configured maximum.
    TooLongLived,
    /// `scope` is neither `self` nor `admin`.
    UnknownScope,
    /// `aud` is missing or does not name this receiver.
    WrongAudience,
    /// `nbf` is still in the future (beyond the tolerated clock skew).
    NotYetValid,
}

impl fmt::Display for TokenError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Malformed => f.write_str("the token is not a well-formed JWT"),
            Self::Algorithm => f.write_str("the token must be signed with HS256"),
            Self::Signature => f.write_str("the token's signature does not match"),
            Self::MissingClaim(claim) => write!(f, "the token has no valid `{claim}` claim"),
            Self::Expired => f.write_str("the token has expired"),
            Self::IssuedInFuture => f.write_str("the token's `iat` is in the future"),
            Self::TooLongLived => f.write_str("the token lives longer than the edge allows"),
            Self::UnknownScope => f.write_str("the token's `scope` must be `self` or `admin`"),
            Self::WrongAudience => {
                f.write_str("the token's `aud` must name this receiver (STREAM_TOKEN_AUDIENCE)")
            }
            Self::NotYetValid => f.write_str("the token's `nbf` is in the future"),
        }
    }
}

impl core::error::Error for TokenError {}

#[derive(Deserialize)]
struct Header<'a> {
    alg: &'a str,
    #[serde(default)]
    typ: Option<&'a str>,
    #[serde(default)]
    crit: Option<serde_json::Value>,
}

/// Claims as sent; each is checked after the signature.
#[derive(Deserialize)]
struct Claims {
    #[serde(default)]
    sub: Option<String>,
    #[serde(default)]
    sessions: Option<Vec<String>>,
    #[serde(default)]
    scope: Option<String>,
    #[serde(default)]
    exp: Option<i64>,
    #[serde(default)]
    iat: Option<i64>,
    #[serde(default)]
    jti: Option<String>,
    #[serde(default)]
    nbf: Option<i64>,
    #[serde(default)]
    aud: Option<Audience>,
}

/// `aud` as RFC 7519 allows it: one string, or a list of which one must match.
enum Audience {
    One(String),
    Many(Vec<String>),
}

/// Read by its JSON type rather than derived `#[serde(untagged)]`, which buffers the value in
/// serde's `Content` tree and tries each variant on it: that machinery was compiled for this
/// and one other field (docs/performance.md). Accepts the same: a string, or a list of strings.
impl<'de> Deserialize<'de> for Audience {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Shape;
        impl<'de> serde::de::Visitor<'de> for Shape {
            type Value = Audience;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string or a list of strings")
            }
            fn visit_str<E: serde::de::Error>(self, one: &str) -> Result<Audience, E> {
                Ok(Audience::One(one.into()))
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                self,
                mut seq: A,
            ) -> Result<Audience, A::Error> {
                let mut many = Vec::new();
                while let Some(one) = seq.next_element::<String>()? {
                    many.push(one);
                }
                Ok(Audience::Many(many))
            }
        }
        deserializer.deserialize_any(Shape)
    }
}

/// A decoded part as JSON text. JSON is UTF-8, and reading every JSON the edge parses from
/// text keeps one copy of serde_json's parser in the upload instead of one per input type.
fn json_text(part: &[u8]) -> Option<&str> {
    core::str::from_utf8(part).ok()
}

impl Audience {
    fn names(&self, audience: &str) -> bool {
        match self {
            Self::One(one) => one == audience,
            Self::Many(many) => many.iter().any(|one| one == audience),
        }
    }
}

fn decode(part: &str) -> Result<Vec<u8>, TokenError> {
    URL_SAFE_NO_PAD
        .decode(part)
        .map_err(|_| TokenError::Malformed)
}

fn non_empty(value: Option<String>, claim: &'static str) -> Result<String, TokenError> {
    value
        .filter(|v| !v.is_empty() && v.len() <= 256)
        .ok_or(TokenError::MissingClaim(claim))
}

/// What a token is checked against, besides its signature.
#[derive(Clone, Copy, Debug)]
pub struct Expected<'a> {
    /// The `aud` the token must name.
    pub audience: &'a str,
    /// Now, in Unix seconds.
    pub now_secs: i64,
    /// The longest lifetime accepted.
    pub max_lifetime_secs: u64,
}

/// Verifies `token`: HS256 under `secret`, for `expected.audience`, valid now (`nbf` passed,
/// unexpired, issued no later than now) and living at most the longest lifetime. Tags come
/// from `mac`.
pub fn verify(
    token: &str,
    secret: &StreamTokenSecret,
    expected: &Expected<'_>,
    mac: &mut impl HmacSha256,
) -> Result<Grant, TokenError> {
    let (now_secs, max_lifetime_secs) = (expected.now_secs, expected.max_lifetime_secs);
    if token.len() > MAX_TOKEN_LEN {
        return Err(TokenError::Malformed);
    }
    let mut parts = token.split('.');
    let (Some(header_b64), Some(claims_b64), Some(signature_b64), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(TokenError::Malformed);
    };
    let header_json = decode(header_b64)?;
    let header: Header<'_> = json_text(&header_json)
        .and_then(|text| crate::json::from_str(text).ok())
        .ok_or(TokenError::Malformed)?;
    if header.alg != "HS256"
        || header.crit.is_some()
        || header.typ.is_some_and(|t| !t.eq_ignore_ascii_case("JWT"))
    {
        return Err(TokenError::Algorithm);
    }
    let signature = decode(signature_b64)?;
    let claimed: Tag = signature
        .as_slice()
        .try_into()
        .map_err(|_| TokenError::Signature)?;
    let signed_len = header_b64.len() + 1 + claims_b64.len();
    let signed = token.get(..signed_len).ok_or(TokenError::Malformed)?;
    let computed = mac.tag(secret.key(), signed.as_bytes());
    if claimed.len() != TAG_LEN || !tags_equal(&computed, &claimed) {
        return Err(TokenError::Signature);
    }
    let claims_json = decode(claims_b64)?;
    if claims_json.trim_ascii_start().first() != Some(&b'{') {
        return Err(TokenError::Malformed);
    }
    let claims: Claims = json_text(&claims_json)
        .and_then(|text| crate::json::from_str(text).ok())
        .ok_or(TokenError::Malformed)?;
    let sub = non_empty(claims.sub, "sub")?;
    let jti = non_empty(claims.jti, "jti")?;
    let exp = claims.exp.ok_or(TokenError::MissingClaim("exp"))?;
    let iat = claims.iat.ok_or(TokenError::MissingClaim("iat"))?;
    if !claims.aud.is_some_and(|aud| aud.names(expected.audience)) {
        return Err(TokenError::WrongAudience);
    }
    if exp <= now_secs {
        return Err(TokenError::Expired);
    }
    if claims
        .nbf
        .is_some_and(|nbf| nbf > now_secs.saturating_add(CLOCK_SKEW_SECS))
    {
        return Err(TokenError::NotYetValid);
    }
    if iat > now_secs.saturating_add(CLOCK_SKEW_SECS) {
        return Err(TokenError::IssuedInFuture);
    }
    let max = i64::try_from(max_lifetime_secs).unwrap_or(i64::MAX);
    if exp.saturating_sub(iat) > max
        || exp.saturating_sub(now_secs) > max.saturating_add(CLOCK_SKEW_SECS)
    {
        return Err(TokenError::TooLongLived);
    }
    let scope = match claims.scope.as_deref() {
        Some("self") => Scope::OwnEvents,
        Some("admin") => Scope::Admin,
        None => return Err(TokenError::MissingClaim("scope")),
        Some(_) => return Err(TokenError::UnknownScope),
    };
    Ok(Grant {
        sub,
        sessions: claims.sessions,
        scope,
        jti,
        exp,
    })
}

/// The signed part (`header.claims`), and when it expires, of the admin-scope token the console watches the stream
/// with: issued by the edge itself to a signed-in caller (`POST /admin/stream-token`), for
/// `lifetime_secs` (the stream's longest), named `jti` so it opens one connection. The
/// adapter signs it ([`finish`]), so no console ever holds `STREAM_TOKEN_SECRET`.
pub fn console_token(
    audience: &str,
    now_secs: i64,
    lifetime_secs: u64,
    jti: &str,
) -> (String, i64) {
    let exp = now_secs.saturating_add(i64::try_from(lifetime_secs).unwrap_or(i64::MAX));
    // Written by hand, not by a derived serializer (docs/performance.md): the audience is a
    // checked name and the id a UUID, neither needs escaping.
    let claims = alloc::format!(
        r#"{{"sub":"console","scope":"admin","aud":"{audience}","iat":{now_secs},"exp":{exp},"jti":"{jti}"}}"#
    );
    let signed = alloc::format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(br#"{"alg":"HS256","typ":"JWT"}"#),
        URL_SAFE_NO_PAD.encode(claims)
    );
    (signed, exp)
}

/// A token from its signed part and the HMAC-SHA256 tag of it under the stream secret.
pub fn finish(signed: &str, tag: &Tag) -> String {
    alloc::format!("{signed}.{}", URL_SAFE_NO_PAD.encode(tag))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mac::RustCrypto;
    use alloc::format;
    use alloc::string::ToString;
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    const SECRET: &str = "stream-secret-0123456789abcdef-0123456789";
    const NOW: i64 = 1_800_000_000;

    #[test]
    fn the_consoles_token_opens_the_admin_stream_for_its_lifetime() {
        let secret = StreamTokenSecret::parse(SECRET).expect("long");
        let (signed, exp) = console_token("didit-edge", NOW, 900, "jti-1");
        assert_eq!(exp, NOW + 900);
        let token = finish(&signed, &RustCrypto.tag(secret.key(), signed.as_bytes()));
        let expected = Expected {
            audience: "didit-edge",
            now_secs: NOW,
            max_lifetime_secs: 900,
        };
        let grant = verify(&token, &secret, &expected, &mut RustCrypto).expect("valid");
        assert_eq!(
            (grant.scope, grant.exp, grant.jti.as_str()),
            (Scope::Admin, NOW + 900, "jti-1")
        );
        let other = Expected {
            audience: "elsewhere",
            ..expected
        };
        assert_eq!(
            verify(&token, &secret, &other, &mut RustCrypto),
            Err(TokenError::WrongAudience)
        );
    }

    fn secret() -> StreamTokenSecret {
        StreamTokenSecret::parse(SECRET).expect("long enough")
    }

    fn sign(header: &str, claims: &str, key: &str) -> String {
        let signed = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(header),
            URL_SAFE_NO_PAD.encode(claims)
        );
        let tag = RustCrypto.tag(key.as_bytes(), signed.as_bytes());
        format!("{signed}.{}", URL_SAFE_NO_PAD.encode(tag))
    }

    fn token(claims: &str) -> String {
        sign(r#"{"alg":"HS256","typ":"JWT"}"#, claims, SECRET)
    }

    fn claims(extra: &str) -> String {
        format!(
            r#"{{"sub":"user-42","scope":"self","aud":"didit-edge","iat":{},"exp":{},"jti":"j-1"{extra}}}"#,
            NOW - 10,
            NOW + 600
        )
    }

    fn expected(now_secs: i64, max_lifetime_secs: u64) -> Expected<'static> {
        Expected {
            audience: "didit-edge",
            now_secs,
            max_lifetime_secs,
        }
    }

    fn check(token: &str) -> Result<Grant, TokenError> {
        verify(
            token,
            &secret(),
            &expected(NOW, DEFAULT_MAX_LIFETIME_SECS),
            &mut RustCrypto,
        )
    }

    #[test]
    fn a_good_token_grants_what_it_says() {
        assert_eq!(
            check(&token(&claims(
                r#","sessions":["s-1","s-2"],"iss":"backend""#
            ))),
            Ok(Grant {
                sub: "user-42".into(),
                sessions: Some(alloc::vec!["s-1".into(), "s-2".into()]),
                scope: Scope::OwnEvents,
                jti: "j-1".into(),
                exp: NOW + 600,
            })
        );
        let admin = claims("").replace(r#""self""#, r#""admin""#);
        assert_eq!(check(&token(&admin)).map(|g| g.scope), Ok(Scope::Admin));
    }

    #[test]
    fn verifies_the_rfc_7515_hs256_example() {
        // RFC 7515, appendix A.1: its key and token, byte for byte.
        let key = URL_SAFE_NO_PAD
            .decode("AyM1SysPpbyDfgZld3umj1qzKObwVMkoqQ-EstJQLr_T-1qS0gZH75aKtMN3Yj0iPS4hcgUuTwjAzZr1Z9CAow")
            .expect("base64url");
        let token = "eyJ0eXAiOiJKV1QiLA0KICJhbGciOiJIUzI1NiJ9\
                     .eyJpc3MiOiJqb2UiLA0KICJleHAiOjEzMDA4MTkzODAsDQogImh0dHA6Ly9leGFtcGxlLmNvbS9pc19yb290Ijp0cnVlfQ\
                     .dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
        let secret = StreamTokenSecret(SecretBytes::new(key));
        let at = |now| verify(token, &secret, &expected(now, 900), &mut RustCrypto);
        // The signature holds, so the claims are read: the example has no `sub`.
        assert_eq!(at(1_300_819_000), Err(TokenError::MissingClaim("sub")));
        let tampered = token.replace(".dBjf", ".eBjf");
        let tampered = verify(
            &tampered,
            &secret,
            &expected(1_300_819_000, 900),
            &mut RustCrypto,
        );
        assert_eq!(tampered, Err(TokenError::Signature));
    }

    #[test]
    fn only_hs256_under_this_secret_is_accepted() {
        let body = claims("");
        for header in [
            r#"{"alg":"none","typ":"JWT"}"#,
            r#"{"alg":"HS512"}"#,
            r#"{"alg":"RS256"}"#,
            r#"{"alg":"hs256"}"#,
            r#"{"alg":"HS256","crit":["exp"]}"#,
            r#"{"alg":"HS256","typ":"JOSE+JSON"}"#,
        ] {
            assert_eq!(
                check(&sign(header, &body, SECRET)),
                Err(TokenError::Algorithm),
                "{header}"
            );
        }
        // `none` with an empty signature, as an attacker would send it.
        let unsigned = format!(
            "{}.{}.",
            URL_SAFE_NO_PAD.encode(r#"{"alg":"none"}"#),
            URL_SAFE_NO_PAD.encode(&body)
        );
        assert_eq!(check(&unsigned), Err(TokenError::Algorithm));
        let wrong_key = sign(
            r#"{"alg":"HS256"}"#,
            &body,
            "another-secret-0123456789abcdef-xyz",
        );
        assert_eq!(check(&wrong_key), Err(TokenError::Signature));
        let mut tampered = token(&body);
        tampered.push('A');
        assert!(check(&tampered).is_err());
        let good = token(&body);
        let swapped = good.replacen(
            good.split('.').nth(1).expect("claims"),
            &URL_SAFE_NO_PAD.encode(body.replace("user-42", "user-43")),
            1,
        );
        assert_eq!(check(&swapped), Err(TokenError::Signature));
    }

    #[test]
    fn malformed_tokens_never_panic() {
        for text in [
            "",
            ".",
            "..",
            "a.b",
            "a.b.c.d",
            "!!!.???.***",
            "eyJhbGciOiJIUzI1NiJ9.e30",
        ] {
            assert_eq!(check(text), Err(TokenError::Malformed), "{text:?}");
        }
        assert_eq!(
            check(&"a".repeat(MAX_TOKEN_LEN + 1)),
            Err(TokenError::Malformed)
        );
        // Valid structure, JSON that is not an object.
        assert_eq!(check(&token("[]")), Err(TokenError::Malformed));
    }

    #[test]
    fn time_and_claims_are_enforced() {
        let with = |iat: i64, exp: i64| {
            format!(
                r#"{{"sub":"u","scope":"self","aud":"didit-edge","iat":{iat},"exp":{exp},"jti":"j"}}"#
            )
        };
        assert_eq!(
            check(&token(&with(NOW - 700, NOW))),
            Err(TokenError::Expired)
        );
        assert_eq!(
            check(&token(&with(NOW + 60, NOW + 300))),
            Err(TokenError::IssuedInFuture)
        );
        assert!(check(&token(&with(NOW + 20, NOW + 300))).is_ok(), "skew");
        assert_eq!(
            check(&token(&with(NOW, NOW + 901))),
            Err(TokenError::TooLongLived)
        );
        assert_eq!(
            check(&token(&with(NOW - 1_000, NOW + 900))),
            Err(TokenError::TooLongLived),
            "an old iat cannot stretch the lifetime"
        );
        for (claim, body) in [
            ("sub", claims("").replace(r#""sub":"user-42","#, "")),
            ("jti", claims("").replace(r#""jti":"j-1""#, r#""jti":"""#)),
            ("scope", claims("").replace(r#""scope":"self","#, "")),
        ] {
            assert_eq!(
                check(&token(&body)),
                Err(TokenError::MissingClaim(claim)),
                "{body}"
            );
        }
        let no_exp =
            format!(r#"{{"sub":"u","scope":"self","aud":"didit-edge","iat":{NOW},"jti":"j"}}"#);
        assert_eq!(check(&token(&no_exp)), Err(TokenError::MissingClaim("exp")));
        let odd_scope = claims("").replace(r#""self""#, r#""root""#);
        assert_eq!(check(&token(&odd_scope)), Err(TokenError::UnknownScope));
        let string_exp = claims("").replace(&format!("{}", NOW + 600), r#""soon""#);
        assert_eq!(check(&token(&string_exp)), Err(TokenError::Malformed));
    }

    #[test]
    fn the_audience_must_name_this_receiver() {
        let aud = |value: &str| claims("").replace(r#""aud":"didit-edge""#, value);
        for (claim, result) in [
            (r#""aud":["billing","didit-edge"]"#, Ok(())),
            (r#""aud":"billing""#, Err(TokenError::WrongAudience)),
            (r#""aud":[]"#, Err(TokenError::WrongAudience)),
            (r#""aud":5"#, Err(TokenError::Malformed)),
            (r#""x":1"#, Err(TokenError::WrongAudience)),
        ] {
            assert_eq!(check(&token(&aud(claim))).map(|_| ()), result, "{claim}");
        }
    }

    #[test]
    fn a_token_is_not_valid_before_its_nbf() {
        let at = |nbf: i64| claims(&format!(r#","nbf":{nbf}"#));
        assert_eq!(check(&token(&at(NOW + 60))), Err(TokenError::NotYetValid));
        assert!(check(&token(&at(NOW + 20))).is_ok(), "within the skew");
        assert!(check(&token(&at(NOW - 5))).is_ok());
    }

    #[test]
    fn short_secrets_are_refused_and_none_is_printed() {
        assert_eq!(StreamTokenSecret::parse("short"), Err(5));
        assert_eq!(
            format!("{:?}", secret()),
            "StreamTokenSecret(<redacted>)".to_string()
        );
    }
}
