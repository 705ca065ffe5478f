//! Setting names: the contract with `wrangler.toml`, `wrangler secret` and `.dev.vars`.

/// Didit webhook secrets, comma-separated.
pub const DIDIT_WEBHOOK_SECRETS: &str = "DIDIT_WEBHOOK_SECRETS";
/// JSON array of origins.
pub const ORIGINS: &str = "ORIGINS";
/// `whsec_…` keys that sign forwarded events, comma-separated during a rotation.
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
/// Bearer token of the admin API's read-only role (optional).
pub const ADMIN_READ_TOKEN: &str = "ADMIN_READ_TOKEN";
/// The Cloudflare Access team (`<team>.cloudflareaccess.com`): switches Access sign-in on.
pub const ACCESS_TEAM_DOMAIN: &str = "ACCESS_TEAM_DOMAIN";
/// The Access application's audience tag.
pub const ACCESS_AUD: &str = "ACCESS_AUD";
/// Where the team's signing keys are published (tests point it at a local server).
pub const ACCESS_JWKS_URL: &str = "ACCESS_JWKS_URL";
/// Access identities that are operators.
pub const ACCESS_OPERATORS: &str = "ACCESS_OPERATORS";
/// Access identities that may read (unset: every identity Access lets through).
pub const ACCESS_READERS: &str = "ACCESS_READERS";
/// How long a delivered event's payload is kept.
pub const PAYLOAD_RETENTION_SECS: &str = "PAYLOAD_RETENTION_SECS";
/// How far each retry wait is spread, in percent either way.
pub const RETRY_JITTER_PERCENT: &str = "RETRY_JITTER_PERCENT";
/// How long a dead letter keeps its payload for replay.
pub const DEAD_LETTER_RETENTION_SECS: &str = "DEAD_LETTER_RETENTION_SECS";
/// What a subject's later events do while an earlier one is a dead letter.
pub const AFTER_DEAD_LETTER: &str = "AFTER_DEAD_LETTER";
/// Most subrequests (fetches and Durable Object calls) one alarm run makes.
pub const SUBREQUEST_LIMIT: &str = "SUBREQUEST_LIMIT";
/// HS256 key of the status stream's tokens (optional; the stream is off without it).
pub const STREAM_TOKEN_SECRET: &str = "STREAM_TOKEN_SECRET";
/// Longest lifetime of a stream token.
pub const STREAM_TOKEN_MAX_LIFETIME_SECS: &str = "STREAM_TOKEN_MAX_LIFETIME_SECS";
/// The `aud` a stream token must carry.
pub const STREAM_TOKEN_AUDIENCE: &str = "STREAM_TOKEN_AUDIENCE";
/// How long the stream remembers each subject's current status for late connections.
pub const STREAM_STATUS_RETENTION_SECS: &str = "STREAM_STATUS_RETENTION_SECS";
/// Addresses Didit delivers from; when set, deliveries from anywhere else are refused.
pub const DIDIT_SOURCE_IPS: &str = "DIDIT_SOURCE_IPS";
/// Where operational alerts go (optional; off without it).
pub const ALERTS_URL: &str = "ALERTS_URL";
/// The `whsec_` keys alerts are signed with (required with `ALERTS_URL`): never the key that
/// makes forwarded events authentic.
pub const ALERTS_SIGNING_SECRET: &str = "ALERTS_SIGNING_SECRET";
/// The jurisdiction every Durable Object is created in (`eu`, `fedramp`); unset: anywhere.
pub const DURABLE_OBJECT_JURISDICTION: &str = "DURABLE_OBJECT_JURISDICTION";
/// Didit API key: switches reconciliation on (optional; off without it).
pub const DIDIT_API_KEY: &str = "DIDIT_API_KEY";
/// Didit's API base URL (tests point it at a local server).
pub const DIDIT_API_BASE_URL: &str = "DIDIT_API_BASE_URL";
/// The webhook destination (Didit's uuid) whose attempts the console shows; unset: the
/// enabled destinations on the admin request's host.
pub const DIDIT_DESTINATION: &str = "DIDIT_DESTINATION";
/// How old a session may be and still be reconciled.
pub const RECONCILE_LOOKBACK_SECS: &str = "RECONCILE_LOOKBACK_SECS";
/// Time between the starts of two reconciliation sweeps.
pub const RECONCILE_INTERVAL_SECS: &str = "RECONCILE_INTERVAL_SECS";
/// Time a missing result waits for its late webhook before it is injected.
pub const RECONCILE_SETTLE_SECS: &str = "RECONCILE_SETTLE_SECS";
/// Time an inbox's answer about a session is trusted before reconciliation asks again.
pub const RECONCILE_RECHECK_SECS: &str = "RECONCILE_RECHECK_SECS";
/// Most requests (to Didit and to inboxes) one reconciliation run makes.
pub const RECONCILE_REQUESTS_PER_RUN: &str = "RECONCILE_REQUESTS_PER_RUN";
