//! What can be wrong with a setting. Problems name settings and entries, never a secret's
//! value or an origin's URL.

use alloc::string::String;
use alloc::vec::Vec;
use core::fmt;

use crate::origin::OriginError;
use crate::retry::RetryScheduleError;
use crate::risk::RulesError;
use crate::secret::SecretError;

/// What is wrong with one setting.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
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
    /// `ORIGINS` is not a valid origin list.
    Origins(OriginError),
    /// An origin names a `signing_secret` that is not set.
    OriginSecretNotSet {
        /// The origin.
        origin: String,
        /// The secret's name.
        secret: String,
    },
    /// An origin's own `signing_secret` is unusable.
    OriginSecret {
        /// The origin.
        origin: String,
        /// The secret's name.
        secret: String,
        /// What is wrong with it.
        error: SecretError,
    },
    /// `RETRY_SCHEDULE` is unusable.
    RetrySchedule(RetryScheduleError),
    /// `RISK_RULES` is unusable.
    RiskRules(RulesError),
    /// A token or key is too short to guard anything (its length is given, never its value).
    TooShort {
        /// Its length.
        len: usize,
        /// The shortest accepted.
        min: usize,
    },
    /// A name holds characters other than letters, digits, `.`, `_`, `-` and `:`, or is longer
    /// than 128.
    NotAName,
    /// A list of IP addresses holds something else (its position is given, never its text).
    NotAnIpAddress {
        /// Which entry, from 1.
        position: usize,
    },
    /// Not an absolute `http://` or `https://` URL.
    NotAnHttpUrl,
    /// Not a bare host name such as `myteam.cloudflareaccess.com`.
    NotAHostName,
    /// A comma-separated list with a blank entry.
    NotAList,
    /// `ADMIN_READ_TOKEN` is `ADMIN_TOKEN`: one token cannot carry two roles.
    SameAsAdminToken,
    /// A value sent as an HTTP header holds whitespace or control characters.
    NotAHeaderValue,
    /// A key is also one of `ORIGIN_SIGNING_SECRET`'s: whoever holds it could sign events.
    SharesOriginSigningKey,
    /// A key is also one of an origin's own `signing_secret`: whoever holds it could sign
    /// events that origin takes as authentic.
    SharesAnOriginsKey {
        /// The origin.
        origin: String,
    },
    /// A didit-format origin's secret is also one of `DIDIT_WEBHOOK_SECRETS`: what the edge
    /// re-signs for that origin would pass as a fresh delivery from Didit.
    SharesDiditSecret {
        /// The origin.
        origin: String,
    },
    /// Reconciliation could look at sessions older than the inboxes remember, and would
    /// deliver their results again: `DEDUP_TTL_SECS` must cover the lookback and how much later
    /// a session may still be acted on.
    OutlivesDedupTtl {
        /// What `DEDUP_TTL_SECS` must be at least.
        needed_secs: u64,
        /// What it is.
        dedup_ttl_secs: u64,
    },
}

/// One setting and what is wrong with it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigError {
    /// The setting's name, as in [`super::names`].
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
            Problem::Origins(error) => write!(f, "{error}"),
            Problem::OriginSecretNotSet { origin, secret } => write!(
                f,
                "origin `{origin}` names signing_secret `{secret}`, which is not set"
            ),
            Problem::OriginSecret {
                origin,
                secret,
                error,
            } => write!(f, "origin `{origin}`: signing_secret `{secret}` {error}"),
            Problem::RetrySchedule(error) => write!(f, "{error}"),
            Problem::RiskRules(error) => write!(f, "{error}"),
            Problem::TooShort { len, min } => write!(f, "is {len} bytes; use at least {min}"),
            Problem::NotAName => f.write_str(
                "must be 1 to 128 letters, digits, `.`, `_`, `-` or `:`",
            ),
            Problem::NotAnIpAddress { position } => write!(
                f,
                "entry {position} is not an IPv4 or IPv6 address; use addresses separated by commas"
            ),
            Problem::NotAHostName => {
                f.write_str("must be a host name such as `myteam.cloudflareaccess.com`")
            }
            Problem::NotAList => f.write_str("must be a comma-separated list without blank entries"),
            Problem::SameAsAdminToken => f.write_str("must differ from ADMIN_TOKEN"),
            Problem::NotAnHttpUrl => {
                f.write_str("must be an absolute http:// or https:// URL with a host")
            }
            Problem::NotAHeaderValue => {
                f.write_str("must be printable ASCII without spaces (it is sent as a header)")
            }
            Problem::SharesDiditSecret { origin } => write!(
                f,
                "origin `{origin}`: its signing_secret is one of DIDIT_WEBHOOK_SECRETS; give it its own"
            ),
            Problem::SharesOriginSigningKey => f.write_str(
                "must not share a key with ORIGIN_SIGNING_SECRET (alert receivers could sign events)",
            ),
            Problem::SharesAnOriginsKey { origin } => write!(
                f,
                "must not share a key with origin `{origin}`'s signing_secret (alert receivers could sign events it takes as authentic)"
            ),
            Problem::OutlivesDedupTtl {
                needed_secs,
                dedup_ttl_secs,
            } => write!(
                f,
                "with DEDUP_TTL_SECS {dedup_ttl_secs}, reconciliation would look at sessions the \
                 inboxes have forgotten and deliver their results again: DEDUP_TTL_SECS must be at \
                 least RECONCILE_LOOKBACK_SECS + RECONCILE_SETTLE_SECS + RECONCILE_RECHECK_SECS + \
                 TIMESTAMP_TOLERANCE_SECS ({needed_secs}), or the lookback shorter"
            ),
        }
    }
}

impl core::error::Error for ConfigError {}

/// Every problem found, so one deploy fixes them all.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl ConfigErrors {
    /// The names of the settings that are wrong, each once, in the order found.
    pub fn settings(&self) -> Vec<&'static str> {
        let mut names: Vec<&'static str> = Vec::new();
        for error in &self.0 {
            if !names.contains(&error.setting) {
                names.push(error.setting);
            }
        }
        names
    }

    /// Whether nothing is wrong.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

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

impl core::error::Error for ConfigErrors {}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::string::ToString;

    /// The text is one sentence, without the runs of spaces a broken line continuation leaves.
    #[test]
    fn outlives_dedup_ttl_reads_as_one_sentence() {
        let text = ConfigError {
            setting: "DEDUP_TTL_SECS",
            problem: Problem::OutlivesDedupTtl {
                needed_secs: 90,
                dedup_ttl_secs: 60,
            },
        }
        .to_string();
        assert!(!text.contains("  "), "{text}");
        assert!(text.contains("the inboxes have forgotten"), "{text}");
        assert!(text.contains("at least RECONCILE_LOOKBACK_SECS"), "{text}");
    }
}
