//! Signing what the edge forwards, per the Standard Webhooks specification, so that any
//! Standard Webhooks or Svix library verifies it with the `whsec_…` string alone.

use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;
use base64::Engine as _;

use crate::mac::{HmacSha256, Tag};
use crate::secret::SigningSecrets;

/// The three headers of a signed request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SignedHeaders {
    /// `webhook-id`: the stable event id, the same on every attempt, so receivers deduplicate.
    pub id: String,
    /// `webhook-timestamp`: Unix seconds of this attempt (receivers reject stale ones).
    pub timestamp: String,
    /// `webhook-signature`: `v1,<base64 HMAC-SHA256 of "id.timestamp.body">`, one per signing
    /// secret, separated by spaces (receivers accept the request if any of them verifies).
    pub signature: String,
}

/// The signed message: `"{id}.{timestamp}.{body}"`. Exposed so an adapter can MAC it with an
/// asynchronous provider and finish with [`headers`].
pub fn message(id: &str, timestamp: i64, body: &[u8]) -> Vec<u8> {
    signed_message(id, &format!("{timestamp}"), body)
}

/// The signed message with the timestamp as the `webhook-timestamp` header carries it: what a
/// receiver verifies (the sender signed that text, not a number).
pub fn signed_message(id: &str, timestamp: &str, body: &[u8]) -> Vec<u8> {
    let mut message = Vec::with_capacity(id.len() + timestamp.len() + body.len() + 2);
    message.extend_from_slice(id.as_bytes());
    message.push(b'.');
    message.extend_from_slice(timestamp.as_bytes());
    message.push(b'.');
    message.extend_from_slice(body);
    message
}

/// The headers for tags computed over [`message`], one per signing secret.
pub fn headers<'t>(
    id: &str,
    timestamp: i64,
    tags: impl IntoIterator<Item = &'t Tag>,
) -> SignedHeaders {
    let mut signature = String::new();
    for tag in tags {
        if !signature.is_empty() {
            signature.push(' ');
        }
        signature.push_str("v1,");
        base64::engine::general_purpose::STANDARD.encode_string(tag, &mut signature);
    }
    SignedHeaders {
        id: id.into(),
        timestamp: format!("{timestamp}"),
        signature,
    }
}

/// Signs one attempt to deliver `body` with id `id` at `now` (Unix seconds), with every secret.
pub fn sign(
    secrets: &SigningSecrets,
    id: &str,
    now: i64,
    body: &[u8],
    mac: &mut impl HmacSha256,
) -> SignedHeaders {
    let message = message(id, now, body);
    let tags: Vec<Tag> = secrets
        .iter()
        .map(|secret| mac.tag(secret.key(), &message))
        .collect();
    headers(id, now, &tags)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mac::RustCrypto;
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    /// The example in the Standard Webhooks reference libraries' own tests.
    #[test]
    fn matches_the_reference_vector() {
        let secret =
            SigningSecrets::parse("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").expect("valid");
        let headers = sign(
            &secret,
            "msg_p5jXN8AQM9LWM0D4loKWxJek",
            1_614_265_330,
            br#"{"test": 2432232314}"#,
            &mut RustCrypto,
        );
        assert_eq!(
            headers.signature,
            "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
        );
        assert_eq!(headers.timestamp, "1614265330");
        assert_eq!(headers.id, "msg_p5jXN8AQM9LWM0D4loKWxJek");
    }

    #[test]
    fn every_secret_of_a_rotation_signs() {
        let secrets = SigningSecrets::parse(
            "whsec_ZGlkaXQtZWRnZS1sb2NhbC1kZW1vLWtleS0wMDE=,whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
        )
        .expect("valid");
        let headers = sign(
            &secrets,
            "msg_p5jXN8AQM9LWM0D4loKWxJek",
            1_614_265_330,
            br#"{"test": 2432232314}"#,
            &mut RustCrypto,
        );
        let signatures: Vec<&str> = headers.signature.split(' ').collect();
        assert_eq!(signatures.len(), 2);
        assert!(signatures[0].starts_with("v1,") && signatures[0] != signatures[1]);
        // The old key's signature is the reference one.
        assert_eq!(
            signatures[1],
            "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
        );
    }
}
