//! The receiver's configuration: parsed and checked once, with every problem named.
//!
//! Settings fall into groups, each usable on its own, so that a mistake in one never costs
//! what the others can still do. Each group has its own module, holding its settings' type,
//! their defaults and the rules they are read by (what a broken value falls back to, or which
//! part it switches off):
//! - [`IntakeConfig`] (`intake`): what admits a delivery. Only a missing or unusable
//!   `DIDIT_WEBHOOK_SECRETS` stops intake (every delivery is then answered 503, and Didit
//!   retries); a broken limit falls back to its safe value, so a typo cannot lose what Didit
//!   sends meanwhile.
//! - [`DeliveryConfig`] (`delivery`): what classifies, routes, signs, retries and forgets
//!   events. While any of its settings is broken, authentic deliveries are still stored and
//!   answered 200; they wait in their inbox, with no retry used up and nothing forgotten, until
//!   it is fixed.
//! - the optional parts, each a [`Feature`]: the admin API (here), the status stream
//!   ([`StreamConfig`], `stream`), alerts ([`AlertsConfig`], `alerts`) and reconciliation
//!   ([`ReconcileConfig`], `reconcile`). Off when unset, refused (503) when broken, and never in
//!   the way of delivery.
//!
//! This module puts them together: [`Config::from_lookup`] reads every group in a fixed order
//! (so problems are listed in the order the settings were read), and the two settings that
//! belong to no group, the admin token and the Durable Objects' jurisdiction, which gates
//! intake.
//!
//! Values come from a lookup function (the adapter reads `wrangler.toml` vars and secrets), so
//! the rules live here and are tested here. Problems never quote a secret's value.

mod admin;
mod alerts;
mod delivery;
mod intake;
pub mod names;
mod problem;
mod reader;
mod reconcile;
mod stream;

use alloc::string::String;

pub use alerts::AlertsConfig;
pub use delivery::{
    DeliveryConfig, OriginKeys, OriginSigning, DEFAULT_DEAD_LETTER_RETENTION_SECS,
    DEFAULT_DEDUP_TTL_SECS, DEFAULT_SUBREQUEST_LIMIT,
};
pub use intake::{
    IntakeConfig, DEFAULT_MAX_BODY_BYTES, DEFAULT_TIMESTAMP_TOLERANCE_SECS, MAX_MAX_BODY_BYTES,
};
pub use problem::{ConfigError, ConfigErrors, Problem};
pub use reconcile::ReconcileConfig;
pub use stream::{
    StreamConfig, DEFAULT_STREAM_STATUS_RETENTION_SECS, DEFAULT_STREAM_TOKEN_AUDIENCE,
};

use admin::read_admin;
use alerts::read_alerts;
use delivery::read_delivery;
use intake::{read_intake, read_tolerance};
use reader::Reader;
use reconcile::{read_reconcile, Neighbours};
use stream::read_stream;

use crate::admin::AdminAuth;
use crate::rejection::Rejection;

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
    /// Who may sign in to the admin API and the console, and as what.
    pub admin: Feature<AdminAuth>,
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

impl Config {
    /// The refusal while settings a request needs are broken: 503 naming them (never their
    /// values), so the operator knows what to fix and the sender retries.
    pub fn misconfigured(&self) -> Rejection {
        Rejection::Misconfigured {
            settings: self.problems.settings().join(", "),
        }
    }

    /// What admits deliveries, or the 503 that answers every delivery while no Didit secret is
    /// usable (Didit retries; nothing unverified is ever stored).
    pub fn intake_or_refusal(&self) -> Result<&IntakeConfig, Rejection> {
        self.intake.as_ref().ok_or_else(|| self.misconfigured())
    }

    /// What classifies and delivers events, or the 503 for a request that needs them.
    pub fn delivery_or_refusal(&self) -> Result<&DeliveryConfig, Rejection> {
        self.delivery.as_ref().ok_or_else(|| self.misconfigured())
    }

    /// An optional feature's configuration for a request that needs it: `off` when it is not
    /// set, 503 naming the broken settings when it is set but invalid.
    pub fn required<'c, T>(
        &'c self,
        feature: &'c Feature<T>,
        off: Rejection,
    ) -> Result<&'c T, Rejection> {
        match feature {
            Feature::On(value) => Ok(value),
            Feature::Off => Err(off),
            Feature::Broken => Err(self.misconfigured()),
        }
    }

    /// An optional feature for a request that can also answer while it is off (`None`), but not
    /// while it is set and broken (503).
    pub fn unless_broken<'c, T>(
        &'c self,
        feature: &'c Feature<T>,
    ) -> Result<Option<&'c T>, Rejection> {
        match feature {
            Feature::Broken => Err(self.misconfigured()),
            Feature::On(value) => Ok(Some(value)),
            Feature::Off => Ok(None),
        }
    }

    /// Reads and checks every setting through `lookup` (which returns a var's or secret's value).
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Self {
        let mut reader = Reader::new(lookup);
        let tolerance_secs = read_tolerance(&mut reader);
        let jurisdiction = read_jurisdiction(&mut reader);
        // Nothing is admitted while the objects it would be stored in are unknown: Didit gets a
        // 503 and retries, and nothing lands outside the jurisdiction asked for.
        let intake = read_intake(&mut reader, tolerance_secs).filter(|_| jurisdiction.is_ok());
        let (mut delivery, dedup_ttl_secs) = read_delivery(&mut reader, tolerance_secs);
        // A didit-format origin's secret must not be Didit's: a request re-signed for it,
        // dated afresh, would then pass as a new delivery from Didit wherever it was replayed.
        let shared = delivery.as_ref().and_then(|delivery| {
            let didit = intake.as_ref()?;
            delivery
                .origin_signing_secrets
                .iter()
                .find(|(_, keys)| match keys {
                    OriginKeys::Didit(key) => {
                        didit.webhook_secrets.iter().any(|theirs| theirs == key)
                    }
                    OriginKeys::StandardWebhooks(_) => false,
                })
                .map(|(origin, _)| origin.clone())
        });
        if let Some(origin) = shared {
            reader.fail(names::ORIGINS, Problem::SharesDiditSecret { origin });
            delivery = None;
        }
        let admin = read_admin(&mut reader);
        let stream = read_stream(&mut reader);
        let alerts = read_alerts(&mut reader, delivery.as_ref());
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

/// Jurisdictions Durable Objects can be restricted to.
/// `us` since 2026-06-26 (Cloudflare's changelog, "New `us` jurisdiction for Durable
/// Objects"); `fedramp-high` as `@cloudflare/workers-types` lists it.
pub const JURISDICTIONS: &[&str] = &["eu", "us", "fedramp", "fedramp-high"];

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

#[cfg(test)]
mod tests;
