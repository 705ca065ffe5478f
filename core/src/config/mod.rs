//! The receiver's configuration: parsed and checked once, with every problem named.
//!
//! Settings fall into four groups, each usable on its own, so that a mistake in one never
//! costs what the others can still do:
//! - [`IntakeConfig`]: what admits a delivery. Only a missing or unusable
//!   `DIDIT_WEBHOOK_SECRETS` stops intake (every delivery is then answered 503, and Didit
//!   retries); a broken limit falls back to its safe value, so a typo cannot lose what Didit
//!   sends meanwhile.
//! - [`DeliveryConfig`]: what classifies, routes, signs, retries and forgets events. While any
//!   of its settings is broken, authentic deliveries are still stored and answered 200; they
//!   wait in their inbox, with no retry used up and nothing forgotten, until it is fixed.
//! - the admin API and the status stream ([`Feature`]): off when unset, refused (503) when
//!   broken, and never in the way of delivery.
//!
//! Values come from a lookup function (the adapter reads `wrangler.toml` vars and secrets), so
//! the rules live here and are tested here. Problems never quote a secret's value.

pub mod names;
mod problem;
mod reader;

use alloc::collections::BTreeMap;
use alloc::string::{String, ToString};
use alloc::vec::Vec;
use core::net::IpAddr;

pub use problem::{ConfigError, ConfigErrors, Problem};
use reader::Reader;

use crate::admin::AdminToken;
use crate::delivery::Retention;
use crate::inbox::AfterDeadLetter;
use crate::origin::{parse_origins, Origin};
use crate::rejection::Rejection;
use crate::retry::{
    RetrySchedule, DEFAULT_RETRY_JITTER_PERCENT, DEFAULT_RETRY_SCHEDULE, MAX_RETRY_JITTER_PERCENT,
};
use crate::risk::RiskRules;
use crate::secret::{SigningSecrets, WebhookSecrets};
use crate::stream_token::{StreamTokenSecret, DEFAULT_MAX_LIFETIME_SECS};

/// Default freshness window: Didit's second retry comes about 5 minutes after the first try,
/// possibly with the original timestamp, so 300 s would drop it.
pub const DEFAULT_TIMESTAMP_TOLERANCE_SECS: u64 = 600;
/// Default body limit: 1 MiB.
pub const DEFAULT_MAX_BODY_BYTES: u64 = 1 << 20;
/// Default time a delivered event's id is remembered for deduplication: 7 days.
pub const DEFAULT_DEDUP_TTL_SECS: u64 = 7 * 24 * 3600;
/// Largest accepted `MAX_BODY_BYTES`: a stored event (body plus its CloudEvent envelope) must
/// fit one row of a SQLite-backed Durable Object, which holds at most 2 MB.
pub const MAX_MAX_BODY_BYTES: u64 = 1_572_864;
/// Default time the stream remembers a subject's current status: a day, so a page opened
/// after the verification still shows its answer.
pub const DEFAULT_STREAM_STATUS_RETENTION_SECS: u64 = 86_400;
/// Default time a dead letter keeps its payload (identity data) for replay: 14 days, time for
/// an operator to notice, fix the origin and replay.
pub const DEFAULT_DEAD_LETTER_RETENTION_SECS: u64 = 14 * 24 * 3600;
/// Default subrequests per alarm run: the Workers Free plan's limit per invocation, which
/// every plan allows. On a paid plan (1,000) raise it for faster catch-up after an outage.
pub const DEFAULT_SUBREQUEST_LIMIT: u64 = 50;
/// Default `aud` of stream tokens, so a token minted for another service cannot open the stream.
pub const DEFAULT_STREAM_TOKEN_AUDIENCE: &str = "didit-edge";

/// What admits a delivery.
#[derive(Clone, Debug)]
pub struct IntakeConfig {
    /// Accepted Didit secrets.
    pub webhook_secrets: WebhookSecrets,
    /// Largest accepted distance between a delivery's timestamp and now, either way.
    pub timestamp_tolerance_secs: u64,
    /// Largest accepted body.
    pub max_body_bytes: u64,
    /// Whether `X-Signature-Simple` alone authenticates a delivery.
    pub allow_simple_signature: bool,
    /// The addresses deliveries may come from; empty: any.
    pub source_ips: Vec<IpAddr>,
}

impl IntakeConfig {
    /// Whether a delivery from `client` (the platform's `CF-Connecting-IP`) may be read.
    /// Signatures are what authenticate; this only keeps everyone else from spending the
    /// receiver's CPU on forgeries.
    pub fn admits_source(&self, client: Option<&str>) -> Result<(), Rejection> {
        if self.source_ips.is_empty() {
            return Ok(());
        }
        let client: Option<IpAddr> = client.and_then(|text| text.trim().parse().ok());
        match client {
            Some(ip) if self.source_ips.contains(&ip) => Ok(()),
            _ => Err(Rejection::ForbiddenSource),
        }
    }
}

/// What classifies, routes, signs, retries and forgets events.
#[derive(Clone, Debug)]
pub struct DeliveryConfig {
    /// Every origin, each serving one consumer.
    pub origins: Vec<Origin>,
    /// Signs forwarded events (several during a rotation: each signature is sent).
    pub signing_secrets: SigningSecrets,
    /// Signing secrets of origins that name their own, by origin name.
    pub origin_signing_secrets: BTreeMap<String, SigningSecrets>,
    /// The rules that turn a decision into a risk level and signals.
    pub risk_rules: RiskRules,
    /// Waits between delivery attempts, jitter included; when they run out, a dead letter.
    pub retry_schedule: RetrySchedule,
    /// How long each part of a finished event is kept.
    pub retention: Retention,
    /// What later events of a subject do while an earlier one is a dead letter.
    pub after_dead_letter: AfterDeadLetter,
    /// Most subrequests one alarm run makes.
    pub subrequest_limit: u32,
}

impl DeliveryConfig {
    /// What an inbox decides by.
    pub fn inbox_policy(&self) -> crate::inbox::InboxPolicy<'_> {
        crate::inbox::InboxPolicy {
            retry_schedule: &self.retry_schedule,
            retention: self.retention,
            after_dead_letter: self.after_dead_letter,
        }
    }

    /// What classification decides by: the risk rules and where events may go.
    pub fn classify_policy(&self) -> crate::intake::ClassifyPolicy<'_> {
        crate::intake::ClassifyPolicy {
            risk_rules: &self.risk_rules,
            origins: &self.origins,
        }
    }

    /// The keys that sign what `origin` receives.
    pub fn signing_secrets_for(&self, origin: &Origin) -> &SigningSecrets {
        self.origin_signing_secrets
            .get(&origin.name)
            .unwrap_or(&self.signing_secrets)
    }
}

/// Where operational alerts ([`crate::alert`]) go, and the keys they are signed with: their
/// own, so that an alert receiver (often another team's chat or pager relay) can never sign
/// an event an origin would take as authentic.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AlertsConfig {
    /// The URL alerts are POSTed to.
    pub url: String,
    /// `ALERTS_SIGNING_SECRET`: every key signs every alert (rotation as for origins).
    pub signing_secrets: SigningSecrets,
}

/// The status stream's settings.
#[derive(Clone, Debug)]
pub struct StreamConfig {
    /// The tokens' HS256 key.
    pub secret: StreamTokenSecret,
    /// Longest accepted token lifetime.
    pub max_lifetime_secs: u64,
    /// The `aud` every token must carry.
    pub audience: String,
    /// How long the stream remembers each subject's current status.
    pub status_retention_secs: u64,
}

/// Reconciliation with Didit's API ([`crate::reconcile`]).
#[derive(Clone, PartialEq, Eq)]
pub struct ReconcileConfig {
    /// Didit's API key, sent as `x-api-key`.
    pub api_key: String,
    /// Didit's API base URL, without a trailing slash.
    pub base_url: String,
    /// The sweep's settings.
    pub settings: crate::reconcile::Settings,
}

impl core::fmt::Debug for ReconcileConfig {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("ReconcileConfig")
            .field("api_key", &"<redacted>")
            .field("base_url", &self.base_url)
            .field("settings", &self.settings)
            .finish()
    }
}

/// An optional part of the receiver.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Feature<T> {
    /// Its setting is not set: the feature is off.
    Off,
    /// On, with its configuration.
    On(T),
    /// Set but invalid: refused until fixed ([`Config::problems`] says why).
    Broken,
}

impl<T> Feature<T> {
    /// The configuration, when the feature is on.
    pub fn on(&self) -> Option<&T> {
        match self {
            Self::On(value) => Some(value),
            Self::Off | Self::Broken => None,
        }
    }
}

/// Everything the receiver is configured with, by group.
#[derive(Clone, Debug)]
pub struct Config {
    /// `None` when no Didit secret is usable: every delivery is refused with 503.
    pub intake: Option<IntakeConfig>,
    /// `None` while a setting delivery needs is broken: events are stored and wait.
    pub delivery: Option<DeliveryConfig>,
    /// The admin API's token.
    pub admin: Feature<AdminToken>,
    /// The status stream.
    pub stream: Feature<StreamConfig>,
    /// Where operational alerts go.
    pub alerts: Feature<AlertsConfig>,
    /// Reconciliation with Didit's API.
    pub reconcile: Feature<ReconcileConfig>,
    /// The jurisdiction every Durable Object lives in (`None`: wherever the platform puts it);
    /// `Err` while the setting is broken, when no object may be reached at all, so nothing is
    /// ever stored outside the jurisdiction asked for.
    pub jurisdiction: Result<Option<&'static str>, ()>,
    /// Every problem found, in the order the settings were read.
    pub problems: ConfigErrors,
}

/// A name-like setting: 1 to 128 letters, digits, `.`, `_`, `-` or `:`.
fn is_name(text: &str) -> bool {
    (1..=128).contains(&text.len())
        && text
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-' | b':'))
}

impl Config {
    /// Reads and checks every setting through `lookup` (which returns a var's or secret's value).
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Self {
        let mut reader = Reader::new(lookup);
        let tolerance_secs = read_tolerance(&mut reader);
        let jurisdiction = read_jurisdiction(&mut reader);
        // Nothing is admitted while the objects it would be stored in are unknown: Didit gets a
        // 503 and retries, and nothing lands outside the jurisdiction asked for.
        let intake = read_intake(&mut reader, tolerance_secs).filter(|_| jurisdiction.is_ok());
        let (delivery, dedup_ttl_secs) = read_delivery(&mut reader, tolerance_secs);
        let admin = read_admin(&mut reader);
        let stream = read_stream(&mut reader);
        let alerts = read_alerts(&mut reader);
        let reconcile = read_reconcile(
            &mut reader,
            Neighbours {
                dedup_ttl_secs,
                tolerance_secs,
                stream: stream.on().is_some(),
                alerts: alerts != Feature::Off,
            },
        );
        Self {
            intake,
            delivery,
            admin,
            stream,
            alerts,
            reconcile,
            jurisdiction,
            problems: ConfigErrors(reader.errors),
        }
    }
}

/// The freshness window. A broken value falls back to the default (the problem is recorded):
/// intake must go on, and retention only needs it to keep each id past its replay window.
fn read_tolerance<F: Fn(&str) -> Option<String>>(reader: &mut Reader<F>) -> u64 {
    reader.number(
        names::TIMESTAMP_TOLERANCE_SECS,
        DEFAULT_TIMESTAMP_TOLERANCE_SECS,
        (1, 86_400),
    )
}

fn read_intake<F: Fn(&str) -> Option<String>>(
    reader: &mut Reader<F>,
    timestamp_tolerance_secs: u64,
) -> Option<IntakeConfig> {
    use names::*;
    let webhook_secrets = reader.required(DIDIT_WEBHOOK_SECRETS).and_then(|text| {
        WebhookSecrets::parse(&text)
            .map_err(|e| reader.fail(DIDIT_WEBHOOK_SECRETS, Problem::Secret(e)))
            .ok()
    });
    // A broken limit admits up to the largest body that can be stored: refusing a genuine
    // delivery would lose it, and authenticity is still required.
    let max_body_bytes = reader.number_or(
        MAX_BODY_BYTES,
        DEFAULT_MAX_BODY_BYTES,
        MAX_MAX_BODY_BYTES,
        (1024, MAX_MAX_BODY_BYTES),
    );
    // A broken flag is off: the simple signature does not cover the payload.
    let allow_simple_signature = reader.flag(ALLOW_SIMPLE_SIGNATURE);
    // A broken list restricts nothing (the problem is recorded): signatures still decide, and
    // refusing Didit over a typo would lose what it sends.
    let source_ips = reader
        .get(DIDIT_SOURCE_IPS)
        .map(|text| {
            parse_ip_list(&text)
                .map_err(|position| {
                    reader.fail(DIDIT_SOURCE_IPS, Problem::NotAnIpAddress { position });
                })
                .unwrap_or_default()
        })
        .unwrap_or_default();
    Some(IntakeConfig {
        webhook_secrets: webhook_secrets?,
        timestamp_tolerance_secs,
        max_body_bytes,
        allow_simple_signature,
        source_ips,
    })
}

/// Comma-separated IP addresses; the position (from 1) of the first that is not one.
fn parse_ip_list(text: &str) -> Result<Vec<IpAddr>, usize> {
    text.split(',')
        .map(str::trim)
        .filter(|entry| !entry.is_empty())
        .enumerate()
        .map(|(index, entry)| entry.parse().map_err(|_| index + 1))
        .collect()
}

/// Jurisdictions Durable Objects can be restricted to.
pub const JURISDICTIONS: &[&str] = &["eu", "fedramp"];

fn read_jurisdiction<F: Fn(&str) -> Option<String>>(
    reader: &mut Reader<F>,
) -> Result<Option<&'static str>, ()> {
    let Some(text) = reader.get(names::DURABLE_OBJECT_JURISDICTION) else {
        return Ok(None);
    };
    match JURISDICTIONS.iter().find(|j| **j == text.trim()) {
        Some(jurisdiction) => Ok(Some(jurisdiction)),
        None => {
            reader.fail(
                names::DURABLE_OBJECT_JURISDICTION,
                Problem::NotOneOf(JURISDICTIONS),
            );
            Err(())
        }
    }
}

fn read_alerts<F: Fn(&str) -> Option<String>>(reader: &mut Reader<F>) -> Feature<AlertsConfig> {
    use names::*;
    let Some(url) = reader.get(ALERTS_URL) else {
        return Feature::Off;
    };
    let mark = reader.mark();
    let url = String::from(url.trim());
    if !crate::origin::is_http_url(&url) {
        reader.fail(ALERTS_URL, Problem::NotAnHttpUrl);
    }
    let signing_secrets = reader.required(ALERTS_SIGNING_SECRET).and_then(|text| {
        SigningSecrets::parse(&text)
            .map_err(|e| reader.fail(ALERTS_SIGNING_SECRET, Problem::Secret(e)))
            .ok()
    });
    let origin_keys = reader
        .get(ORIGIN_SIGNING_SECRET)
        .and_then(|text| SigningSecrets::parse(&text).ok());
    if let (Some(alerts), Some(origins)) = (&signing_secrets, &origin_keys) {
        if alerts.shares_a_key_with(origins) {
            reader.fail(ALERTS_SIGNING_SECRET, Problem::SharesOriginSigningKey);
        }
    }
    match signing_secrets {
        Some(signing_secrets) if reader.clean_since(mark) => Feature::On(AlertsConfig {
            url,
            signing_secrets,
        }),
        _ => Feature::Broken,
    }
}

/// What reconciliation needs to know of the other settings.
struct Neighbours {
    /// How long inboxes remember an event.
    dedup_ttl_secs: u64,
    /// The freshness window.
    tolerance_secs: u64,
    /// Whether accepted events are published to the status stream.
    stream: bool,
    /// Whether alerts are wanted.
    alerts: bool,
}

fn read_reconcile<F: Fn(&str) -> Option<String>>(
    reader: &mut Reader<F>,
    neighbours: Neighbours,
) -> Feature<ReconcileConfig> {
    use crate::reconcile::{self, api};
    use names::*;
    let Some(api_key) = reader.get(DIDIT_API_KEY) else {
        return Feature::Off;
    };
    let mark = reader.mark();
    let api_key = String::from(api_key.trim());
    if !api_key.bytes().all(|b| b.is_ascii_graphic()) {
        reader.fail(DIDIT_API_KEY, Problem::NotAHeaderValue);
    }
    let base_url = reader
        .get(DIDIT_API_BASE_URL)
        .map(|url| String::from(url.trim().trim_end_matches('/')))
        .unwrap_or_else(|| String::from(api::DEFAULT_BASE_URL));
    if !crate::origin::is_http_url(&base_url) || base_url.contains(['?', '#']) {
        reader.fail(DIDIT_API_BASE_URL, Problem::NotAnHttpUrl);
    }
    let settings = reconcile::Settings {
        lookback_secs: reader.number(
            RECONCILE_LOOKBACK_SECS,
            reconcile::DEFAULT_LOOKBACK_SECS,
            (3_600, 90 * 86_400),
        ),
        interval_secs: reader.number(
            RECONCILE_INTERVAL_SECS,
            reconcile::DEFAULT_INTERVAL_SECS,
            (10, 86_400),
        ),
        settle_secs: reader.number(
            RECONCILE_SETTLE_SECS,
            reconcile::DEFAULT_SETTLE_SECS,
            (0, 86_400),
        ),
        recheck_secs: reader.number(
            RECONCILE_RECHECK_SECS,
            reconcile::DEFAULT_RECHECK_SECS,
            (60, 30 * 86_400),
        ),
        requests_per_run: u32::try_from(reader.number(
            RECONCILE_REQUESTS_PER_RUN,
            reconcile::DEFAULT_REQUESTS_PER_RUN,
            (reconcile::MIN_REQUESTS_PER_RUN, 1_000),
        ))
        .unwrap_or(u32::MAX),
        memory_secs: neighbours.dedup_ttl_secs,
        publishes_per_event: if neighbours.stream {
            crate::stream::CHANNELS_PER_UPDATE
        } else {
            0
        },
        alerts: neighbours.alerts,
        lease_secs: reconcile::LEASE_SECS,
        gap_retry: reconcile::GapRetry::default(),
    };
    let needed_secs = settings
        .lookback_secs
        .saturating_add(settings.settle_secs)
        .saturating_add(settings.recheck_secs)
        .saturating_add(neighbours.tolerance_secs);
    if neighbours.dedup_ttl_secs < needed_secs {
        let problem = Problem::OutlivesDedupTtl {
            needed_secs,
            dedup_ttl_secs: neighbours.dedup_ttl_secs,
        };
        reader.fail(RECONCILE_LOOKBACK_SECS, problem.clone());
        reader.fail(DEDUP_TTL_SECS, problem);
    }
    if reader.clean_since(mark) {
        Feature::On(ReconcileConfig {
            api_key,
            base_url,
            settings,
        })
    } else {
        Feature::Broken
    }
}

fn read_signing<F: Fn(&str) -> Option<String>>(
    reader: &mut Reader<F>,
    origins: &[Origin],
) -> (Option<SigningSecrets>, BTreeMap<String, SigningSecrets>) {
    use names::*;
    let mut per_origin = BTreeMap::new();
    for origin in origins {
        let Some(secret) = origin.signing_secret.as_deref().map(str::trim) else {
            continue;
        };
        let parsed = match reader.get(secret) {
            None => Err(Problem::OriginSecretNotSet {
                origin: origin.name.clone(),
                secret: secret.into(),
            }),
            Some(text) => SigningSecrets::parse(&text).map_err(|error| Problem::OriginSecret {
                origin: origin.name.clone(),
                secret: secret.into(),
                error,
            }),
        };
        match parsed {
            Ok(secrets) => {
                per_origin.insert(origin.name.clone(), secrets);
            }
            Err(problem) => reader.fail(ORIGINS, problem),
        }
    }
    let signing = reader.required(ORIGIN_SIGNING_SECRET).and_then(|text| {
        SigningSecrets::parse(&text)
            .map_err(|e| reader.fail(ORIGIN_SIGNING_SECRET, Problem::Secret(e)))
            .ok()
    });
    (signing, per_origin)
}

fn read_retention<F: Fn(&str) -> Option<String>>(
    reader: &mut Reader<F>,
    freshness_secs: u64,
) -> Retention {
    use names::*;
    let dedup_ttl_secs = reader.number(DEDUP_TTL_SECS, DEFAULT_DEDUP_TTL_SECS, (1, 365 * 86_400));
    let payload_secs = reader.number(PAYLOAD_RETENTION_SECS, 0, (0, 365 * 86_400));
    if payload_secs > dedup_ttl_secs {
        reader.fail(
            PAYLOAD_RETENTION_SECS,
            Problem::LongerThanDedupTtl { dedup_ttl_secs },
        );
    }
    let dead_letter_secs = reader.number(
        DEAD_LETTER_RETENTION_SECS,
        DEFAULT_DEAD_LETTER_RETENTION_SECS,
        (1, 365 * 86_400),
    );
    Retention {
        payload_secs,
        dead_letter_secs,
        dedup_ttl_secs,
        freshness_secs,
    }
}

fn read_retry<F: Fn(&str) -> Option<String>>(reader: &mut Reader<F>) -> Option<RetrySchedule> {
    use names::*;
    let text = reader
        .get(RETRY_SCHEDULE)
        .unwrap_or_else(|| DEFAULT_RETRY_SCHEDULE.to_string());
    let jitter_percent = reader.number(
        RETRY_JITTER_PERCENT,
        u64::from(DEFAULT_RETRY_JITTER_PERCENT),
        (0, u64::from(MAX_RETRY_JITTER_PERCENT)),
    );
    RetrySchedule::parse(&text)
        .map_err(|e| reader.fail(RETRY_SCHEDULE, Problem::RetrySchedule(e)))
        .ok()
        .map(|schedule| {
            schedule.with_jitter_percent(
                u8::try_from(jitter_percent).unwrap_or(MAX_RETRY_JITTER_PERCENT),
            )
        })
}

/// The delivery settings (`None` while one is broken), and the dedup TTL read with them
/// (reconciliation needs it either way).
fn read_delivery<F: Fn(&str) -> Option<String>>(
    reader: &mut Reader<F>,
    tolerance_secs: u64,
) -> (Option<DeliveryConfig>, u64) {
    use names::*;
    let mark = reader.mark();
    let origins = reader.required(ORIGINS).and_then(|text| {
        parse_origins(&text)
            .map_err(|e| reader.fail(ORIGINS, Problem::Origins(e)))
            .ok()
    });
    let (signing_secrets, origin_signing_secrets) =
        read_signing(reader, origins.as_deref().unwrap_or_default());
    let retention = read_retention(reader, tolerance_secs);
    let retry_schedule = read_retry(reader);
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
    let risk_rules = match reader.get(RISK_RULES) {
        None => Some(RiskRules::default_rules()),
        Some(text) => RiskRules::parse(&text)
            .map_err(|e| reader.fail(RISK_RULES, Problem::RiskRules(e)))
            .ok(),
    };
    let subrequest_limit = reader.number(SUBREQUEST_LIMIT, DEFAULT_SUBREQUEST_LIMIT, (10, 10_000));
    let dedup_ttl_secs = retention.dedup_ttl_secs;
    if !reader.clean_since(mark) {
        return (None, dedup_ttl_secs);
    }
    let delivery = (|| {
        Some(DeliveryConfig {
            origins: origins?,
            signing_secrets: signing_secrets?,
            origin_signing_secrets,
            risk_rules: risk_rules?,
            retry_schedule: retry_schedule?,
            retention,
            after_dead_letter,
            subrequest_limit: u32::try_from(subrequest_limit).unwrap_or(u32::MAX),
        })
    })();
    (delivery, dedup_ttl_secs)
}

fn read_admin<F: Fn(&str) -> Option<String>>(reader: &mut Reader<F>) -> Feature<AdminToken> {
    let Some(text) = reader.get(names::ADMIN_TOKEN) else {
        return Feature::Off;
    };
    match AdminToken::parse(&text) {
        Ok(token) => Feature::On(token),
        Err(len) => {
            reader.fail(
                names::ADMIN_TOKEN,
                Problem::TooShort {
                    len,
                    min: crate::admin::MIN_TOKEN_LEN,
                },
            );
            Feature::Broken
        }
    }
}

fn read_stream<F: Fn(&str) -> Option<String>>(reader: &mut Reader<F>) -> Feature<StreamConfig> {
    use names::*;
    let mark = reader.mark();
    let secret = reader.get(STREAM_TOKEN_SECRET).map(|text| {
        StreamTokenSecret::parse(&text)
            .map_err(|len| {
                reader.fail(
                    STREAM_TOKEN_SECRET,
                    Problem::TooShort {
                        len,
                        min: crate::stream_token::MIN_SECRET_LEN,
                    },
                );
            })
            .ok()
    });
    let max_lifetime_secs = reader.number(
        STREAM_TOKEN_MAX_LIFETIME_SECS,
        DEFAULT_MAX_LIFETIME_SECS,
        (10, 3_600),
    );
    let status_retention_secs = reader.number(
        STREAM_STATUS_RETENTION_SECS,
        DEFAULT_STREAM_STATUS_RETENTION_SECS,
        (1, 365 * 86_400),
    );
    let audience = reader
        .get(STREAM_TOKEN_AUDIENCE)
        .map(|text| String::from(text.trim()))
        .unwrap_or_else(|| DEFAULT_STREAM_TOKEN_AUDIENCE.into());
    if !is_name(&audience) {
        reader.fail(STREAM_TOKEN_AUDIENCE, Problem::NotAName);
    }
    match secret {
        None if reader.clean_since(mark) => Feature::Off,
        Some(Some(secret)) if reader.clean_since(mark) => Feature::On(StreamConfig {
            secret,
            max_lifetime_secs,
            audience,
            status_retention_secs,
        }),
        _ => Feature::Broken,
    }
}

#[cfg(test)]
mod tests;
