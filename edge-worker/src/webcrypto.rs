//! HMAC-SHA256 through WebCrypto, which runs at native speed inside workerd (about five times
//! faster than HMAC compiled to wasm). Used to answer the core's challenges; if WebCrypto is
//! unavailable the pure-Rust provider answers instead, so verification never depends on it.

use didit_edge_core::mac::{HmacSha256, RustCrypto, Tag, MAX_IMPORTED_KEYS, TAG_LEN};
use didit_edge_core::secret::WebhookSecrets;
use didit_edge_core::verify::{ChallengeTiers, Verified, VerifyError};
use std::cell::RefCell;

use js_sys::{Array, Function, Object, Promise, Reflect, Uint8Array};
use wasm_bindgen::{JsCast, JsValue};
use wasm_bindgen_futures::JsFuture;

thread_local! {
    /// Imported HMAC keys (non-extractable `CryptoKey`s) by the secret they hold.
    static KEYS: RefCell<Vec<(Vec<u8>, JsValue)>> = const { RefCell::new(Vec::new()) };
}

struct Subtle {
    subtle: JsValue,
    import_key: Function,
    sign: Function,
}

impl Subtle {
    fn get() -> Result<Self, JsValue> {
        let crypto = Reflect::get(&js_sys::global(), &"crypto".into())?;
        let subtle = Reflect::get(&crypto, &"subtle".into())?;
        let import_key = Reflect::get(&subtle, &"importKey".into())?.dyn_into::<Function>()?;
        let sign = Reflect::get(&subtle, &"sign".into())?.dyn_into::<Function>()?;
        Ok(Self {
            subtle,
            import_key,
            sign,
        })
    }

    /// The HMAC key for `secret`, imported once per isolate: importing costs about as much as
    /// a MAC of a small message, and the same few secrets serve every request.
    async fn key(&self, secret: &[u8]) -> Result<JsValue, JsValue> {
        let cached = KEYS.with(|keys| {
            keys.borrow()
                .iter()
                .find(|(bytes, _)| bytes.as_slice() == secret)
                .map(|(_, key)| key.clone())
        });
        if let Some(key) = cached {
            return Ok(key);
        }
        let key = self.import(secret).await?;
        KEYS.with(|keys| {
            let mut keys = keys.borrow_mut();
            if keys.len() == MAX_IMPORTED_KEYS {
                keys.clear();
            }
            keys.push((secret.to_vec(), key.clone()));
        });
        Ok(key)
    }

    async fn import(&self, secret: &[u8]) -> Result<JsValue, JsValue> {
        let algorithm = Object::new();
        Reflect::set(&algorithm, &"name".into(), &"HMAC".into())?;
        Reflect::set(&algorithm, &"hash".into(), &"SHA-256".into())?;
        let args = Array::of5(
            &"raw".into(),
            &Uint8Array::from(secret),
            &algorithm,
            &JsValue::FALSE,
            &Array::of1(&"sign".into()),
        );
        let promise: Promise = Reflect::apply(&self.import_key, &self.subtle, &args)?.dyn_into()?;
        JsFuture::from(promise).await
    }

    async fn tag(&self, key: &JsValue, message: &[u8]) -> Result<Tag, JsValue> {
        let args = Array::of3(&"HMAC".into(), key, &Uint8Array::from(message));
        let promise: Promise = Reflect::apply(&self.sign, &self.subtle, &args)?.dyn_into()?;
        let buffer = JsFuture::from(promise).await?;
        let bytes = Uint8Array::new(&buffer);
        let mut tag = [0u8; TAG_LEN];
        if bytes.length() as usize != TAG_LEN {
            return Err("HMAC-SHA256 tag of unexpected length".into());
        }
        bytes.copy_to(&mut tag);
        Ok(tag)
    }
}

/// Answers the core's challenges with every secret, first match wins.
pub(crate) async fn answer(
    challenges: ChallengeTiers<'_>,
    secrets: &WebhookSecrets,
) -> Result<Verified, VerifyError> {
    match answer_with_webcrypto(challenges.clone(), secrets).await {
        Ok(verdict) => verdict,
        Err(_) => didit_edge_core::verify::answer(challenges, secrets, &mut RustCrypto),
    }
}

async fn answer_with_webcrypto(
    challenges: ChallengeTiers<'_>,
    secrets: &WebhookSecrets,
) -> Result<Result<Verified, VerifyError>, JsValue> {
    let subtle = Subtle::get()?;
    for tier in challenges {
        for challenge in &tier {
            for (index, secret) in secrets.iter().enumerate() {
                let key = subtle.key(secret.key()).await?;
                if challenge.is_answered_by(&subtle.tag(&key, challenge.message()).await?) {
                    return Ok(Ok(challenge.verified_with(index)));
                }
            }
        }
    }
    Ok(Err(VerifyError::SignatureMismatch))
}

/// One tag under one key (signing what is forwarded), WebCrypto first, pure Rust as fallback.
pub(crate) async fn tag(key: &[u8], message: &[u8]) -> Tag {
    let webcrypto = async {
        let subtle = Subtle::get()?;
        let key = subtle.key(key).await?;
        subtle.tag(&key, message).await
    };
    match webcrypto.await {
        Ok(tag) => tag,
        Err(_) => RustCrypto.tag(key, message),
    }
}
