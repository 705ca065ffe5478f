//! What classifies, routes, signs, retries and forgets events: the origins and their signing
//! keys, the risk rules, the retry schedule, retention, what follows a dead letter, and the
//! alarm run's subrequests.
//!
//! The group is all or nothing: while any of its settings is broken there is no
//! [`DeliveryConfig`], and events are stored and wait rather than being delivered by half a
//! configuration. Every setting is still read, so that every problem is named at once.

use alloc::string::{String, ToString};
use alloc::vec::Vec;

use super::names;
use super::problem::Problem;
use super::reader::Reader;
use crate::delivery::Retention;
use crate::inbox::AfterDeadLetter;
use crate::origin::{parse_origins, Format, Origin};
use crate::retry::{
    RetrySchedule, DEFAULT_RETRY_JITTER_PERCENT, DEFAULT_RETRY_SCHEDULE, MAX_RETRY_JITTER_PERCENT,
};
use crate::risk::RiskRules;
use crate::secret::{SigningSecrets, WebhookSecret};

/// Default time a delivered event's id is remembered for deduplication: 7 days.
pub const DEFAULT_DEDUP_TTL_SECS: u64 = 7 * 24 * 3600;
/// Default time a dead letter keeps its payload (identity data) for replay: 14 days, time for
/// an operator to notice, fix the origin and replay.
pub const DEFAULT_DEAD_LETTER_RETENTION_SECS: u64 = 14 * 24 * 3600;
/// Default subrequests per alarm run: the Workers Free plan's limit per invocation, which
/// every plan allows. On the Paid plan (10,000) raise it for faster catch-up after an outage.
pub const DEFAULT_SUBREQUEST_LIMIT: u64 = 50;

/// What classifies, routes, signs, retries and forgets events.
#[derive(Clone, Debug)]
pub struct DeliveryConfig {
    /// Every origin, each serving one consumer.
    pub origins: Vec<Origin>,
    /// Signs forwarded events (several during a rotation: each signature is sent).
    pub signing_secrets: SigningSecrets,
    /// The keys of origins that name their own, by origin name (each name once, as origin
    /// names are; a list rather than a map, which would be more code in the upload).
    pub origin_signing_secrets: Vec<(String, OriginKeys)>,
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

    /// How what `origin` receives is made and signed: its format and its keys. An origin
    /// that names no key of its own gets a CloudEvent signed with `ORIGIN_SIGNING_SECRET`; a
    /// didit-format origin always names one (the configuration is refused without it).
    pub fn signing_for(&self, origin: &Origin) -> OriginSigning<'_> {
        match self
            .origin_signing_secrets
            .iter()
            .find(|(name, _)| *name == origin.name)
        {
            Some((_, OriginKeys::StandardWebhooks(keys))) => OriginSigning::StandardWebhooks(keys),
            Some((_, OriginKeys::Didit(secret))) => OriginSigning::Didit(secret),
            None => OriginSigning::StandardWebhooks(&self.signing_secrets),
        }
    }
}

/// An origin's own keys, as its format needs them.
#[derive(Clone, Debug)]
pub enum OriginKeys {
    /// `whsec_…` keys signing a CloudEvent per Standard Webhooks.
    StandardWebhooks(SigningSecrets),
    /// The one Didit-style secret of a didit-format origin.
    Didit(WebhookSecret),
}

/// How what one origin receives is made and signed.
#[derive(Clone, Copy, Debug)]
pub enum OriginSigning<'c> {
    /// A CloudEvent signed per Standard Webhooks with every one of these keys.
    StandardWebhooks(&'c SigningSecrets),
    /// Didit's webhook re-signed with this Didit-style secret ([`crate::dropin`]).
    Didit(&'c WebhookSecret),
}

pub(super) fn read_signing<F: Fn(&str) -> Option<String>>(
    reader: &mut Reader<F>,
    origins: &[Origin],
) -> (Option<SigningSecrets>, Vec<(String, OriginKeys)>) {
    use names::*;
    let mut per_origin = Vec::new();
    for origin in origins {
        let Some(secret) = origin.signing_secret.as_deref().map(str::trim) else {
            continue;
        };
        let problem = |error| Problem::OriginSecret {
            origin: origin.name.clone(),
            secret: secret.into(),
            error,
        };
        let parsed = match (reader.get(secret), origin.format) {
            (None, _) => Err(Problem::OriginSecretNotSet {
                origin: origin.name.clone(),
                secret: secret.into(),
            }),
            (Some(text), Format::Didit) => WebhookSecret::parse_one(&text)
                .map(OriginKeys::Didit)
                .map_err(problem),
            (Some(text), Format::Cloudevents) => SigningSecrets::parse(&text)
                .map(OriginKeys::StandardWebhooks)
                .map_err(problem),
        };
        match parsed {
            Ok(keys) => per_origin.push((origin.name.clone(), keys)),
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

pub(super) fn read_retention<F: Fn(&str) -> Option<String>>(
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

pub(super) fn read_retry<F: Fn(&str) -> Option<String>>(
    reader: &mut Reader<F>,
) -> Option<RetrySchedule> {
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
pub(super) fn read_delivery<F: Fn(&str) -> Option<String>>(
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
