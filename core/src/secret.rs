//! Secrets, held so that they never print: `Debug` is redacted and nothing here formats a value.

use alloc::vec::Vec;
use base64::Engine as _;
use core::fmt;

/// One Didit webhook secret. Didit keys its HMACs with the secret string's UTF-8 bytes as
/// they are (not base64-decoded), so that is what is kept.
#[derive(Clone, PartialEq, Eq)]
pub struct WebhookSecret(Vec<u8>);

impl WebhookSecret {
    /// The HMAC key.
    pub fn key(&self) -> &[u8] {
        &self.0
    }
}

impl fmt::Debug for WebhookSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("WebhookSecret(<redacted>)")
    }
}

/// Every Didit secret currently accepted. More than one during a rotation overlap: a delivery
/// signed with any of them is authentic.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WebhookSecrets(Vec<WebhookSecret>);

/// Why a secret setting was refused. Variants never carry the secret itself.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SecretError {
    /// The setting holds no secret at all.
    Empty,
    /// One of the comma-separated entries is blank (a stray comma); the 1-based position is given.
    BlankEntry(usize),
    /// The signing secret does not start with `whsec_`.
    MissingWhsecPrefix,
    /// The part after `whsec_` is not standard base64.
    NotBase64,
    /// The decoded signing key is shorter or longer than Standard Webhooks allows (24 to 64 bytes).
    BadKeyLength(usize),
}

impl fmt::Display for SecretError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Empty => f.write_str("is empty"),
            Self::BlankEntry(at) => write!(f, "entry {at} of the comma-separated list is blank"),
            Self::MissingWhsecPrefix => f.write_str("must start with `whsec_`"),
            Self::NotBase64 => f.write_str("the part after `whsec_` is not valid base64"),
            Self::BadKeyLength(len) => {
                write!(
                    f,
                    "decodes to {len} bytes; Standard Webhooks keys are 24 to 64 bytes"
                )
            }
        }
    }
}

impl WebhookSecrets {
    /// Parses a comma-separated list; surrounding whitespace of each entry is ignored.
    pub fn parse(list: &str) -> Result<Self, SecretError> {
        if list.trim().is_empty() {
            return Err(SecretError::Empty);
        }
        let mut secrets = Vec::new();
        for (index, entry) in list.split(',').enumerate() {
            let entry = entry.trim();
            if entry.is_empty() {
                return Err(SecretError::BlankEntry(index + 1));
            }
            secrets.push(WebhookSecret(entry.as_bytes().to_vec()));
        }
        Ok(Self(secrets))
    }

    /// The secrets in the order configured (the newest first, by convention).
    pub fn iter(&self) -> impl Iterator<Item = &WebhookSecret> {
        self.0.iter()
    }

    /// How many secrets are accepted.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Always false for a parsed list; here for API completeness next to `len`.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// The key that signs what the edge forwards, written `whsec_<base64>` as Standard Webhooks
/// and Svix write it, so any of their libraries can verify with the same string.
#[derive(Clone, PartialEq, Eq)]
pub struct SigningSecret(Vec<u8>);

impl SigningSecret {
    /// Parses `whsec_<base64>`.
    pub fn parse(text: &str) -> Result<Self, SecretError> {
        let text = text.trim();
        if text.is_empty() {
            return Err(SecretError::Empty);
        }
        let encoded = text
            .strip_prefix("whsec_")
            .ok_or(SecretError::MissingWhsecPrefix)?;
        let key = base64::engine::general_purpose::STANDARD
            .decode(encoded)
            .map_err(|_| SecretError::NotBase64)?;
        if !(24..=64).contains(&key.len()) {
            return Err(SecretError::BadKeyLength(key.len()));
        }
        Ok(Self(key))
    }

    /// The HMAC key.
    pub fn key(&self) -> &[u8] {
        &self.0
    }
}

impl fmt::Debug for SigningSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SigningSecret(<redacted>)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::format;
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    #[test]
    fn webhook_secrets_split_on_commas_and_never_print() {
        let secrets = WebhookSecrets::parse(" new-secret , old-secret").expect("valid list");
        let keys: Vec<&[u8]> = secrets.iter().map(WebhookSecret::key).collect();
        assert_eq!(keys, [b"new-secret".as_slice(), b"old-secret".as_slice()]);
        assert!(!format!("{secrets:?}").contains("secret,"));
        assert!(!format!("{secrets:?}").contains("new-secret"));
        assert_eq!(WebhookSecrets::parse(" "), Err(SecretError::Empty));
        assert_eq!(
            WebhookSecrets::parse("a,,b"),
            Err(SecretError::BlankEntry(2))
        );
    }

    #[test]
    fn signing_secret_needs_whsec_and_a_sane_key() {
        let secret = SigningSecret::parse("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").expect("valid");
        assert_eq!(secret.key().len(), 24);
        assert_eq!(format!("{secret:?}"), "SigningSecret(<redacted>)");
        assert_eq!(
            SigningSecret::parse("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"),
            Err(SecretError::MissingWhsecPrefix)
        );
        assert_eq!(
            SigningSecret::parse("whsec_!!!"),
            Err(SecretError::NotBase64)
        );
        assert_eq!(
            SigningSecret::parse("whsec_c2hvcnQ="),
            Err(SecretError::BadKeyLength(5))
        );
    }
}
