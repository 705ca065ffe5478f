//! The admin API, apart from its IO: who may use it (`Authorization: Bearer <ADMIN_TOKEN>`,
//! compared in constant time), what its paths and queries name ([`DeadLetterQuery`],
//! [`erasure_request`]), the rules its answers follow, and the shape of every answer, which
//! the worker writes and the CLI reads ([`OriginsView`], [`DeadLetterPage`], [`Replayed`],
//! [`BulkReplay`], [`ErasureReport`], [`ReconciliationStatus`], [`Lookup`]).

mod lookup;
mod query;
mod reconciliation;
mod view;

pub use lookup::*;
pub use query::*;
pub use reconciliation::*;
pub use view::*;

use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::rejection::Rejection;
use crate::secret::SecretBytes;

/// The admin token. Shorter than this is refused: it guards replay and health data.
pub const MIN_TOKEN_LEN: usize = 24;

/// The configured admin token; never printed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AdminToken(SecretBytes);

impl AdminToken {
    /// Checks the token's length; the value is never echoed.
    pub fn parse(text: &str) -> Result<Self, usize> {
        let text = text.trim();
        if text.len() < MIN_TOKEN_LEN {
            return Err(text.len());
        }
        Ok(Self(SecretBytes::new(text.as_bytes())))
    }
}

/// Whether `authorization` (the header's value) carries the token. Both sides are hashed first,
/// so the comparison takes the same time whatever the presented token's length or content.
pub fn authorize(authorization: Option<&str>, token: Option<&AdminToken>) -> Result<(), Rejection> {
    let Some(token) = token else {
        return Err(Rejection::Unauthorized {
            reason: "the admin API is off: ADMIN_TOKEN is not set",
        });
    };
    let presented = authorization
        .and_then(|value| value.trim().strip_prefix("Bearer "))
        .map(str::trim)
        .ok_or(Rejection::Unauthorized {
            reason: "expected `Authorization: Bearer <ADMIN_TOKEN>`",
        })?;
    let expected = Sha256::digest(token.0.expose());
    let given = Sha256::digest(presented.as_bytes());
    if bool::from(expected.as_slice().ct_eq(given.as_slice())) {
        Ok(())
    } else {
        Err(Rejection::Unauthorized {
            reason: "wrong admin token",
        })
    }
}

/// `wire` reads as a `T` and writes back as the same JSON (field names, shapes, nulls).
#[cfg(test)]
fn round_trips<T: serde::Serialize + serde::de::DeserializeOwned>(wire: &serde_json::Value) -> T {
    let read: T = serde_json::from_value(wire.clone()).expect("today's wire shape reads");
    assert_eq!(&serde_json::to_value(&read).expect("writes"), wire);
    read
}

#[cfg(test)]
mod tests {
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    use super::*;

    #[test]
    fn bearer_token_must_match() {
        let token = AdminToken::parse("a-long-enough-admin-token-123").expect("valid");
        assert_eq!(
            authorize(Some("Bearer a-long-enough-admin-token-123"), Some(&token)),
            Ok(())
        );
        for bad in [
            None,
            Some(""),
            Some("Bearer"),
            Some("Bearer wrong"),
            Some("Basic a-long-enough-admin-token-123"),
            Some("Bearer a-long-enough-admin-token-1234"),
        ] {
            assert!(
                matches!(
                    authorize(bad, Some(&token)),
                    Err(Rejection::Unauthorized { .. })
                ),
                "{bad:?}"
            );
        }
        assert!(matches!(
            authorize(Some("Bearer x"), None),
            Err(Rejection::Unauthorized { .. })
        ));
        assert_eq!(AdminToken::parse("short"), Err(5));
        assert_eq!(alloc::format!("{token:?}"), "AdminToken(<redacted>)");
    }
}
