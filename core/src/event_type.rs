//! Patterns over Didit's `webhook_type`: an exact type (`user.status.updated`), a family
//! (`user.*`) or everything (`*`). Origins choose what they take with them, and admin stream
//! connections what they watch.

/// Whether `pattern` is an exact type, a `family.*` or `*`.
pub fn is_valid_pattern(pattern: &str) -> bool {
    let body = pattern.strip_suffix(".*").unwrap_or(pattern);
    pattern == "*"
        || (!body.is_empty()
            && !body.contains('*')
            && body
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'_'))
}

/// Whether `webhook_type` matches `pattern` (exact, `family.*` or `*`).
pub fn matches(pattern: &str, webhook_type: &str) -> bool {
    match pattern.strip_suffix(".*") {
        _ if pattern == "*" => true,
        Some(family) => webhook_type
            .strip_prefix(family)
            .is_some_and(|rest| rest.starts_with('.')),
        None => pattern == webhook_type,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    #[test]
    fn patterns_are_an_exact_type_a_family_or_a_star() {
        for (pattern, valid) in [
            ("*", true),
            ("user.*", true),
            ("status.updated", true),
            ("user.*.x", false),
            ("", false),
            ("**", false),
            ("a b", false),
        ] {
            assert_eq!(is_valid_pattern(pattern), valid, "{pattern}");
        }
    }

    #[test]
    fn a_family_matches_its_types_only() {
        assert!(matches("user.*", "user.status.updated"));
        assert!(!matches("user.*", "users.status.updated"));
        assert!(!matches("user.*", "status.updated"));
        assert!(matches("*", "anything.new"));
        assert!(matches("status.updated", "status.updated"));
        assert!(!matches("status.updated", "data.updated"));
    }
}
