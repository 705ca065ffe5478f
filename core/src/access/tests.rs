use alloc::string::{String, ToString};
use alloc::vec;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use serde_json::{json, Value};
#[cfg(target_arch = "wasm32")]
use wasm_bindgen_test::wasm_bindgen_test as test;

use super::*;

const NOW: i64 = 1_800_000_000;
const AUD: &str = "4714c1358e65fe4b408ad6d432a5f878f08194bdb4752441fd56faefa9b2b6f2";

fn config() -> AccessConfig {
    AccessConfig {
        issuer: "https://team.cloudflareaccess.com".into(),
        jwks_url: "https://team.cloudflareaccess.com/cdn-cgi/access/certs".into(),
        audience: AUD.into(),
        operators: vec!["ops@example.com".into()],
        readers: None,
    }
}

fn token(header: &Value, claims: &Value) -> String {
    alloc::format!(
        "{}.{}.{}",
        URL_SAFE_NO_PAD.encode(header.to_string()),
        URL_SAFE_NO_PAD.encode(claims.to_string()),
        URL_SAFE_NO_PAD.encode(b"signature-bytes")
    )
}

fn claims() -> Value {
    json!({"iss": "https://team.cloudflareaccess.com", "aud": [AUD], "exp": NOW + 300,
           "iat": NOW - 10, "nbf": NOW - 10, "email": "Ops@Example.com", "sub": "u1"})
}

fn rs256() -> Value {
    json!({"alg": "RS256", "kid": "k1", "typ": "JWT"})
}

fn identity_of(claims: &Value) -> Result<Identity, AccessError> {
    let text = token(&rs256(), claims);
    Assertion::parse(&text)?.identity(true, &config(), NOW)
}

#[test]
fn a_signed_assertion_for_this_team_and_application_names_its_identity() {
    let text = token(&rs256(), &claims());
    let assertion = Assertion::parse(&text).expect("parses");
    assert_eq!(assertion.kid, "k1");
    assert_eq!(assertion.signature(), b"signature-bytes");
    let (signed, _) = text.rsplit_once('.').expect("three parts");
    assert_eq!(assertion.signed(), signed.as_bytes());
    let identity = assertion.identity(true, &config(), NOW).expect("valid");
    assert_eq!(identity.name, "Ops@Example.com");
    assert_eq!(config().role_of(&identity), Ok(Role::Operator));
    // The signature verdict comes first: nothing else is looked at without it.
    assert_eq!(
        assertion.identity(false, &config(), NOW),
        Err(AccessError::Signature)
    );
}

#[test]
fn only_rs256_with_a_key_id_is_read() {
    for header in [
        json!({"alg": "none", "kid": "k1"}),
        json!({"alg": "HS256", "kid": "k1"}),
        json!({"alg": "RS256"}),
        json!({"alg": "RS256", "kid": ""}),
        json!({"alg": "RS256", "kid": "k1", "crit": ["x"]}),
    ] {
        let text = token(&header, &claims());
        assert_eq!(
            Assertion::parse(&text).map(|a| a.kid),
            Err(AccessError::Algorithm),
            "{header}"
        );
    }
    for text in [
        "",
        "a.b",
        "a.b.c.d",
        "!!.e30.c2ln",
        &"a".repeat(MAX_ASSERTION_LEN + 1),
    ] {
        assert_eq!(
            Assertion::parse(text).map(|a| a.kid),
            Err(AccessError::Malformed)
        );
    }
}

#[test]
fn every_claim_is_checked() {
    let with = |key: &str, value: Value| {
        let mut claims = claims();
        claims[key] = value;
        identity_of(&claims)
    };
    let without = |key: &str| {
        let mut claims = claims();
        claims.as_object_mut().expect("object").remove(key);
        identity_of(&claims)
    };
    assert_eq!(
        with("iss", json!("https://other.cloudflareaccess.com")),
        Err(AccessError::WrongIssuer)
    );
    assert_eq!(without("iss"), Err(AccessError::WrongIssuer));
    assert_eq!(
        with("aud", json!(["another-app"])),
        Err(AccessError::WrongAudience)
    );
    assert_eq!(without("aud"), Err(AccessError::WrongAudience));
    assert!(
        with("aud", json!(AUD)).is_ok(),
        "one string is an audience too"
    );
    assert_eq!(
        with("exp", json!(NOW - LEEWAY_SECS)),
        Err(AccessError::Expired)
    );
    assert!(
        with("exp", json!(NOW - LEEWAY_SECS + 1)).is_ok(),
        "within the leeway"
    );
    assert_eq!(without("exp"), Err(AccessError::Expired));
    assert_eq!(
        with("nbf", json!(NOW + LEEWAY_SECS + 1)),
        Err(AccessError::NotYetValid)
    );
    assert_eq!(
        with("iat", json!(NOW + LEEWAY_SECS + 1)),
        Err(AccessError::NotYetValid)
    );
    assert!(with("nbf", json!(NOW + LEEWAY_SECS)).is_ok());
    assert_eq!(without("email"), Err(AccessError::NoIdentity));
    assert_eq!(with("email", json!("")), Err(AccessError::NoIdentity));
    let mut service = claims();
    service.as_object_mut().expect("object").remove("email");
    service["common_name"] = json!("abc.access");
    assert_eq!(
        identity_of(&service).map(|i| i.name),
        Ok("abc.access".into())
    );
}

#[test]
fn operators_and_readers_by_list() {
    let anyone = config();
    let reader = Identity {
        name: "someone@example.com".into(),
    };
    assert_eq!(anyone.role_of(&reader), Ok(Role::ReadOnly));
    let listed = AccessConfig {
        readers: identities("a@example.com, Someone@Example.com"),
        ..config()
    };
    assert_eq!(listed.role_of(&reader), Ok(Role::ReadOnly));
    assert_eq!(
        listed.role_of(&Identity {
            name: "stranger@example.com".into()
        }),
        Err(AccessError::NotListed)
    );
    assert_eq!(
        listed.role_of(&Identity {
            name: "OPS@example.com".into()
        }),
        Ok(Role::Operator)
    );
    assert_eq!(identities("a@x.com,,b@x.com"), None);
    assert_eq!(identities(" "), None);
}

#[test]
fn the_teams_keys_are_its_rsa_signing_keys() {
    let jwks = Jwks::parse(
        &json!({"keys": [
            {"kid": "k1", "kty": "RSA", "alg": "RS256", "use": "sig", "e": "AQAB", "n": "xyz"},
            {"kid": "k2", "kty": "RSA", "e": "AQAB", "n": "abc"},
            {"kid": "ec", "kty": "EC", "crv": "P-256", "x": "a", "y": "b"},
            {"kid": "enc", "kty": "RSA", "use": "enc", "e": "AQAB", "n": "abc"},
            {"kid": "ps", "kty": "RSA", "alg": "PS256", "e": "AQAB", "n": "abc"},
            {"kty": "RSA", "e": "AQAB", "n": "no-kid"}
        ], "public_cert": {"kid": "k1", "cert": "…"}})
        .to_string(),
    )
    .expect("a JWKS");
    let kids: Vec<&str> = jwks.keys.iter().map(|k| k.kid.as_str()).collect();
    assert_eq!(kids, ["k1", "k2"]);
    assert_eq!(jwks.key("k1").map(|k| k.n.as_str()), Some("xyz"));
    assert_eq!(jwks.key("ec"), None);
    assert_eq!(Jwks::parse("{}"), Err(AccessError::Keys));
    assert_eq!(Jwks::parse("<html>"), Err(AccessError::Keys));
}

#[test]
fn keys_are_fetched_when_missing_old_or_unknown_but_not_on_every_forged_kid() {
    let fetched = |at: i64| (Some(at), None);
    let check = |(fetched_at, failed_at): (Option<i64>, Option<i64>), known| {
        fetch_keys(fetched_at, failed_at, known, NOW)
    };
    assert!(check((None, None), false));
    assert!(!check(fetched(NOW - 5), true));
    assert!(!check(fetched(NOW - REFETCH_AFTER_SECS + 1), false));
    assert!(check(fetched(NOW - REFETCH_AFTER_SECS), false));
    assert!(!check(fetched(NOW - KEYS_FRESH_SECS + 1), true));
    assert!(check(fetched(NOW - KEYS_FRESH_SECS), true));
    // A failed fetch waits as long as a successful one, with keys held or without.
    assert!(!check((None, Some(NOW - REFETCH_AFTER_SECS + 1)), false));
    assert!(check((None, Some(NOW - REFETCH_AFTER_SECS)), false));
    let stale = Some(NOW - KEYS_FRESH_SECS);
    assert!(!check((stale, Some(NOW - 1)), true));
    assert!(check((stale, Some(NOW - REFETCH_AFTER_SECS)), true));
}

#[test]
fn the_team_domain_names_the_issuer() {
    assert_eq!(
        issuer("myteam.cloudflareaccess.com").as_deref(),
        Some("https://myteam.cloudflareaccess.com")
    );
    assert_eq!(
        issuer(" https://myteam.cloudflareaccess.com/ ").as_deref(),
        Some("https://myteam.cloudflareaccess.com")
    );
    for bad in ["", "myteam", "https://a.b/path", "a b.com", "http://x.y:80"] {
        assert_eq!(issuer(bad), None, "{bad}");
    }
}
