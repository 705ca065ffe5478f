//! Secrets, held so that they never print: `Debug` is redacted and nothing here formats a value.

use alloc::vec::Vec;
use base64::Engine as _;
use core::fmt;
use subtle::ConstantTimeEq as _;

/// The bytes of a secret (a key, a token), written once for every secret the edge holds:
/// `Debug` prints `<redacted>`, so a newtype around it that derives `Debug` prints
/// `Name(<redacted>)` and never the value, and `==` compares in constant time (for equal
/// lengths), so no comparison leaks a secret's content through its timing.
#[derive(Clone)]
pub struct SecretBytes(Vec<u8>);

impl SecretBytes {
    /// Holds `bytes` as a secret.
    pub fn new(bytes: impl Into<Vec<u8>>) -> Self {
        Self(bytes.into())
    }

    /// The secret itself, for the one place that uses it (an HMAC, a hash): never log it.
    pub fn expose(&self) -> &[u8] {
        &self.0
    }
}

impl fmt::Debug for SecretBytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

impl PartialEq for SecretBytes {
    fn eq(&self, other: &Self) -> bool {
        bool::from(self.0.ct_eq(&other.0))
    }
}

impl Eq for SecretBytes {}

/// One Didit webhook secret. Didit keys its HMACs with the secret string's UTF-8 bytes as
/// they are (not base64-decoded), so that is what is kept.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WebhookSecret(SecretBytes);

impl WebhookSecret {
    /// One Didit-style secret, as a didit-format origin's `signing_secret` holds it: the
    /// string (trimmed) is the key, so a comma means a list and is refused.
    pub fn parse_one(text: &str) -> Result<Self, SecretError> {
        let text = text.trim();
        if text.is_empty() {
            return Err(SecretError::Empty);
        }
        if text.contains(',') {
            return Err(SecretError::NotOne);
        }
        Ok(Self(SecretBytes::new(text.as_bytes())))
    }

    /// The HMAC key.
    pub fn key(&self) -> &[u8] {
        self.0.expose()
    }
}

/// Every Didit secret currently accepted. More than one during a rotation overlap: a delivery
/// signed with any of them is authentic.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WebhookSecrets(Vec<WebhookSecret>);

/// Why a secret setting was refused. Variants never carry the secret itself.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum SecretError {
    /// The setting holds no secret at all.
    Empty,
    /// One of the comma-separated entries is blank (a stray comma); the 1-based position is given.
    BlankEntry(usize),
    /// A list where exactly one secret is allowed: a didit-format origin's secret (Didit's
    /// headers carry one signature each, and Didit's SDK verifies with one secret).
    NotOne,
    /// One entry of a list of signing secrets is unusable (1-based position).
    Signing {
        /// Which entry.
        entry: usize,
        /// What is wrong with it.
        error: SigningKeyError,
    },
}

/// Why one `whsec_…` signing secret is unusable.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum SigningKeyError {
    /// It does not start with `whsec_`.
    MissingWhsecPrefix,
    /// The part after `whsec_` is not standard base64.
    NotBase64,
    /// The decoded key is shorter or longer than Standard Webhooks allows (24 to 64 bytes).
    BadKeyLength(usize),
    /// More than [`MAX_SIGNING_SECRETS`] secrets are listed.
    TooMany,
}

impl fmt::Display for SigningKeyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::MissingWhsecPrefix => f.write_str("must start with `whsec_`"),
            Self::NotBase64 => f.write_str("the part after `whsec_` is not valid base64"),
            Self::BadKeyLength(len) => write!(
                f,
                "decodes to {len} bytes; Standard Webhooks keys are 24 to 64 bytes"
            ),
            Self::TooMany => write!(f, "is one too many; list at most {MAX_SIGNING_SECRETS}"),
        }
    }
}

impl fmt::Display for SecretError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Empty => f.write_str("is empty"),
            Self::BlankEntry(at) => write!(f, "entry {at} of the comma-separated list is blank"),
            Self::NotOne => f.write_str("lists several secrets; a didit-format origin takes one"),
            Self::Signing { entry, error } => write!(f, "entry {entry} {error}"),
        }
    }
}

impl core::error::Error for SecretError {}
impl core::error::Error for SigningKeyError {}

/// Splits a comma-separated list, refusing an empty list or a blank entry.
fn entries(list: &str) -> Result<impl Iterator<Item = (usize, &str)>, SecretError> {
    if list.trim().is_empty() {
        return Err(SecretError::Empty);
    }
    if let Some(blank) = list.split(',').position(|entry| entry.trim().is_empty()) {
        return Err(SecretError::BlankEntry(blank + 1));
    }
    Ok(list
        .split(',')
        .map(str::trim)
        .enumerate()
        .map(|(index, entry)| (index + 1, entry)))
}

impl WebhookSecrets {
    /// Parses a comma-separated list; surrounding whitespace of each entry is ignored.
    pub fn parse(list: &str) -> Result<Self, SecretError> {
        Ok(Self(
            entries(list)?
                .map(|(_, entry)| WebhookSecret(SecretBytes::new(entry.as_bytes())))
                .collect(),
        ))
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
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SigningSecret(SecretBytes);

impl SigningSecret {
    /// Parses `whsec_<base64>`.
    pub fn parse(text: &str) -> Result<Self, SigningKeyError> {
        let encoded = text
            .trim()
            .strip_prefix("whsec_")
            .ok_or(SigningKeyError::MissingWhsecPrefix)?;
        let key = base64::engine::general_purpose::STANDARD
            .decode(encoded)
            .map_err(|_| SigningKeyError::NotBase64)?;
        if !(24..=64).contains(&key.len()) {
            return Err(SigningKeyError::BadKeyLength(key.len()));
        }
        Ok(Self(SecretBytes::new(key)))
    }

    /// The HMAC key.
    pub fn key(&self) -> &[u8] {
        self.0.expose()
    }
}

/// Every key that signs what the edge forwards: one, or during a rotation the new and the old
/// (`whsec_new,whsec_old`). Each signs every request, all signatures travel in the one
/// `webhook-signature` header, and the origin accepts a request if any of them verifies, so
/// the origin can switch keys at any moment with no refused delivery.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SigningSecrets(Vec<SigningSecret>);

/// Most signing secrets at once: one rotation's new and old, with room for a slow one.
pub const MAX_SIGNING_SECRETS: usize = 4;

impl SigningSecrets {
    /// Parses a comma-separated list of `whsec_<base64>`.
    pub fn parse(list: &str) -> Result<Self, SecretError> {
        let mut secrets = Vec::new();
        for (entry, text) in entries(list)? {
            let secret = SigningSecret::parse(text)
                .map_err(|error| SecretError::Signing { entry, error })?;
            secrets.push(secret);
        }
        if secrets.len() > MAX_SIGNING_SECRETS {
            return Err(SecretError::Signing {
                entry: MAX_SIGNING_SECRETS + 1,
                error: SigningKeyError::TooMany,
            });
        }
        Ok(Self(secrets))
    }

    /// The secrets in the order configured.
    pub fn iter(&self) -> impl Iterator<Item = &SigningSecret> {
        self.0.iter()
    }

    /// Whether any key of `self` is also one of `other`'s (compared in constant time).
    pub fn shares_a_key_with(&self, other: &Self) -> bool {
        self.iter()
            .any(|mine| other.iter().any(|theirs| mine == theirs))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::format;
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    #[test]
    fn secret_bytes_never_print_and_compare_by_content() {
        let secret = SecretBytes::new(b"hunter2-hunter2".as_slice());
        assert_eq!(format!("{secret:?}"), "<redacted>");
        assert_eq!(secret.expose(), b"hunter2-hunter2");
        assert_eq!(secret, SecretBytes::new(b"hunter2-hunter2".to_vec()));
        assert_ne!(secret, SecretBytes::new(b"hunter2-hunter3".to_vec()));
        assert_ne!(secret, SecretBytes::new(b"hunter2".to_vec()));
        let webhook = WebhookSecrets::parse("hunter2-hunter2").expect("valid");
        assert_eq!(
            format!("{webhook:?}"),
            "WebhookSecrets([WebhookSecret(<redacted>)])"
        );
    }

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
            Err(SigningKeyError::MissingWhsecPrefix)
        );
        assert_eq!(
            SigningSecret::parse("whsec_!!!"),
            Err(SigningKeyError::NotBase64)
        );
        assert_eq!(
            SigningSecret::parse("whsec_c2hvcnQ="),
            Err(SigningKeyError::BadKeyLength(5))
        );
    }

    #[test]
    fn signing_secrets_rotate_as_a_list() {
        let new = "whsec_ZGlkaXQtZWRnZS1sb2NhbC1kZW1vLWtleS0wMDE=";
        let old = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
        let both = SigningSecrets::parse(&format!(" {new} ,{old}")).expect("valid");
        let keys: Vec<usize> = both.iter().map(|s| s.key().len()).collect();
        assert_eq!(keys, [29, 24]);
        assert!(!format!("{both:?}").contains("whsec"));
        assert_eq!(
            SigningSecrets::parse(&format!("{new},whsec_!!!")),
            Err(SecretError::Signing {
                entry: 2,
                error: SigningKeyError::NotBase64
            })
        );
        assert_eq!(
            SigningSecrets::parse(&format!("{new},")),
            Err(SecretError::BlankEntry(2))
        );
        let five = [old; 5].join(",");
        assert_eq!(
            SigningSecrets::parse(&five),
            Err(SecretError::Signing {
                entry: 5,
                error: SigningKeyError::TooMany
            })
        );
    }
}
