//! The HMAC-SHA256 seam.
//!
//! The core decides *what* must be authenticated and *whether* a tag matches; computing a tag
//! is delegated, the way rustls takes a crypto provider. Inside workerd, WebCrypto's HMAC runs
//! about five times faster than HMAC compiled to wasm, so the worker may supply its own provider
//! (computing tags asynchronously and handing them back), while native code, tests and the wasm
//! fallback use [`RustCrypto`].

use hmac::{KeyInit, Mac};
use sha2::Sha256;
use subtle::ConstantTimeEq;

/// Length of an HMAC-SHA256 tag.
pub const TAG_LEN: usize = 32;

/// Most HMAC keys an isolate keeps imported (a WebCrypto `CryptoKey` per secret): every
/// configured secret, with room for a rotation, so that importing stays off the hot path
/// without the cache growing with every secret ever seen.
pub const MAX_IMPORTED_KEYS: usize = 16;

/// An HMAC-SHA256 tag.
pub type Tag = [u8; TAG_LEN];

/// Computes HMAC-SHA256 tags.
pub trait HmacSha256 {
    /// The tag of `message` under `key`.
    fn tag(&mut self, key: &[u8], message: &[u8]) -> Tag;
}

/// The pure-Rust provider (`hmac` + `sha2`).
#[derive(Clone, Copy, Debug, Default)]
pub struct RustCrypto;

impl HmacSha256 for RustCrypto {
    fn tag(&mut self, key: &[u8], message: &[u8]) -> Tag {
        // HMAC accepts keys of any length, so construction cannot fail; the fallback is unreachable
        // but keeps this total without a panic path.
        let Ok(mut mac) = <hmac::Hmac<Sha256> as KeyInit>::new_from_slice(key) else {
            return [0; TAG_LEN];
        };
        mac.update(message);
        mac.finalize().into_bytes().into()
    }
}

/// Compares two tags in constant time, so a forger learns nothing from response timing.
pub fn tags_equal(expected: &Tag, computed: &Tag) -> bool {
    expected.ct_eq(computed).into()
}

#[cfg(test)]
mod tests {
    use super::*;
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    #[test]
    fn rfc_4231_case_2() {
        let tag = RustCrypto.tag(b"Jefe", b"what do ya want for nothing?");
        assert_eq!(
            hex::encode(tag),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    #[test]
    fn tags_equal_tells_equal_from_different() {
        let a = RustCrypto.tag(b"k", b"m");
        let mut b = a;
        assert!(tags_equal(&a, &b));
        b[31] ^= 1;
        assert!(!tags_equal(&a, &b));
    }
}
