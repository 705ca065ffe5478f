//! `didit-edge token`: a status-stream token as your backend would issue it, an HS256 JWT
//! signed with `STREAM_TOKEN_SECRET`.

use std::time::Duration;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use clap::{Args, ValueEnum};
use didit_edge_core::mac::{HmacSha256, RustCrypto};
use didit_edge_core::stream_token::{StreamTokenSecret, DEFAULT_MAX_LIFETIME_SECS};
use serde_json::{json, Value};

use crate::config::{self, Lookup};
use crate::error::{Failure, Result};

/// The longest lifetime any edge accepts (`STREAM_TOKEN_MAX_LIFETIME_SECS` is at most this).
const LONGEST_LIFETIME_SECS: u64 = 3600;

/// What a token lets its holder see.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub(crate) enum Scope {
    /// Only events whose vendor_data is --sub (narrowed to --sessions when given)
    #[value(name = "self")]
    Own,
    /// Every event (filters go in the watch URL: --type, --risk, --workflow)
    Admin,
}

impl Scope {
    fn claim(self) -> &'static str {
        match self {
            Self::Own => "self",
            Self::Admin => "admin",
        }
    }
}

#[derive(Args, Debug)]
pub(crate) struct TokenArgs {
    /// The user id the token is for, matched against events' vendor_data
    #[arg(long)]
    pub(crate) sub: String,
    /// Only these session ids (comma-separated or repeated)
    #[arg(long, value_delimiter = ',', value_name = "ID")]
    pub(crate) sessions: Vec<String>,
    /// How long the token lives (the edge refuses more than STREAM_TOKEN_MAX_LIFETIME_SECS,
    /// 900 s unless configured)
    #[arg(long, default_value = "10m", value_parser = config::parse_duration, value_name = "DURATION")]
    pub(crate) ttl: Duration,
    /// The audience, the edge's STREAM_TOKEN_AUDIENCE
    #[arg(long, default_value = "didit-edge")]
    pub(crate) aud: String,
    /// What the holder may see
    #[arg(long, value_enum, default_value = "self")]
    pub(crate) scope: Scope,
    /// The HS256 key [default: $STREAM_TOKEN_SECRET, else STREAM_TOKEN_SECRET in ./.dev.vars]
    #[arg(long, value_name = "SECRET")]
    pub(crate) secret: Option<String>,
    /// Print {"token", "claims"} instead of the bare token
    #[arg(long)]
    pub(crate) json: bool,
}

/// The stream secret from a flag, the environment or `.dev.vars`, checked for length.
pub(crate) fn stream_secret(flag: Option<&str>) -> Result<Option<StreamTokenSecret>> {
    let lookup = Lookup {
        flag,
        env: &["STREAM_TOKEN_SECRET"],
        dev_vars: &["STREAM_TOKEN_SECRET"],
    };
    let Some(text) = lookup.find() else {
        return Ok(None);
    };
    StreamTokenSecret::parse(&text).map(Some).map_err(|len| {
        Failure::usage(format!(
            "the stream token secret is {len} bytes; the edge needs at least {}",
            didit_edge_core::stream_token::MIN_SECRET_LEN
        ))
    })
}

fn missing_secret() -> Failure {
    Failure::usage(format!(
        "no stream token secret: pass --secret, or set $STREAM_TOKEN_SECRET or STREAM_TOKEN_SECRET in ./{}",
        config::DEV_VARS
    ))
}

/// Signs `claims` as an HS256 JWT.
pub(crate) fn mint(secret: &StreamTokenSecret, claims: &Value) -> String {
    let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"HS256","typ":"JWT"}"#);
    let payload = URL_SAFE_NO_PAD.encode(claims.to_string());
    let signed = format!("{header}.{payload}");
    let tag = RustCrypto.tag(secret.key(), signed.as_bytes());
    format!("{signed}.{}", URL_SAFE_NO_PAD.encode(tag))
}

/// The claims of a token issued now.
pub(crate) fn claims(
    sub: &str,
    scope: Scope,
    sessions: &[String],
    aud: &str,
    ttl: Duration,
    now: i64,
) -> Result<Value> {
    let lifetime = ttl.as_secs();
    if lifetime == 0 {
        return Err(Failure::usage("--ttl must be at least one second"));
    }
    if lifetime > LONGEST_LIFETIME_SECS {
        return Err(Failure::usage(format!(
            "--ttl {lifetime}s is longer than any edge accepts ({LONGEST_LIFETIME_SECS} s)"
        )));
    }
    if sub.trim().is_empty() || sub.len() > 256 {
        return Err(Failure::usage("--sub must be 1 to 256 bytes"));
    }
    let mut claims = json!({
        "sub": sub, "scope": scope.claim(), "aud": aud, "iat": now,
        "exp": now.saturating_add(i64::try_from(lifetime).unwrap_or(i64::MAX)),
        "jti": config::uuid4()?,
    });
    if !sessions.is_empty() {
        claims["sessions"] = json!(sessions);
    }
    Ok(claims)
}

pub(crate) fn run(args: &TokenArgs) -> Result<()> {
    let secret = stream_secret(args.secret.as_deref())?.ok_or_else(missing_secret)?;
    let claims = claims(
        &args.sub,
        args.scope,
        &args.sessions,
        &args.aud,
        args.ttl,
        config::now_secs(),
    )?;
    if args.ttl.as_secs() > DEFAULT_MAX_LIFETIME_SECS {
        eprintln!(
            "didit-edge: note: an edge with the default STREAM_TOKEN_MAX_LIFETIME_SECS ({DEFAULT_MAX_LIFETIME_SECS}) refuses a token living {} s",
            args.ttl.as_secs()
        );
    }
    let token = mint(&secret, &claims);
    if args.json {
        println!("{}", json!({"token": token, "claims": claims}));
    } else {
        println!("{token}");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use didit_edge_core::stream_token::{self, Expected, TokenError};

    const SECRET: &str = "stream-test-secret-0123456789abcdef-0123";

    fn check(token: &str, now: i64) -> std::result::Result<stream_token::Grant, TokenError> {
        let secret = StreamTokenSecret::parse(SECRET).expect("long enough");
        let expected = Expected {
            audience: "didit-edge",
            now_secs: now,
            max_lifetime_secs: 900,
        };
        stream_token::verify(token, &secret, &expected, &mut RustCrypto)
    }

    #[test]
    fn the_core_accepts_what_is_minted() {
        let secret = StreamTokenSecret::parse(SECRET).expect("long enough");
        let now = 1_800_000_000;
        let sessions = vec!["s-1".to_owned(), "s-2".to_owned()];
        let claims = claims(
            "user-42",
            Scope::Own,
            &sessions,
            "didit-edge",
            Duration::from_secs(600),
            now,
        )
        .expect("claims");
        let grant = check(&mint(&secret, &claims), now).expect("verifies");
        assert_eq!(grant.sub, "user-42");
        assert_eq!(grant.sessions, Some(sessions));
        assert_eq!(grant.scope, stream_token::Scope::OwnEvents);
        assert_eq!(grant.exp, now + 600);
        let admin = claims_for_admin(now);
        assert_eq!(
            check(&mint(&secret, &admin), now).expect("admin").scope,
            stream_token::Scope::Admin
        );
        // Expired later; another audience is refused.
        assert_eq!(
            check(&mint(&secret, &claims), now + 600),
            Err(TokenError::Expired)
        );
        let other = super::claims(
            "u",
            Scope::Own,
            &[],
            "elsewhere",
            Duration::from_secs(60),
            now,
        )
        .expect("c");
        assert_eq!(
            check(&mint(&secret, &other), now),
            Err(TokenError::WrongAudience)
        );
        let wrong =
            StreamTokenSecret::parse("another-secret-0123456789abcdef-0123456789").expect("long");
        assert_eq!(
            check(&mint(&wrong, &claims), now),
            Err(TokenError::Signature)
        );
    }

    fn claims_for_admin(now: i64) -> Value {
        claims(
            "ops",
            Scope::Admin,
            &[],
            "didit-edge",
            Duration::from_secs(60),
            now,
        )
        .expect("claims")
    }

    #[test]
    fn lifetimes_and_subjects_are_checked_before_minting() {
        let long = claims(
            "u",
            Scope::Own,
            &[],
            "didit-edge",
            Duration::from_secs(3601),
            0,
        );
        assert!(long.is_err());
        assert!(claims("u", Scope::Own, &[], "didit-edge", Duration::ZERO, 0).is_err());
        assert!(claims(
            " ",
            Scope::Own,
            &[],
            "didit-edge",
            Duration::from_secs(5),
            0
        )
        .is_err());
        let a = claims(
            "u",
            Scope::Own,
            &[],
            "didit-edge",
            Duration::from_secs(5),
            0,
        )
        .expect("a");
        let b = claims(
            "u",
            Scope::Own,
            &[],
            "didit-edge",
            Duration::from_secs(5),
            0,
        )
        .expect("b");
        assert_ne!(
            a["jti"], b["jti"],
            "each token opens one connection: unique jti"
        );
    }
}
