//! What admits a delivery: the Didit secrets, the freshness window, the body limit, the
//! simple signature and the source addresses.
//!
//! Intake must go on whenever it safely can, since what Didit sends while it is refused is
//! retried only briefly: only the secrets are required, and every other setting read here
//! falls back to a safe value when broken (the problem is still recorded).

use alloc::string::String;
use alloc::vec::Vec;
use core::net::IpAddr;

use super::names;
use super::problem::Problem;
use super::reader::Reader;
use crate::rejection::Rejection;
use crate::secret::WebhookSecrets;

/// Default freshness window: Didit's second retry comes about 5 minutes after the first try,
/// possibly with the original timestamp, so 300 s would drop it.
pub const DEFAULT_TIMESTAMP_TOLERANCE_SECS: u64 = 600;
/// Default body limit: 1 MiB.
pub const DEFAULT_MAX_BODY_BYTES: u64 = 1 << 20;
/// Largest accepted `MAX_BODY_BYTES`: a stored event (body plus its CloudEvent envelope) must
/// fit one row of a SQLite-backed Durable Object, which holds at most 2 MB.
pub const MAX_MAX_BODY_BYTES: u64 = 1_572_864;

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
        // Compared in canonical form: the same IPv4 client may be written as an IPv4-mapped
        // IPv6 address (`::ffff:18.203.201.92`) on one side and plainly on the other.
        let client = client
            .and_then(|text| text.trim().parse::<IpAddr>().ok())
            .map(|ip| ip.to_canonical());
        match client {
            Some(ip) if self.source_ips.contains(&ip) => Ok(()),
            _ => Err(Rejection::ForbiddenSource),
        }
    }
}

/// The freshness window. A broken value falls back to the default (the problem is recorded):
/// intake must go on, and retention only needs it to keep each id past its replay window.
pub(super) fn read_tolerance<F: Fn(&str) -> Option<String>>(reader: &mut Reader<F>) -> u64 {
    reader.number(
        names::TIMESTAMP_TOLERANCE_SECS,
        DEFAULT_TIMESTAMP_TOLERANCE_SECS,
        (1, 86_400),
    )
}

pub(super) fn read_intake<F: Fn(&str) -> Option<String>>(
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
pub(super) fn parse_ip_list(text: &str) -> Result<Vec<IpAddr>, usize> {
    text.split(',')
        .map(str::trim)
        .filter(|entry| !entry.is_empty())
        .enumerate()
        .map(|(index, entry)| {
            entry
                .parse::<IpAddr>()
                .map(|ip| ip.to_canonical())
                .map_err(|_| index + 1)
        })
        .collect()
}
