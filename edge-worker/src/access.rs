//! Cloudflare Access sign-in: the team's keys fetched and kept per isolate, and the RS256
//! signature of `Cf-Access-Jwt-Assertion` checked with WebCrypto. Which keys to fetch when, and
//! every claim, are the core's (`didit_edge_core::access`).

use std::cell::RefCell;

use didit_edge_core::access::{self, AccessConfig, AccessError, Assertion, Identity, Jwks, RsaKey};
use didit_edge_core::rejection::Rejection;
use js_sys::{Array, Function, Object, Promise, Reflect, Uint8Array};
use wasm_bindgen::{JsCast, JsValue};
use wasm_bindgen_futures::JsFuture;
use worker::{console_error, Fetch, Method};

use crate::clock::now_secs;
use crate::http::{self, EdgeError, EdgeResult};
use crate::origin::{fetch_within, Fetched};

/// How long a fetch of the team's keys may take: a sign-in waits on it.
const KEYS_TIMEOUT_MS: u32 = 5_000;

/// The team's keys as this isolate holds them.
struct HeldKeys {
    /// The keys and when they were fetched (Unix seconds).
    keys: Option<(i64, Jwks)>,
    /// When a fetch last failed. Requests that arrive while a fetch is on its way fetch too,
    /// as before any fetch failed: only a failure makes the next ones wait.
    failed_at: Option<i64>,
}

thread_local! {
    static KEYS: RefCell<HeldKeys> = const { RefCell::new(HeldKeys { keys: None, failed_at: None }) };
}

/// Who a request's Access assertion names, once its signature and claims are checked.
pub(crate) async fn identity(text: &str, config: &AccessConfig) -> EdgeResult<Identity> {
    let assertion = Assertion::parse(text).map_err(Rejection::Access)?;
    let now = now_secs();
    let (fetched_at, failed_at, known) = KEYS.with(|held| {
        let held = held.borrow();
        match &held.keys {
            Some((at, jwks)) => (
                Some(*at),
                held.failed_at,
                jwks.key(&assertion.kid).is_some(),
            ),
            None => (None, held.failed_at, false),
        }
    });
    if access::fetch_keys(fetched_at, failed_at, known, now) {
        let fetched = fetch_keys(&config.jwks_url).await;
        KEYS.with(|held| {
            let mut held = held.borrow_mut();
            match fetched {
                Ok(jwks) => held.keys = Some((now, jwks)),
                // Keys already held still serve; without any, no one can sign in for now.
                Err(error) => {
                    held.failed_at = Some(now);
                    match error {
                        EdgeError::Unavailable { what, error } => console_error!("{what}: {error}"),
                        EdgeError::Refused(refusal) => {
                            console_error!("Access keys refused: {refusal}");
                        }
                    }
                }
            }
        });
    }
    let (key, any_held) = KEYS.with(|held| {
        let held = held.borrow();
        let key = held
            .keys
            .as_ref()
            .and_then(|(_, jwks)| jwks.key(&assertion.kid).cloned());
        (key, held.keys.is_some())
    });
    let Some(key) = key else {
        // None held: the fetch failed now, or less than REFETCH_AFTER_SECS ago.
        return Err(match any_held {
            true => Rejection::Access(AccessError::UnknownKey),
            false => Rejection::AccessKeysUnavailable,
        }
        .into());
    };
    let verified = verify(&key, assertion.signed(), assertion.signature())
        .await
        .map_err(|error| EdgeError::Unavailable {
            what: "WebCrypto RSA verification",
            error: worker::Error::from(error),
        })?;
    Ok(assertion
        .identity(verified, config, now)
        .map_err(Rejection::Access)?)
}

async fn fetch_keys(url: &str) -> EdgeResult<Jwks> {
    let unavailable = |what| EdgeError::Unavailable {
        what,
        error: worker::Error::RustError("no answer".into()),
    };
    let request = http::outgoing(url, Method::Get, None, None, false)
        .map_err(EdgeError::unavailable("Access keys request"))?;
    let Fetched::Answered(mut response) =
        fetch_within(KEYS_TIMEOUT_MS, Fetch::Request(request)).await
    else {
        return Err(unavailable("Access keys fetch"));
    };
    if !(200..300).contains(&response.status_code()) {
        return Err(unavailable("Access keys fetch (not 2xx)"));
    }
    let text = response
        .text()
        .await
        .map_err(EdgeError::unavailable("Access keys body"))?;
    Ok(Jwks::parse(&text).map_err(Rejection::Access)?)
}

/// RSASSA-PKCS1-v1_5 with SHA-256 (RS256) under `key`, through WebCrypto.
async fn verify(key: &RsaKey, signed: &[u8], signature: &[u8]) -> Result<bool, JsValue> {
    let crypto = Reflect::get(&js_sys::global(), &"crypto".into())?;
    let subtle = Reflect::get(&crypto, &"subtle".into())?;
    let method = |name: &str| -> Result<Function, JsValue> {
        Reflect::get(&subtle, &name.into())?.dyn_into::<Function>()
    };
    let jwk = Object::new();
    for (name, value) in [
        ("kty", "RSA"),
        ("n", &key.n),
        ("e", &key.e),
        ("alg", "RS256"),
    ] {
        Reflect::set(&jwk, &name.into(), &value.into())?;
    }
    let algorithm = Object::new();
    Reflect::set(&algorithm, &"name".into(), &"RSASSA-PKCS1-v1_5".into())?;
    Reflect::set(&algorithm, &"hash".into(), &"SHA-256".into())?;
    let args = Array::of5(
        &"jwk".into(),
        &jwk,
        &algorithm,
        &JsValue::FALSE,
        &Array::of1(&"verify".into()),
    );
    let import: Promise = Reflect::apply(&method("importKey")?, &subtle, &args)?.dyn_into()?;
    let imported = JsFuture::from(import).await?;
    let args = Array::of4(
        &algorithm,
        &imported,
        &Uint8Array::from(signature),
        &Uint8Array::from(signed),
    );
    let verdict: Promise = Reflect::apply(&method("verify")?, &subtle, &args)?.dyn_into()?;
    Ok(JsFuture::from(verdict).await?.as_bool() == Some(true))
}

/// A random token id, for the console's stream token.
pub(crate) fn random_id() -> Result<String, JsValue> {
    let crypto = Reflect::get(&js_sys::global(), &"crypto".into())?;
    let uuid = Reflect::get(&crypto, &"randomUUID".into())?.dyn_into::<Function>()?;
    uuid.call0(&crypto)?
        .as_string()
        .ok_or_else(|| "randomUUID gave no string".into())
}
