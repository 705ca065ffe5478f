//! The receiver's configuration: parsed and checked once, with every problem named.
//!
//! Values come from a lookup function (the adapter reads `wrangler.toml` vars and secrets), so
//! the rules live here and are tested here. Problems never quote a secret's value.

use alloc::string::{String, ToString};
use alloc::vec::Vec;
use core::fmt;
use serde::Deserialize;

use crate::admin::AdminToken;
use crate::retry::{
    RetrySchedule, RetryScheduleError, DEFAULT_RETRY_JITTER_PERCENT, DEFAULT_RETRY_SCHEDULE,
    MAX_RETRY_JITTER_PERCENT,
};
use crate::risk::{Level, RiskRules, RulesError};
use crate::secret::{SecretError, SigningSecret, WebhookSecrets};
use crate::stream_token::{StreamTokenSecret, DEFAULT_MAX_LIFETIME_SECS};

/// Default freshness window: Didit's second retry comes about 5 minutes after the first try,
/// possibly with the original timestamp, so 300 s would drop it.
pub const DEFAULT_TIMESTAMP_TOLERANCE_SECS: u64 = 600;
/// Default body limit: 1 MiB.
pub const DEFAULT_MAX_BODY_BYTES: u64 = 1 << 20;
/// Default time a delivered event's id is remembered for deduplication: 7 days.
pub const DEFAULT_DEDUP_TTL_SECS: u64 = 7 * 24 * 3600;
/// Default time one origin request may take.
pub const DEFAULT_ORIGIN_TIMEOUT_MS: u32 = 10_000;
/// Largest accepted `MAX_BODY_BYTES`: a stored event (body plus its CloudEvent envelope) must
/// fit one row of a SQLite-backed Durable Object, which holds at most 2 MB.
pub const MAX_MAX_BODY_BYTES: u64 = 1_572_864;
/// Longest origin timeout accepted; the inbox's alarm must stay well inside its own limits.
pub const MAX_ORIGIN_TIMEOUT_MS: u32 = 60_000;

/// Setting names: the contract with `wrangler.toml`, `wrangler secret` and `.dev.vars`.
pub mod names {
    /// Didit webhook secrets, comma-separated.
    pub const DIDIT_WEBHOOK_SECRETS: &str = "DIDIT_WEBHOOK_SECRETS";
    /// JSON array of origins.
    pub const ORIGINS: &str = "ORIGINS";
    /// `whsec_…` key that signs forwarded events.
    pub const ORIGIN_SIGNING_SECRET: &str = "ORIGIN_SIGNING_SECRET";
    /// Freshness window in seconds.
    pub const TIMESTAMP_TOLERANCE_SECS: &str = "TIMESTAMP_TOLERANCE_SECS";
    /// Largest accepted body.
    pub const MAX_BODY_BYTES: &str = "MAX_BODY_BYTES";
    /// How long ids are remembered.
    pub const DEDUP_TTL_SECS: &str = "DEDUP_TTL_SECS";
    /// Waits between delivery attempts.
    pub const RETRY_SCHEDULE: &str = "RETRY_SCHEDULE";
    /// Whether `X-Signature-Simple` alone is accepted.
    pub const ALLOW_SIMPLE_SIGNATURE: &str = "ALLOW_SIMPLE_SIGNATURE";
    /// Risk rules replacing the defaults (JSON).
    pub const RISK_RULES: &str = "RISK_RULES";
    /// Bearer token of the admin API (optional; the API is off without it).
    pub const ADMIN_TOKEN: &str = "ADMIN_TOKEN";
    /// How long a delivered event's payload is kept.
    pub const PAYLOAD_RETENTION_SECS: &str = "PAYLOAD_RETENTION_SECS";
    /// How far each retry wait is spread, in percent either way.
    pub const RETRY_JITTER_PERCENT: &str = "RETRY_JITTER_PERCENT";
    /// How long a dead letter keeps its payload for replay.
    pub const DEAD_LETTER_RETENTION_SECS: &str = "DEAD_LETTER_RETENTION_SECS";
    /// What a subject's later events do while an earlier one is a dead letter.
    pub const AFTER_DEAD_LETTER: &str = "AFTER_DEAD_LETTER";
    /// HS256 key of the status stream's tokens (optional; the stream is off without it).
    pub const STREAM_TOKEN_SECRET: &str = "STREAM_TOKEN_SECRET";
    /// Longest lifetime of a stream token.
    pub const STREAM_TOKEN_MAX_LIFETIME_SECS: &str = "STREAM_TOKEN_MAX_LIFETIME_SECS";
    /// How long the stream remembers each subject's current status for late connections.
    pub const STREAM_STATUS_RETENTION_SECS: &str = "STREAM_STATUS_RETENTION_SECS";
}

/// Default time the stream remembers a subject's current status: a day, so a page opened
/// after the verification still shows its answer.
pub const DEFAULT_STREAM_STATUS_RETENTION_SECS: u64 = 86_400;

/// Default time a dead letter keeps its payload (identity data) for replay: 14 days, time for
/// an operator to notice, fix the origin and replay.
pub const DEFAULT_DEAD_LETTER_RETENTION_SECS: u64 = 14 * 24 * 3600;

/// What a consumer's later events of the same subject do while an earlier one is a dead letter.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum AfterDeadLetter {
    /// They wait (nothing is sent or counted against their schedule) until the dead letter is
    /// replayed and delivered, or its retention ends: the origin never sees a subject's events
    /// out of order. The default, since an out-of-order "approved" after a lost "declined" is
    /// how a person gets wrongly onboarded.
    #[default]
    Hold,
    /// They are delivered; a replayed dead letter then arrives after newer events, and the
    /// origin must order by the event's `time`.
    Continue,
}

impl AfterDeadLetter {
    /// The setting's value for this choice.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Hold => "hold",
            Self::Continue => "continue",
        }
    }
}

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
    /// The name of a secret (`whsec_…`) that signs what this origin receives, instead of
    /// `ORIGIN_SIGNING_SECRET`.
    #[serde(default)]
    pub signing_secret: Option<String>,
}

fn default_weight() -> u32 {
    1
}

/// Whether `url` is an absolute `http://` or `https://` URL with a host and no whitespace.
fn is_http_url(url: &str) -> bool {
    let rest = url
        .strip_prefix("https://")
        .or_else(|| url.strip_prefix("http://"));
    let host = rest.map(|r| r.split(['/', '?', '#']).next().unwrap_or(""));
    !host.is_none_or(str::is_empty) && !url.chars().any(char::is_whitespace)
}

fn default_timeout_ms() -> u32 {
    DEFAULT_ORIGIN_TIMEOUT_MS
}

/// Everything the receiver is configured with.
#[derive(Clone, Debug)]
pub struct Config {
    /// Accepted Didit secrets.
    pub webhook_secrets: WebhookSecrets,
    /// Origins in order of preference; this release delivers to the first.
    pub origins: Vec<Origin>,
    /// Signs forwarded events.
    pub signing_secret: SigningSecret,
    /// Largest accepted distance between a delivery's timestamp and now, either way.
    pub timestamp_tolerance_secs: u64,
    /// Largest accepted body.
    pub max_body_bytes: u64,
    /// How long a delivered event's id is remembered.
    pub dedup_ttl_secs: u64,
    /// How long a delivered event's payload (identity data) is kept; 0 drops it at once.
    pub payload_retention_secs: u64,
    /// Waits between delivery attempts, jitter included; when they run out, a dead letter.
    pub retry_schedule: RetrySchedule,
    /// How long a dead letter keeps its payload for replay.
    pub dead_letter_retention_secs: u64,
    /// What later events of a subject do while an earlier one is a dead letter.
    pub after_dead_letter: AfterDeadLetter,
    /// The stream tokens' key; `None` turns the stream off.
    pub stream_token_secret: Option<StreamTokenSecret>,
    /// Longest accepted stream token lifetime.
    pub stream_token_max_lifetime_secs: u64,
    /// How long the stream remembers each subject's current status.
    pub stream_status_retention_secs: u64,
    /// Whether `X-Signature-Simple` alone authenticates a delivery.
    pub allow_simple_signature: bool,
    /// The rules that turn a decision into a risk level and signals.
    pub risk_rules: RiskRules,
    /// The admin API's token; `None` turns the admin API off.
    pub admin_token: Option<AdminToken>,
    /// Signing secrets of origins that name their own, by origin name.
    pub origin_signing_secrets: alloc::collections::BTreeMap<String, SigningSecret>,
}

impl Config {
    /// The key that signs what `origin` receives.
    pub fn signing_secret_for(&self, origin: &Origin) -> &SigningSecret {
        self.origin_signing_secrets
            .get(&origin.name)
            .unwrap_or(&self.signing_secret)
    }
}

/// What is wrong with one setting.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Problem {
    /// A required setting is not set.
    Missing,
    /// A number setting does not hold a whole number.
    NotANumber,
    /// A number is outside what the receiver can work with.
    OutOfRange {
        /// Smallest accepted value.
        min: u64,
        /// Largest accepted value.
        max: u64,
    },
    /// `DEDUP_TTL_SECS` is shorter than the freshness window, so a replay could outlive its id.
    ShorterThanTolerance {
        /// The tolerance in force.
        tolerance_secs: u64,
    },
    /// `PAYLOAD_RETENTION_SECS` outlives `DEDUP_TTL_SECS`, when the whole record goes.
    LongerThanDedupTtl {
        /// The TTL in force.
        dedup_ttl_secs: u64,
    },
    /// A flag is not `true` or `false`.
    NotABoolean,
    /// A setting is not one of its few accepted words.
    NotOneOf(&'static [&'static str]),
    /// A secret is unusable.
    Secret(SecretError),
    /// `ORIGINS` is not a valid origin list; the text says why.
    Origins(String),
    /// `RETRY_SCHEDULE` is unusable.
    RetrySchedule(RetryScheduleError),
    /// `RISK_RULES` is unusable.
    RiskRules(RulesError),
    /// `ADMIN_TOKEN` is too short to guard anything (its length is given, never its value).
    ShortAdminToken(usize),
    /// `STREAM_TOKEN_SECRET` is too short for HS256 (its length is given, never its value).
    ShortStreamSecret(usize),
}

/// One setting and what is wrong with it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigError {
    /// The setting's name, as in [`names`].
    pub setting: &'static str,
    /// What is wrong.
    pub problem: Problem,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: ", self.setting)?;
        match &self.problem {
            Problem::Missing => f.write_str("is not set"),
            Problem::NotANumber => f.write_str("must be a whole number"),
            Problem::OutOfRange { min, max } => write!(f, "must be between {min} and {max}"),
            Problem::ShorterThanTolerance { tolerance_secs } => write!(
                f,
                "must be at least TIMESTAMP_TOLERANCE_SECS ({tolerance_secs}), or a replayed delivery could outlive its id"
            ),
            Problem::LongerThanDedupTtl { dedup_ttl_secs } => write!(
                f,
                "must be at most DEDUP_TTL_SECS ({dedup_ttl_secs}), when the event's record is forgotten"
            ),
            Problem::NotABoolean => f.write_str("must be `true` or `false`"),
            Problem::NotOneOf(choices) => {
                f.write_str("must be one of")?;
                for (index, choice) in choices.iter().enumerate() {
                    let separator = if index == 0 { " " } else { ", " };
                    write!(f, "{separator}`{choice}`")?;
                }
                Ok(())
            }
            Problem::Secret(error) => write!(f, "{error}"),
            Problem::Origins(reason) => f.write_str(reason),
            Problem::RetrySchedule(error) => write!(f, "{error}"),
            Problem::RiskRules(error) => write!(f, "{error}"),
            Problem::ShortStreamSecret(len) => write!(
                f,
                "is {len} bytes; use at least {}",
                crate::stream_token::MIN_SECRET_LEN
            ),
            Problem::ShortAdminToken(len) => write!(
                f,
                "is {len} characters; use at least {}",
                crate::admin::MIN_TOKEN_LEN
            ),
        }
    }
}

/// Every problem found, so one deploy fixes them all.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (index, error) in self.0.iter().enumerate() {
            if index > 0 {
                f.write_str("; ")?;
            }
            write!(f, "{error}")?;
        }
        Ok(())
    }
}

struct Reader<F> {
    lookup: F,
    errors: Vec<ConfigError>,
}

impl<F: Fn(&str) -> Option<String>> Reader<F> {
    fn fail(&mut self, setting: &'static str, problem: Problem) {
        self.errors.push(ConfigError { setting, problem });
    }

    /// The setting's value, blank counting as unset.
    fn get(&self, setting: &str) -> Option<String> {
        (self.lookup)(setting).filter(|value| !value.trim().is_empty())
    }

    fn required(&mut self, setting: &'static str) -> Option<String> {
        let value = self.get(setting);
        if value.is_none() {
            self.fail(setting, Problem::Missing);
        }
        value
    }

    fn number(&mut self, setting: &'static str, default: u64, min: u64, max: u64) -> u64 {
        let Some(text) = self.get(setting) else {
            return default;
        };
        match text.trim().parse::<u64>() {
            Ok(value) if (min..=max).contains(&value) => value,
            Ok(_) => {
                self.fail(setting, Problem::OutOfRange { min, max });
                default
            }
            Err(_) => {
                self.fail(setting, Problem::NotANumber);
                default
            }
        }
    }

    fn flag(&mut self, setting: &'static str) -> bool {
        let Some(text) = self.get(setting) else {
            return false;
        };
        match text.trim().to_ascii_lowercase().as_str() {
            "true" | "1" | "yes" | "on" => true,
            "false" | "0" | "no" | "off" => false,
            _ => {
                self.fail(setting, Problem::NotABoolean);
                false
            }
        }
    }
}

/// Checks an origin list; the error text names the offending entry.
pub fn parse_origins(json: &str) -> Result<Vec<Origin>, String> {
    let origins: Vec<Origin> = serde_json::from_str(json).map_err(|error| {
        alloc::format!("is not a JSON array of {{\"name\", \"url\"}} objects: {error}")
    })?;
    if origins.is_empty() {
        return Err("lists no origin".to_string());
    }
    for (index, origin) in origins.iter().enumerate() {
        let at = index + 1;
        if origin.name.trim().is_empty() {
            return Err(alloc::format!("origin {at} has an empty name"));
        }
        if origins
            .iter()
            .take(index)
            .any(|earlier| earlier.name == origin.name)
        {
            return Err(alloc::format!(
                "origin name `{}` is used twice",
                origin.name
            ));
        }
        if !is_http_url(&origin.url) {
            // The URL itself is not repeated: it may carry credentials (`https://user:pass@…`).
            return Err(alloc::format!(
                "origin `{}` has an invalid url; it must be an absolute http:// or https:// URL",
                origin.name
            ));
        }
        if origin
            .consumer
            .as_deref()
            .is_some_and(|c| c.trim().is_empty())
        {
            return Err(alloc::format!(
                "origin `{}` has an empty consumer",
                origin.name
            ));
        }
        if origin.event_types.as_ref().is_some_and(Vec::is_empty)
            || origin.risk_levels.as_ref().is_some_and(Vec::is_empty)
        {
            return Err(alloc::format!(
                "origin `{}` lists no event_types or risk_levels; leave the key out to take all",
                origin.name
            ));
        }
        if let Some(bad) = origin
            .event_types
            .iter()
            .flatten()
            .find(|t| !crate::route::is_valid_type_pattern(t))
        {
            return Err(alloc::format!(
                "origin `{}` has event type `{bad}`; use an exact type, `family.*` or `*`",
                origin.name
            ));
        }
        if origin
            .health_url
            .as_deref()
            .is_some_and(|url| !is_http_url(url))
        {
            return Err(alloc::format!(
                "origin `{}` has an invalid health_url; it must be an absolute http:// or https:// URL",
                origin.name
            ));
        }
        if !(1..=1000).contains(&origin.weight) {
            return Err(alloc::format!(
                "origin `{}` has weight {}; it must be between 1 and 1000",
                origin.name,
                origin.weight
            ));
        }
        if origin
            .signing_secret
            .as_deref()
            .is_some_and(|name| name.trim().is_empty())
        {
            return Err(alloc::format!(
                "origin `{}` has an empty signing_secret name",
                origin.name
            ));
        }
        if !(1..=MAX_ORIGIN_TIMEOUT_MS).contains(&origin.timeout_ms) {
            return Err(alloc::format!(
                "origin `{}` has timeout_ms {}; it must be between 1 and {MAX_ORIGIN_TIMEOUT_MS}",
                origin.name,
                origin.timeout_ms
            ));
        }
    }
    Ok(origins)
}

impl Config {
    /// Reads and checks every setting through `lookup` (which returns a var's or secret's value).
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigErrors> {
        use names::*;
        let mut reader = Reader {
            lookup,
            errors: Vec::new(),
        };

        let webhook_secrets = reader.required(DIDIT_WEBHOOK_SECRETS).and_then(|text| {
            WebhookSecrets::parse(&text)
                .map_err(|e| reader.fail(DIDIT_WEBHOOK_SECRETS, Problem::Secret(e)))
                .ok()
        });
        let origins = reader.required(ORIGINS).and_then(|text| {
            parse_origins(&text)
                .map_err(|e| reader.fail(ORIGINS, Problem::Origins(e)))
                .ok()
        });
        let mut origin_signing_secrets = alloc::collections::BTreeMap::new();
        for origin in origins.iter().flatten() {
            let Some(name) = origin.signing_secret.as_deref() else {
                continue;
            };
            let parsed = match reader.get(name.trim()) {
                None => Err(alloc::format!(
                    "origin `{}` names signing_secret `{name}`, which is not set",
                    origin.name
                )),
                Some(text) => SigningSecret::parse(&text).map_err(|e| {
                    alloc::format!("origin `{}`: signing_secret `{name}` {e}", origin.name)
                }),
            };
            match parsed {
                Ok(secret) => {
                    origin_signing_secrets.insert(origin.name.clone(), secret);
                }
                Err(problem) => reader.fail(ORIGINS, Problem::Origins(problem)),
            }
        }
        let signing_secret = reader.required(ORIGIN_SIGNING_SECRET).and_then(|text| {
            SigningSecret::parse(&text)
                .map_err(|e| reader.fail(ORIGIN_SIGNING_SECRET, Problem::Secret(e)))
                .ok()
        });
        let timestamp_tolerance_secs = reader.number(
            TIMESTAMP_TOLERANCE_SECS,
            DEFAULT_TIMESTAMP_TOLERANCE_SECS,
            1,
            86_400,
        );
        let max_body_bytes = reader.number(
            MAX_BODY_BYTES,
            DEFAULT_MAX_BODY_BYTES,
            1024,
            MAX_MAX_BODY_BYTES,
        );
        let dedup_ttl_secs = reader.number(DEDUP_TTL_SECS, DEFAULT_DEDUP_TTL_SECS, 1, 365 * 86_400);
        if dedup_ttl_secs < timestamp_tolerance_secs {
            reader.fail(
                DEDUP_TTL_SECS,
                Problem::ShorterThanTolerance {
                    tolerance_secs: timestamp_tolerance_secs,
                },
            );
        }
        let payload_retention_secs = reader.number(PAYLOAD_RETENTION_SECS, 0, 0, 365 * 86_400);
        if payload_retention_secs > dedup_ttl_secs {
            reader.fail(
                PAYLOAD_RETENTION_SECS,
                Problem::LongerThanDedupTtl { dedup_ttl_secs },
            );
        }
        let schedule_text = reader
            .get(RETRY_SCHEDULE)
            .unwrap_or_else(|| DEFAULT_RETRY_SCHEDULE.to_string());
        let jitter_percent = reader.number(
            RETRY_JITTER_PERCENT,
            u64::from(DEFAULT_RETRY_JITTER_PERCENT),
            0,
            u64::from(MAX_RETRY_JITTER_PERCENT),
        );
        let retry_schedule = RetrySchedule::parse(&schedule_text)
            .map_err(|e| reader.fail(RETRY_SCHEDULE, Problem::RetrySchedule(e)))
            .ok()
            .map(|schedule| {
                schedule.with_jitter_percent(
                    u8::try_from(jitter_percent).unwrap_or(MAX_RETRY_JITTER_PERCENT),
                )
            });
        let dead_letter_retention_secs = reader.number(
            DEAD_LETTER_RETENTION_SECS,
            DEFAULT_DEAD_LETTER_RETENTION_SECS,
            1,
            365 * 86_400,
        );
        let after_dead_letter = match reader.get(AFTER_DEAD_LETTER) {
            None => AfterDeadLetter::default(),
            Some(text) => match text.trim().to_ascii_lowercase().as_str() {
                "hold" => AfterDeadLetter::Hold,
                "continue" => AfterDeadLetter::Continue,
                _ => {
                    reader.fail(AFTER_DEAD_LETTER, Problem::NotOneOf(&["hold", "continue"]));
                    AfterDeadLetter::default()
                }
            },
        };
        let allow_simple_signature = reader.flag(ALLOW_SIMPLE_SIGNATURE);
        let risk_rules = match reader.get(RISK_RULES) {
            None => Some(RiskRules::default_rules()),
            Some(text) => RiskRules::parse(&text)
                .map_err(|e| reader.fail(RISK_RULES, Problem::RiskRules(e)))
                .ok(),
        };
        let stream_token_secret = reader.get(STREAM_TOKEN_SECRET).and_then(|text| {
            StreamTokenSecret::parse(&text)
                .map_err(|len| reader.fail(STREAM_TOKEN_SECRET, Problem::ShortStreamSecret(len)))
                .ok()
        });
        let stream_token_max_lifetime_secs = reader.number(
            STREAM_TOKEN_MAX_LIFETIME_SECS,
            DEFAULT_MAX_LIFETIME_SECS,
            10,
            3_600,
        );
        let stream_status_retention_secs = reader.number(
            STREAM_STATUS_RETENTION_SECS,
            DEFAULT_STREAM_STATUS_RETENTION_SECS,
            1,
            365 * 86_400,
        );
        let admin_token = reader.get(ADMIN_TOKEN).and_then(|text| {
            AdminToken::parse(&text)
                .map_err(|len| reader.fail(ADMIN_TOKEN, Problem::ShortAdminToken(len)))
                .ok()
        });

        match (
            webhook_secrets,
            origins,
            signing_secret,
            retry_schedule,
            risk_rules,
        ) {
            (
                Some(webhook_secrets),
                Some(origins),
                Some(signing_secret),
                Some(retry_schedule),
                Some(risk_rules),
            ) if reader.errors.is_empty() => Ok(Self {
                webhook_secrets,
                origins,
                signing_secret,
                timestamp_tolerance_secs,
                max_body_bytes,
                dedup_ttl_secs,
                payload_retention_secs,
                retry_schedule,
                dead_letter_retention_secs,
                after_dead_letter,
                stream_token_secret,
                stream_token_max_lifetime_secs,
                stream_status_retention_secs,
                allow_simple_signature,
                risk_rules,
                admin_token,
                origin_signing_secrets,
            }),
            _ => Err(ConfigErrors(reader.errors)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::format;
    use alloc::vec;
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    const SIGNING: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

    fn lookup(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let owned: Vec<(String, String)> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |name| {
            owned
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.clone())
        }
    }

    fn minimal() -> Vec<(&'static str, &'static str)> {
        vec![
            ("DIDIT_WEBHOOK_SECRETS", "didit-secret"),
            (
                "ORIGINS",
                r#"[{"name":"aws-eu","url":"https://origin.example/hooks"}]"#,
            ),
            ("ORIGIN_SIGNING_SECRET", SIGNING),
        ]
    }

    #[test]
    fn defaults_fill_what_is_unset() {
        let config = Config::from_lookup(lookup(&minimal())).expect("valid");
        assert_eq!(config.timestamp_tolerance_secs, 600);
        assert_eq!(config.max_body_bytes, 1 << 20);
        assert_eq!(config.dedup_ttl_secs, 604_800);
        assert_eq!(config.payload_retention_secs, 0);
        assert_eq!(config.retry_schedule, RetrySchedule::default());
        assert_eq!(config.dead_letter_retention_secs, 14 * 86_400);
        assert_eq!(config.after_dead_letter, AfterDeadLetter::Hold);
        assert_eq!(config.stream_token_secret, None);
        assert_eq!(config.stream_token_max_lifetime_secs, 900);
        assert_eq!(config.stream_status_retention_secs, 86_400);
        assert!(!config.allow_simple_signature);
        assert_eq!(config.origins[0].timeout_ms, DEFAULT_ORIGIN_TIMEOUT_MS);
    }

    #[test]
    fn every_problem_is_named_and_no_secret_is_echoed() {
        let errors = Config::from_lookup(lookup(&[
            ("DIDIT_WEBHOOK_SECRETS", "a,,b"),
            ("ORIGINS", r#"[{"name":"x","url":"ftp://nope"}]"#),
            ("ORIGIN_SIGNING_SECRET", "plain-secret-value"),
            ("TIMESTAMP_TOLERANCE_SECS", "900"),
            ("DEDUP_TTL_SECS", "60"),
            ("MAX_BODY_BYTES", "lots"),
            ("RETRY_SCHEDULE", "5,0"),
            ("ALLOW_SIMPLE_SIGNATURE", "maybe"),
            (
                "RISK_RULES",
                "[{\"code\":\"x\",\"level\":\"high\",\"when\":{}}]",
            ),
        ]))
        .expect_err("invalid");
        let settings: Vec<&str> = errors.0.iter().map(|e| e.setting).collect();
        assert_eq!(
            settings,
            [
                "DIDIT_WEBHOOK_SECRETS",
                "ORIGINS",
                "ORIGIN_SIGNING_SECRET",
                "MAX_BODY_BYTES",
                "DEDUP_TTL_SECS",
                "RETRY_SCHEDULE",
                "ALLOW_SIMPLE_SIGNATURE",
                "RISK_RULES"
            ]
        );
        let text = format!("{errors}");
        assert!(
            text.contains("ORIGIN_SIGNING_SECRET: must start with `whsec_`"),
            "{text}"
        );
        assert!(!text.contains("plain-secret-value"));
        assert!(
            !text.contains("ftp://nope"),
            "origin URLs may hold credentials: {text}"
        );
        assert!(
            text.contains("RISK_RULES: rule 1: `when` has no condition"),
            "{text}"
        );
    }

    #[test]
    fn stream_settings() {
        let mut pairs = minimal();
        pairs.extend([
            ("STREAM_TOKEN_SECRET", "too-short-secret"),
            ("STREAM_TOKEN_MAX_LIFETIME_SECS", "7200"),
        ]);
        let text = format!("{}", Config::from_lookup(lookup(&pairs)).expect_err("bad"));
        assert_eq!(
            text,
            "STREAM_TOKEN_SECRET: is 16 bytes; use at least 32; \
             STREAM_TOKEN_MAX_LIFETIME_SECS: must be between 10 and 3600"
        );
        let mut pairs = minimal();
        pairs.extend([
            (
                "STREAM_TOKEN_SECRET",
                "a-stream-secret-that-is-long-enough-0123",
            ),
            ("STREAM_TOKEN_MAX_LIFETIME_SECS", "300"),
            ("STREAM_STATUS_RETENTION_SECS", "60"),
        ]);
        let config = Config::from_lookup(lookup(&pairs)).expect("valid");
        assert!(config.stream_token_secret.is_some());
        assert_eq!(
            (
                config.stream_token_max_lifetime_secs,
                config.stream_status_retention_secs
            ),
            (300, 60)
        );
    }

    #[test]
    fn dead_letter_settings() {
        let mut pairs = minimal();
        pairs.extend([
            ("RETRY_SCHEDULE", "2x3"),
            ("RETRY_JITTER_PERCENT", "0"),
            ("DEAD_LETTER_RETENTION_SECS", "3600"),
            ("AFTER_DEAD_LETTER", " Continue "),
        ]);
        let config = Config::from_lookup(lookup(&pairs)).expect("valid");
        assert_eq!(config.retry_schedule.wait_after_ms(3, 12_345), Some(2_000));
        assert_eq!(config.retry_schedule.wait_after_ms(4, 0), None);
        assert_eq!(config.dead_letter_retention_secs, 3600);
        assert_eq!(config.after_dead_letter, AfterDeadLetter::Continue);

        let mut pairs = minimal();
        pairs.extend([
            ("RETRY_JITTER_PERCENT", "60"),
            ("DEAD_LETTER_RETENTION_SECS", "0"),
            ("AFTER_DEAD_LETTER", "skip"),
        ]);
        let text = format!("{}", Config::from_lookup(lookup(&pairs)).expect_err("bad"));
        assert_eq!(
            text,
            "RETRY_JITTER_PERCENT: must be between 0 and 50; \
             DEAD_LETTER_RETENTION_SECS: must be between 1 and 31536000; \
             AFTER_DEAD_LETTER: must be one of `hold`, `continue`"
        );
    }

    #[test]
    fn payload_retention_cannot_outlive_the_record() {
        let mut pairs = minimal();
        pairs.push(("DEDUP_TTL_SECS", "3600"));
        pairs.push(("PAYLOAD_RETENTION_SECS", "3601"));
        let errors = Config::from_lookup(lookup(&pairs)).expect_err("too long");
        assert_eq!(errors.0[0].setting, "PAYLOAD_RETENTION_SECS");
        pairs.pop();
        pairs.push(("PAYLOAD_RETENTION_SECS", "3600"));
        assert_eq!(
            Config::from_lookup(lookup(&pairs))
                .expect("valid")
                .payload_retention_secs,
            3600
        );
    }

    #[test]
    fn origins_may_name_their_own_signing_secret() {
        let mut pairs = minimal();
        pairs[1] = (
            "ORIGINS",
            r#"[{"name":"aws","url":"https://a","signing_secret":"AWS_SIGNING"},{"name":"gcp","url":"https://g"}]"#,
        );
        pairs.push((
            "AWS_SIGNING",
            "whsec_ZGlkaXQtZWRnZS1sb2NhbC1kZW1vLWtleS0wMDE=",
        ));
        let config = Config::from_lookup(lookup(&pairs)).expect("valid");
        assert_eq!(
            config.signing_secret_for(&config.origins[0]).key(),
            b"didit-edge-local-demo-key-001"
        );
        assert_eq!(
            config.signing_secret_for(&config.origins[1]),
            &config.signing_secret
        );
        pairs.pop();
        let errors = Config::from_lookup(lookup(&pairs)).expect_err("secret missing");
        assert_eq!(
            format!("{errors}"),
            "ORIGINS: origin `aws` names signing_secret `AWS_SIGNING`, which is not set"
        );
    }

    #[test]
    fn missing_settings_are_reported() {
        let errors = Config::from_lookup(lookup(&[])).expect_err("empty");
        assert_eq!(errors.0.len(), 3);
        assert!(errors.0.iter().all(|e| e.problem == Problem::Missing));
    }

    #[test]
    fn origin_lists_are_checked() {
        assert!(parse_origins(
            r#"[{"name":"a","url":"http://127.0.0.1:8080/x","timeout_ms":500}]"#
        )
        .is_ok());
        for bad in [
            "[]",
            "{}",
            r#"[{"name":"","url":"https://a"}]"#,
            r#"[{"name":"a","url":"https://"}]"#,
            r#"[{"name":"a","url":"https://a"},{"name":"a","url":"https://b"}]"#,
            r#"[{"name":"a","url":"https://a","timeout_ms":0}]"#,
            r#"[{"name":"a","url":"https://a","priorty":1}]"#,
            r#"[{"name":"a","url":"https://a","event_types":[]}]"#,
            r#"[{"name":"a","url":"https://a","event_types":["user.*.x"]}]"#,
            r#"[{"name":"a","url":"https://a","risk_levels":["severe"]}]"#,
            r#"[{"name":"a","url":"https://a","consumer":" "}]"#,
            r#"[{"name":"a","url":"https://a","weight":0}]"#,
            r#"[{"name":"a","url":"https://a","health_url":"/healthz"}]"#,
            r#"[{"name":"a","url":"https://a","signing_secret":""}]"#,
        ] {
            assert!(parse_origins(bad).is_err(), "{bad}");
        }
    }
}
