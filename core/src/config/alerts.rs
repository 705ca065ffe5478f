//! Where operational alerts go and the keys that sign them. Off without `ALERTS_URL`; broken
//! (and so sending nothing) when its URL is unusable, its key missing or unusable, or its key
//! is also one that signs events for the origins.

use alloc::string::String;

use super::names;
use super::problem::Problem;
use super::reader::Reader;
use super::{DeliveryConfig, Feature, OriginKeys};
use crate::secret::SigningSecrets;

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

/// Reads the alerts' settings. Their key must be no key that signs events for the origins:
/// neither `ORIGIN_SIGNING_SECRET` (read here even when the rest of `delivery` is broken) nor
/// any origin's own `signing_secret` (checked once `delivery` can be read; the settings are read
/// anew when it is fixed).
pub(super) fn read_alerts<F: Fn(&str) -> Option<String>>(
    reader: &mut Reader<F>,
    delivery: Option<&DeliveryConfig>,
) -> Feature<AlertsConfig> {
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
    let origin_sharing = signing_secrets.as_ref().and_then(|alerts| {
        delivery?
            .origin_signing_secrets
            .iter()
            .find(|(_, keys)| match keys {
                OriginKeys::StandardWebhooks(keys) => alerts.shares_a_key_with(keys),
                OriginKeys::Didit(_) => false,
            })
    });
    if let Some((origin, _)) = origin_sharing {
        reader.fail(
            ALERTS_SIGNING_SECRET,
            Problem::SharesAnOriginsKey {
                origin: origin.clone(),
            },
        );
    }
    match signing_secrets {
        Some(signing_secrets) if reader.clean_since(mark) => Feature::On(AlertsConfig {
            url,
            signing_secrets,
        }),
        _ => Feature::Broken,
    }
}
