//! The admin API, apart from its IO: who may use it and with which [`Role`] (a Bearer token
//! compared in constant time, or a Cloudflare Access assertion: [`role`]), what its paths and queries name ([`DeadLetterQuery`],
//! [`erasure_request`]), the rules its answers follow, and the shape of every answer, which
//! the worker writes and the CLI reads ([`OriginsView`], [`DeadLetterPage`], [`Replayed`],
//! [`BulkReplay`], [`ErasureReport`], [`ReconciliationStatus`], [`Lookup`]).

mod lookup;
mod metrics;
mod query;
mod reconciliation;
mod role;
mod view;

pub use lookup::*;
pub use metrics::*;
pub use query::*;
pub use reconciliation::*;
pub use role::*;
pub use view::*;

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
    fn short_tokens_are_refused_and_none_is_printed() {
        let token = AdminToken::parse(" a-long-enough-admin-token-123 ").expect("valid");
        assert_eq!(AdminToken::parse("short"), Err(5));
        assert_eq!(alloc::format!("{token:?}"), "AdminToken(<redacted>)");
    }
}
