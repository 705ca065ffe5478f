//! Where events go: the origins of `ORIGINS`, each serving one consumer, and the rules an
//! origin list must follow. Errors name the offending entry, never its URL (which may carry
//! credentials, `https://user:pass@…`).

use alloc::string::String;
use alloc::vec::Vec;
use core::fmt;
use serde::Deserialize;

use crate::event_type;
use crate::risk::Level;

/// Default time one origin request may take.
pub const DEFAULT_TIMEOUT_MS: u32 = 10_000;
/// Longest origin timeout accepted; the inbox's alarm must stay well inside its own limits.
pub const MAX_TIMEOUT_MS: u32 = 60_000;
/// The consumer of origins that name none.
pub const DEFAULT_CONSUMER: &str = "default";

/// Where events are delivered.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Origin {
    /// A short name for logs and status (`aws-eu`).
    pub name: String,
    /// The `http://` or `https://` URL events are POSTed to.
    pub url: String,
    /// How long one request may take before it counts as failed.
    #[serde(default = "default_timeout_ms")]
    pub timeout_ms: u32,
    /// The consumer this origin serves. Every consumer gets its own copy of each event it
    /// accepts; origins of one consumer are alternatives for the same copy. Default `default`.
    #[serde(default)]
    pub consumer: Option<String>,
    /// Event types this origin takes: exact (`user.status.updated`), a family (`user.*`) or
    /// `*`. Absent: every type.
    #[serde(default)]
    pub event_types: Option<Vec<String>>,
    /// Risk levels this origin takes (`high`, …). Absent: every level.
    #[serde(default)]
    pub risk_levels: Option<Vec<Level>>,
    /// Failover order within the consumer: lower is tried first. Default 0.
    #[serde(default)]
    pub priority: u32,
    /// Share of traffic among healthy origins of equal priority (1–1000). Default 1.
    #[serde(default = "default_weight")]
    pub weight: u32,
    /// A label for where the origin runs (`eu-west-1`), shown by the admin API.
    #[serde(default)]
    pub region: Option<String>,
    /// A label for the provider (`aws`, `gcp`), shown by the admin API.
    #[serde(default)]
    pub cloud: Option<String>,
    /// Probed by the cron trigger (`GET`, 2xx is healthy) to open and close the breaker even
    /// when no events flow.
    #[serde(default)]
    pub health_url: Option<String>,
    /// The name of a secret (`whsec_…`, or several comma-separated during a rotation) that
    /// signs what this origin receives, instead of `ORIGIN_SIGNING_SECRET`. Required with
    /// `"format": "didit"`, where it names a Didit-style secret (any string, used as is).
    #[serde(default)]
    pub signing_secret: Option<String>,
    /// At most this many requests to this origin at once, from every inbox together (1 or
    /// more). Absent: no limit, and the origin's gate is never asked.
    #[serde(default)]
    pub max_concurrency: Option<u32>,
    /// At most this many requests to this origin start per second, from every inbox together
    /// ([`MIN_PER_SECOND`] to [`MAX_PER_SECOND`], fractions allowed: `0.5` is one every two
    /// seconds). Absent: no limit.
    #[serde(default)]
    pub max_per_second: Option<PerSecond>,
    /// What the origin receives: a signed CloudEvent (default), or Didit's own webhook,
    /// re-signed the way Didit signs (`"didit"`), for apps that verify with Didit's SDK.
    #[serde(default)]
    pub format: Format,
}

/// The fewest requests a second `max_per_second` may allow (one every 100 seconds).
pub const MIN_PER_SECOND: f64 = 0.01;
/// The most requests a second `max_per_second` may allow (the gate counts whole milliseconds).
pub const MAX_PER_SECOND: f64 = 1_000.0;

/// A `max_per_second` as written (a JSON number, possibly fractional).
#[derive(Clone, Copy, Debug, Deserialize)]
#[serde(transparent)]
pub struct PerSecond(pub f64);

impl PartialEq for PerSecond {
    fn eq(&self, other: &Self) -> bool {
        self.0.to_bits() == other.0.to_bits()
    }
}

impl Eq for PerSecond {}

impl PerSecond {
    /// The fewest whole milliseconds between two requests: `⌈1000 / rate⌉`, rounded up so the
    /// rate the gate keeps is never above the one written.
    pub fn interval_ms(self) -> u64 {
        let exact = 1_000.0 / self.0.clamp(MIN_PER_SECOND, MAX_PER_SECOND);
        // `as` saturates and truncates; no_std has no `ceil`.
        let whole = exact as u64;
        if (whole as f64) < exact {
            whole + 1
        } else {
            whole.max(1)
        }
    }

    fn is_valid(self) -> bool {
        self.0.is_finite() && (MIN_PER_SECOND..=MAX_PER_SECOND).contains(&self.0)
    }
}

/// What an origin receives. Read through a `String` (`try_from`), which origins already
/// deserialize, rather than with an enum visitor of its own: smaller in the upload.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(try_from = "String")]
pub enum Format {
    /// CloudEvents 1.0 structured mode, signed per Standard Webhooks (docs/origins.md).
    #[default]
    Cloudevents,
    /// Didit's webhook body and headers (`X-Signature`, `X-Signature-V2`,
    /// `X-Signature-Simple`, `X-Timestamp`), re-signed at each attempt ([`crate::dropin`]).
    Didit,
}

/// A `format` that is neither `cloudevents` nor `didit`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct UnknownFormat;

impl fmt::Display for UnknownFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("unknown format")
    }
}

impl TryFrom<String> for Format {
    type Error = UnknownFormat;

    fn try_from(text: String) -> Result<Self, UnknownFormat> {
        match text.as_str() {
            "cloudevents" => Ok(Self::Cloudevents),
            "didit" => Ok(Self::Didit),
            _ => Err(UnknownFormat),
        }
    }
}

fn default_weight() -> u32 {
    1
}

fn default_timeout_ms() -> u32 {
    DEFAULT_TIMEOUT_MS
}

impl Origin {
    /// What its gate must apply (`None`: an unlimited origin, whose requests never ask a
    /// gate and cost nothing more).
    pub fn limits(&self) -> Option<crate::origin_gate::GateLimits> {
        if self.max_concurrency.is_none() && self.max_per_second.is_none() {
            return None;
        }
        Some(crate::origin_gate::GateLimits {
            max_concurrency: self.max_concurrency,
            interval_ms: self.max_per_second.map(PerSecond::interval_ms),
            lease_ms: u64::from(self.timeout_ms) + crate::origin_gate::LEASE_MARGIN_MS,
        })
    }

    /// The consumer this origin serves.
    pub fn consumer(&self) -> &str {
        self.consumer.as_deref().unwrap_or(DEFAULT_CONSUMER)
    }

    /// Whether this origin takes events of this type and risk level.
    pub fn accepts(&self, webhook_type: &str, level: Level) -> bool {
        self.event_types
            .as_ref()
            .is_none_or(|types| types.iter().any(|p| event_type::matches(p, webhook_type)))
            && self
                .risk_levels
                .as_ref()
                .is_none_or(|levels| levels.contains(&level))
    }
}

/// Why an origin list was refused. Origins are named; their URLs never appear.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum OriginError {
    /// The text is not JSON (line and column of the first problem).
    Json {
        /// 1-based line.
        line: usize,
        /// 1-based column.
        column: usize,
    },
    /// The JSON is not an array of origin objects: a key is unknown or a value has the wrong
    /// type (line and column of the first problem; the unknown key, if that is the problem).
    Shape {
        /// 1-based line.
        line: usize,
        /// 1-based column.
        column: usize,
        /// A key that is not an origin setting (a typo such as `priorty`).
        unknown_key: Option<String>,
    },
    /// The list is empty.
    Empty,
    /// An origin has an empty name (1-based position).
    EmptyName(usize),
    /// Two origins share a name.
    DuplicateName(String),
    /// An origin's `url` is not an absolute `http://` or `https://` URL.
    InvalidUrl(String),
    /// An origin's `health_url` is not an absolute `http://` or `https://` URL.
    InvalidHealthUrl(String),
    /// An origin names an empty consumer.
    EmptyConsumer(String),
    /// An origin lists no event types or no risk levels (which would take nothing).
    EmptyFilter(String),
    /// An origin lists an event type that is not an exact type, `family.*` or `*`.
    InvalidEventType {
        /// The origin.
        origin: String,
        /// The pattern.
        pattern: String,
    },
    /// An origin's weight is outside 1–1000.
    Weight {
        /// The origin.
        origin: String,
        /// The weight given.
        weight: u32,
    },
    /// An origin's timeout is outside 1–[`MAX_TIMEOUT_MS`].
    Timeout {
        /// The origin.
        origin: String,
        /// The timeout given.
        timeout_ms: u32,
    },
    /// An origin names an empty `signing_secret`.
    EmptySigningSecretName(String),
    /// An origin's `max_concurrency` is 0.
    MaxConcurrency(String),
    /// An origin's `max_per_second` is outside [`MIN_PER_SECOND`]–[`MAX_PER_SECOND`].
    MaxPerSecond(String),
    /// An origin of `"format": "didit"` names no `signing_secret`: the default
    /// `ORIGIN_SIGNING_SECRET` is a `whsec_` key for Standard Webhooks, not a Didit-style one.
    DiditFormatWithoutSecret(String),
}

impl fmt::Display for OriginError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Json { line, column } => {
                write!(f, "is not valid JSON (line {line}, column {column})")
            }
            Self::Shape {
                unknown_key: Some(key),
                ..
            } => write!(f, "has an unknown key `{key}`"),
            Self::Shape { line, column, .. } => write!(
                f,
                "is not a JSON array of {{\"name\", \"url\"}} objects (a value of the wrong type at line {line}, column {column})"
            ),
            Self::Empty => f.write_str("lists no origin"),
            Self::EmptyName(at) => write!(f, "origin {at} has an empty name"),
            Self::DuplicateName(name) => write!(f, "origin name `{name}` is used twice"),
            Self::InvalidUrl(name) => write!(
                f,
                "origin `{name}` has an invalid url; it must be an absolute http:// or https:// URL"
            ),
            Self::InvalidHealthUrl(name) => write!(
                f,
                "origin `{name}` has an invalid health_url; it must be an absolute http:// or https:// URL"
            ),
            Self::EmptyConsumer(name) => write!(f, "origin `{name}` has an empty consumer"),
            Self::EmptyFilter(name) => write!(
                f,
                "origin `{name}` lists no event_types or risk_levels; leave the key out to take all"
            ),
            Self::InvalidEventType { origin, pattern } => write!(
                f,
                "origin `{origin}` has event type `{pattern}`; use an exact type, `family.*` or `*`"
            ),
            Self::Weight { origin, weight } => write!(
                f,
                "origin `{origin}` has weight {weight}; it must be between 1 and 1000"
            ),
            Self::Timeout { origin, timeout_ms } => write!(
                f,
                "origin `{origin}` has timeout_ms {timeout_ms}; it must be between 1 and {MAX_TIMEOUT_MS}"
            ),
            Self::EmptySigningSecretName(name) => {
                write!(f, "origin `{name}` has an empty signing_secret name")
            }
            Self::MaxConcurrency(name) => write!(
                f,
                "origin `{name}` has max_concurrency 0; it must be at least 1, or left out for no limit"
            ),
            Self::MaxPerSecond(name) => write!(
                f,
                "origin `{name}` has a max_per_second outside 0.01–1000; leave it out for no limit"
            ),
            Self::DiditFormatWithoutSecret(name) => write!(
                f,
                "origin `{name}` has format `didit` and no signing_secret"
            ),
        }
    }
}

impl core::error::Error for OriginError {}

/// Whether `url` is an absolute `http://` or `https://` URL with a host and no whitespace.
pub(crate) fn is_http_url(url: &str) -> bool {
    let rest = url
        .strip_prefix("https://")
        .or_else(|| url.strip_prefix("http://"));
    let host = rest.map(|r| r.split(['/', '?', '#']).next().unwrap_or(""));
    !host.is_none_or(str::is_empty) && !url.chars().any(char::is_whitespace)
}

/// The key serde names in an "unknown field `…`" error: a key the operator wrote, never a value.
fn unknown_key(error: &serde_json::Error) -> Option<String> {
    let text = alloc::format!("{error}");
    let rest = text.strip_prefix("unknown field `")?;
    Some(rest.split('`').next()?.into())
}

/// Checks one origin on its own.
fn check(origin: &Origin, position: usize) -> Result<(), OriginError> {
    let name = || origin.name.clone();
    if origin.name.trim().is_empty() {
        return Err(OriginError::EmptyName(position));
    }
    if !is_http_url(&origin.url) {
        return Err(OriginError::InvalidUrl(name()));
    }
    if origin
        .consumer
        .as_deref()
        .is_some_and(|c| c.trim().is_empty())
    {
        return Err(OriginError::EmptyConsumer(name()));
    }
    if origin.event_types.as_ref().is_some_and(Vec::is_empty)
        || origin.risk_levels.as_ref().is_some_and(Vec::is_empty)
    {
        return Err(OriginError::EmptyFilter(name()));
    }
    if let Some(bad) = origin
        .event_types
        .iter()
        .flatten()
        .find(|t| !event_type::is_valid_pattern(t))
    {
        return Err(OriginError::InvalidEventType {
            origin: name(),
            pattern: bad.clone(),
        });
    }
    if origin
        .health_url
        .as_deref()
        .is_some_and(|url| !is_http_url(url))
    {
        return Err(OriginError::InvalidHealthUrl(name()));
    }
    if !(1..=1000).contains(&origin.weight) {
        return Err(OriginError::Weight {
            origin: name(),
            weight: origin.weight,
        });
    }
    if origin
        .signing_secret
        .as_deref()
        .is_some_and(|secret| secret.trim().is_empty())
    {
        return Err(OriginError::EmptySigningSecretName(name()));
    }
    if origin.max_concurrency == Some(0) {
        return Err(OriginError::MaxConcurrency(name()));
    }
    if origin.max_per_second.is_some_and(|rate| !rate.is_valid()) {
        return Err(OriginError::MaxPerSecond(name()));
    }
    if origin.format == Format::Didit && origin.signing_secret.is_none() {
        return Err(OriginError::DiditFormatWithoutSecret(name()));
    }
    if !(1..=MAX_TIMEOUT_MS).contains(&origin.timeout_ms) {
        return Err(OriginError::Timeout {
            origin: name(),
            timeout_ms: origin.timeout_ms,
        });
    }
    Ok(())
}

/// Parses and checks an origin list (the `ORIGINS` setting).
pub fn parse_origins(json: &str) -> Result<Vec<Origin>, OriginError> {
    let origins: Vec<Origin> = crate::json::from_str(json).map_err(|error| {
        let (line, column) = (error.line(), error.column());
        match error.classify() {
            serde_json::error::Category::Data => OriginError::Shape {
                line,
                column,
                unknown_key: unknown_key(&error),
            },
            _ => OriginError::Json { line, column },
        }
    })?;
    if origins.is_empty() {
        return Err(OriginError::Empty);
    }
    for (index, origin) in origins.iter().enumerate() {
        check(origin, index + 1)?;
        if origins
            .iter()
            .take(index)
            .any(|earlier| earlier.name == origin.name)
        {
            return Err(OriginError::DuplicateName(origin.name.clone()));
        }
    }
    Ok(origins)
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::format;
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    #[test]
    fn every_rule_of_an_origin_list_is_checked() {
        assert!(parse_origins(
            r#"[{"name":"a","url":"http://127.0.0.1:8080/x","timeout_ms":500}]"#
        )
        .is_ok());
        for (bad, error) in [
            ("[]", OriginError::Empty),
            (
                r#"[{"name":"","url":"https://a"}]"#,
                OriginError::EmptyName(1),
            ),
            (
                r#"[{"name":"a","url":"https://"}]"#,
                OriginError::InvalidUrl("a".into()),
            ),
            (
                r#"[{"name":"a","url":"https://a"},{"name":"a","url":"https://b"}]"#,
                OriginError::DuplicateName("a".into()),
            ),
            (
                r#"[{"name":"a","url":"https://a","timeout_ms":0}]"#,
                OriginError::Timeout {
                    origin: "a".into(),
                    timeout_ms: 0,
                },
            ),
            (
                r#"[{"name":"a","url":"https://a","event_types":[]}]"#,
                OriginError::EmptyFilter("a".into()),
            ),
            (
                r#"[{"name":"a","url":"https://a","event_types":["user.*.x"]}]"#,
                OriginError::InvalidEventType {
                    origin: "a".into(),
                    pattern: "user.*.x".into(),
                },
            ),
            (
                r#"[{"name":"a","url":"https://a","consumer":" "}]"#,
                OriginError::EmptyConsumer("a".into()),
            ),
            (
                r#"[{"name":"a","url":"https://a","weight":0}]"#,
                OriginError::Weight {
                    origin: "a".into(),
                    weight: 0,
                },
            ),
            (
                r#"[{"name":"a","url":"https://a","health_url":"/healthz"}]"#,
                OriginError::InvalidHealthUrl("a".into()),
            ),
            (
                r#"[{"name":"a","url":"https://a","signing_secret":""}]"#,
                OriginError::EmptySigningSecretName("a".into()),
            ),
            (
                r#"[{"name":"a","url":"https://a","max_concurrency":0}]"#,
                OriginError::MaxConcurrency("a".into()),
            ),
            (
                r#"[{"name":"a","url":"https://a","max_per_second":0}]"#,
                OriginError::MaxPerSecond("a".into()),
            ),
            (
                r#"[{"name":"a","url":"https://a","max_per_second":1001}]"#,
                OriginError::MaxPerSecond("a".into()),
            ),
            (
                r#"[{"name":"a","url":"https://a","format":"didit"}]"#,
                OriginError::DiditFormatWithoutSecret("a".into()),
            ),
        ] {
            assert_eq!(parse_origins(bad), Err(error), "{bad}");
        }
    }

    #[test]
    fn limits_are_read_and_an_unlimited_origin_has_none() {
        let origins = parse_origins(
            r#"[{"name":"a","url":"https://a","max_concurrency":2,"max_per_second":5,"timeout_ms":3000},
                {"name":"b","url":"https://b","max_per_second":0.3},
                {"name":"c","url":"https://c"}]"#,
        )
        .expect("valid");
        let a = origins[0].limits().expect("limited");
        assert_eq!(
            (a.max_concurrency, a.interval_ms, a.lease_ms),
            (
                Some(2),
                Some(200),
                3_000 + crate::origin_gate::LEASE_MARGIN_MS
            )
        );
        // 1000 / 0.3 = 3333.3…: rounded up, never faster than written.
        assert_eq!(origins[1].limits().and_then(|l| l.interval_ms), Some(3_334));
        assert_eq!(origins[2].limits(), None);
        assert_eq!(PerSecond(1_000.0).interval_ms(), 1);
        assert_eq!(PerSecond(3.0).interval_ms(), 334);
        assert!(matches!(
            parse_origins(r#"[{"name":"a","url":"https://a","max_concurrency":-1}]"#),
            Err(OriginError::Shape { .. })
        ));
    }

    #[test]
    fn the_format_is_cloudevents_unless_didit_is_named() {
        let origins = parse_origins(
            r#"[{"name":"a","url":"https://a"},
                {"name":"b","url":"https://b","format":"cloudevents"},
                {"name":"c","url":"https://c","format":"didit","signing_secret":"C_SECRET"}]"#,
        )
        .expect("valid");
        let formats: Vec<Format> = origins.iter().map(|o| o.format).collect();
        assert_eq!(
            formats,
            [Format::Cloudevents, Format::Cloudevents, Format::Didit]
        );
        for bad in ["Didit", "svix", ""] {
            let json = format!(
                r#"[{{"name":"a","url":"https://a","format":"{bad}","signing_secret":"S"}}]"#
            );
            assert!(
                matches!(parse_origins(&json), Err(OriginError::Shape { .. })),
                "{bad}"
            );
        }
    }

    #[test]
    fn shape_errors_name_keys_but_never_values() {
        let typo = parse_origins(r#"[{"name":"a","url":"https://a","priorty":1}]"#);
        assert!(matches!(
            &typo,
            Err(OriginError::Shape { unknown_key: Some(key), .. }) if key == "priorty"
        ));
        let secret_url = "https://user:hunter2@origin.example/x";
        for json in [
            format!(r#"[{{"name":"a","url":"{secret_url}","timeout_ms":"{secret_url}"}}]"#),
            format!(r#"[{{"name":"a","url":{secret_url}}}]"#),
            format!(r#"{{"name":"a","url":"{secret_url}"}}"#),
        ] {
            let error = parse_origins(&json).expect_err("invalid");
            assert!(!format!("{error}").contains("hunter2"), "{error}");
        }
        assert!(matches!(
            parse_origins("[{"),
            Err(OriginError::Json { line: 1, .. })
        ));
    }

    #[test]
    fn an_origin_takes_the_types_and_levels_it_lists() {
        let origins = parse_origins(
            r#"[{"name":"crm","url":"https://crm","consumer":"crm","event_types":["user.*"],"risk_levels":["high"]},
                {"name":"all","url":"https://all"}]"#,
        )
        .expect("valid");
        assert!(origins[0].accepts("user.status.updated", Level::High));
        assert!(!origins[0].accepts("user.status.updated", Level::Low));
        assert!(!origins[0].accepts("status.updated", Level::High));
        assert!(origins[1].accepts("anything", Level::Unknown));
        assert_eq!(
            (origins[0].consumer(), origins[1].consumer()),
            ("crm", "default")
        );
    }
}
