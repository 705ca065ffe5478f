//! The origin's `Retry-After`, the one thing it can say about how long to leave it alone.

/// Parses a `Retry-After` header: delta-seconds, capped at a day. (The HTTP-date form is not
/// used by webhook receivers in practice and is treated as absent.)
pub fn retry_after_ms(header: Option<&str>) -> Option<u64> {
    let secs: u64 = header?.trim().parse().ok()?;
    Some(secs.min(86_400).saturating_mul(1000))
}
