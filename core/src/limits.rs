//! What the edge checks of a body before and while it reads it: media type and size.

use crate::rejection::Rejection;

/// Checks the declared media type and length. A body without a declared length is still
/// bounded by the adapter while it streams it in (see [`BodyBudget`]).
pub fn check_body_headers(
    content_type: Option<&str>,
    content_length: Option<&str>,
    max_body_bytes: u64,
) -> Result<(), Rejection> {
    let media_type = content_type
        .and_then(|value| value.split(';').next())
        .map(str::trim);
    if !media_type.is_some_and(|t| t.eq_ignore_ascii_case("application/json")) {
        return Err(Rejection::UnsupportedMediaType);
    }
    if let Some(length) = content_length.and_then(|v| v.trim().parse::<u64>().ok()) {
        if length > max_body_bytes {
            return Err(Rejection::PayloadTooLarge {
                limit: max_body_bytes,
            });
        }
    }
    Ok(())
}

/// Counts streamed body bytes against the limit.
#[derive(Clone, Copy, Debug)]
pub struct BodyBudget {
    limit: u64,
    used: u64,
}

impl BodyBudget {
    /// A budget of `limit` bytes.
    pub fn new(limit: u64) -> Self {
        Self { limit, used: 0 }
    }

    /// Takes a chunk; past the limit, reading must stop and the request be refused.
    pub fn take(&mut self, chunk_len: usize) -> Result<(), Rejection> {
        self.used = self.used.saturating_add(chunk_len as u64);
        if self.used > self.limit {
            Err(Rejection::PayloadTooLarge { limit: self.limit })
        } else {
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    #[test]
    fn body_headers() {
        assert!(
            check_body_headers(Some("application/json; charset=utf-8"), Some("10"), 10).is_ok()
        );
        assert!(check_body_headers(Some("Application/JSON"), None, 10).is_ok());
        assert_eq!(
            check_body_headers(Some("text/plain"), None, 10),
            Err(Rejection::UnsupportedMediaType)
        );
        assert_eq!(
            check_body_headers(None, None, 10),
            Err(Rejection::UnsupportedMediaType)
        );
        assert_eq!(
            check_body_headers(Some("application/json"), Some("11"), 10),
            Err(Rejection::PayloadTooLarge { limit: 10 })
        );
    }

    #[test]
    fn budget_stops_at_the_limit() {
        let mut budget = BodyBudget::new(10);
        assert!(budget.take(6).is_ok());
        assert!(budget.take(4).is_ok());
        assert_eq!(
            budget.take(1),
            Err(Rejection::PayloadTooLarge { limit: 10 })
        );
    }
}
