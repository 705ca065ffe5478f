//! Which consumers get an event, and which origin serves each.
//!
//! Origins are grouped by `consumer`. Each consumer receives its own copy of every event one of
//! its origins accepts (by event type and risk level), with its own ordered delivery; within a
//! consumer, its accepting origins are tried by priority until one takes the event.

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

/// Most origins one delivery attempt tries before it counts as failed: enough to fail over
/// across clouds, few enough that one attempt (each origin with its own timeout) stays short.
pub const MAX_ORIGINS_PER_ATTEMPT: usize = 4;

/// The origins that can serve `consumer` for this event, in the order to try them: by
/// `priority`, then as listed. One attempt tries them in turn until one takes the event.
pub fn origins_for<'o>(
    origins: &'o [Origin],
    consumer: &str,
    webhook_type: &str,
    level: Level,
) -> Vec<&'o Origin> {
    let mut candidates: Vec<&Origin> = origins
        .iter()
        .filter(|o| o.consumer() == consumer && o.accepts(webhook_type, level))
        .collect();
    candidates.sort_by_key(|o| o.priority);
    candidates.truncate(MAX_ORIGINS_PER_ATTEMPT);
    candidates
}

#[cfg(test)]
mod tests {
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    use super::*;
    use crate::config::parse_origins;
    use alloc::string::String;

    #[test]
    fn failover_order_is_by_priority_then_as_listed_and_bounded() {
        let origins = parse_origins(
            r#"[{"name":"c","url":"https://c","priority":2},
                {"name":"a1","url":"https://a1","priority":1},
                {"name":"z","url":"https://z"},
                {"name":"a2","url":"https://a2","priority":1},
                {"name":"b","url":"https://b","priority":3}]"#,
        )
        .expect("valid");
        let order: Vec<&str> =
            origins_for(&origins, DEFAULT_CONSUMER, "status.updated", Level::Low)
                .into_iter()
                .map(|o| o.name.as_str())
                .collect();
        assert_eq!(
            order,
            ["z", "a1", "a2", "c"],
            "lowest priority first, listing order among equals, at most 4"
        );
    }

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
        fn names(list: Vec<&Origin>) -> Vec<String> {
            list.into_iter().map(|o| o.name.clone()).collect()
        }
        assert_eq!(
            names(origins_for(
                &origins,
                "default",
                "status.updated",
                Level::Low
            )),
            ["main", "main-backup"]
        );
        assert!(origins_for(&origins, "fraud", "status.updated", Level::Low).is_empty());
        assert!(origins_for(&origins, "gone", "status.updated", Level::High).is_empty());
    }
}
