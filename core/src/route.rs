//! Which consumers get an event, and which origin serves each.
//!
//! Origins are grouped by `consumer`. Each consumer receives its own copy of every event one of
//! its origins accepts (by event type and risk level), with its own ordered delivery; within a
//! consumer, the first accepting origin is used (failover among them comes with health).

use alloc::vec::Vec;

use crate::config::Origin;
use crate::risk::Level;

/// The consumer of origins that name none.
pub const DEFAULT_CONSUMER: &str = "default";

/// Whether `pattern` is an exact type, a `family.*` or `*`.
pub fn is_valid_type_pattern(pattern: &str) -> bool {
    let body = pattern.strip_suffix(".*").unwrap_or(pattern);
    pattern == "*"
        || (!body.is_empty()
            && !body.contains('*')
            && body
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'_'))
}

fn type_matches(pattern: &str, webhook_type: &str) -> bool {
    match pattern.strip_suffix(".*") {
        _ if pattern == "*" => true,
        Some(family) => webhook_type
            .strip_prefix(family)
            .is_some_and(|rest| rest.starts_with('.')),
        None => pattern == webhook_type,
    }
}

impl Origin {
    /// The consumer this origin serves.
    pub fn consumer(&self) -> &str {
        self.consumer.as_deref().unwrap_or(DEFAULT_CONSUMER)
    }

    /// Whether this origin takes events of this type and risk level.
    pub fn accepts(&self, webhook_type: &str, level: Level) -> bool {
        self.event_types
            .as_ref()
            .is_none_or(|types| types.iter().any(|p| type_matches(p, webhook_type)))
            && self
                .risk_levels
                .as_ref()
                .is_none_or(|levels| levels.contains(&level))
    }
}

/// The consumers that take this event, in configuration order, each once.
pub fn consumers_for<'o>(origins: &'o [Origin], webhook_type: &str, level: Level) -> Vec<&'o str> {
    let mut consumers: Vec<&str> = Vec::new();
    for origin in origins.iter().filter(|o| o.accepts(webhook_type, level)) {
        if !consumers.contains(&origin.consumer()) {
            consumers.push(origin.consumer());
        }
    }
    consumers
}

/// The origin that serves `consumer` for this event: its first accepting origin.
pub fn origin_for<'o>(
    origins: &'o [Origin],
    consumer: &str,
    webhook_type: &str,
    level: Level,
) -> Option<&'o Origin> {
    origins
        .iter()
        .find(|o| o.consumer() == consumer && o.accepts(webhook_type, level))
}

#[cfg(test)]
mod tests {
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    use super::*;
    use crate::config::parse_origins;

    #[test]
    fn type_patterns() {
        for (pattern, valid) in [
            ("*", true),
            ("user.*", true),
            ("status.updated", true),
            ("user.*.x", false),
            ("", false),
            ("**", false),
            ("a b", false),
        ] {
            assert_eq!(is_valid_type_pattern(pattern), valid, "{pattern}");
        }
        assert!(type_matches("user.*", "user.status.updated"));
        assert!(!type_matches("user.*", "users.status.updated"));
        assert!(!type_matches("user.*", "status.updated"));
        assert!(type_matches("*", "anything.new"));
    }

    #[test]
    fn consumers_and_their_origins() {
        let origins = parse_origins(
            r#"[{"name":"main","url":"https://main"},
                {"name":"main-backup","url":"https://backup"},
                {"name":"fraud","url":"https://fraud","consumer":"fraud","risk_levels":["high"]},
                {"name":"crm","url":"https://crm","consumer":"crm","event_types":["user.*"]}]"#,
        )
        .expect("valid");
        assert_eq!(
            consumers_for(&origins, "status.updated", Level::Low),
            ["default"]
        );
        assert_eq!(
            consumers_for(&origins, "status.updated", Level::High),
            ["default", "fraud"]
        );
        assert_eq!(
            consumers_for(&origins, "user.status.updated", Level::Medium),
            ["default", "crm"]
        );
        assert_eq!(
            origin_for(&origins, "default", "status.updated", Level::Low).map(|o| o.name.as_str()),
            Some("main")
        );
        assert_eq!(
            origin_for(&origins, "fraud", "status.updated", Level::Low),
            None
        );
        assert_eq!(
            origin_for(&origins, "gone", "status.updated", Level::High),
            None
        );
    }
}
