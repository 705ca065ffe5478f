//! Reconciliation with Didit's API: its key, its base URL and the sweep's pacing. Off without
//! `DIDIT_API_KEY`.
//!
//! Unlike the other groups it depends on its neighbours ([`Neighbours`]): the inboxes must
//! remember an event for longer than a sweep looks back, or a result found again would be
//! delivered twice; and a run's budget counts the stream's publishes and the alerts it sends.

use alloc::string::String;

use super::names;
use super::problem::Problem;
use super::reader::Reader;
use super::Feature;
use crate::reconcile;

/// Reconciliation with Didit's API ([`crate::reconcile`]).
#[derive(Clone, PartialEq, Eq)]
pub struct ReconcileConfig {
    /// Didit's API key, sent as `x-api-key`.
    pub api_key: String,
    /// Didit's API base URL, without a trailing slash.
    pub base_url: String,
    /// `DIDIT_DESTINATION`: the webhook destination whose deliveries a session's Didit
    /// attempts are read from (`crate::didit_view`); `None`: those on the admin request's host.
    pub destination: Option<String>,
    /// The sweep's settings.
    pub settings: reconcile::Settings,
}

impl core::fmt::Debug for ReconcileConfig {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("ReconcileConfig")
            .field("api_key", &"<redacted>")
            .field("base_url", &self.base_url)
            .field("destination", &self.destination)
            .field("settings", &self.settings)
            .finish()
    }
}

/// What reconciliation needs to know of the other settings.
pub(super) struct Neighbours {
    /// How long inboxes remember an event.
    pub(super) dedup_ttl_secs: u64,
    /// The freshness window.
    pub(super) tolerance_secs: u64,
    /// Whether accepted events are published to the status stream.
    pub(super) stream: bool,
    /// Whether alerts are wanted.
    pub(super) alerts: bool,
}

pub(super) fn read_reconcile<F: Fn(&str) -> Option<String>>(
    reader: &mut Reader<F>,
    neighbours: Neighbours,
) -> Feature<ReconcileConfig> {
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
        .unwrap_or_else(|| String::from(reconcile::api::DEFAULT_BASE_URL));
    if !crate::origin::is_http_url(&base_url) || base_url.contains(['?', '#']) {
        reader.fail(DIDIT_API_BASE_URL, Problem::NotAnHttpUrl);
    }
    let destination = reader
        .get(DIDIT_DESTINATION)
        .map(|uuid| String::from(uuid.trim()));
    if destination
        .as_deref()
        .is_some_and(|uuid| !super::stream::is_name(uuid))
    {
        reader.fail(DIDIT_DESTINATION, Problem::NotAName);
    }
    let settings = read_settings(reader, &neighbours);
    check_memory(reader, &settings, &neighbours);
    if reader.clean_since(mark) {
        Feature::On(ReconcileConfig {
            api_key,
            base_url,
            destination,
            settings,
        })
    } else {
        Feature::Broken
    }
}

/// The sweep's pacing, and what it takes from its neighbours: how long the inboxes remember,
/// and what each injected event and give-up costs a run.
fn read_settings<F: Fn(&str) -> Option<String>>(
    reader: &mut Reader<F>,
    neighbours: &Neighbours,
) -> reconcile::Settings {
    use names::*;
    reconcile::Settings {
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
    }
}

/// Records a problem with both settings when the inboxes would forget an event before a sweep
/// stops acting on its session: its result would be delivered again.
fn check_memory<F: Fn(&str) -> Option<String>>(
    reader: &mut Reader<F>,
    settings: &reconcile::Settings,
    neighbours: &Neighbours,
) {
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
        reader.fail(names::RECONCILE_LOOKBACK_SECS, problem.clone());
        reader.fail(names::DEDUP_TTL_SECS, problem);
    }
}
