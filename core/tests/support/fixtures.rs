//! What the tests that drive the alarm run with a limited origin (`origin_limits.rs`, the storm
//! simulation) share: their delivery settings, with the origins and retry schedule each names
//! and everything else fixed (no payload kept past delivery, one hour of deduplication, dead
//! letters held), and the event each inbox receives.

use didit_edge_core::config::DeliveryConfig;
use didit_edge_core::delivery::Retention;
use didit_edge_core::inbox::{AfterDeadLetter, Claim, ClaimContent, Classification, Source};
use didit_edge_core::origin::parse_origins;
use didit_edge_core::retry::RetrySchedule;
use didit_edge_core::risk::{Level, RiskRules};
use didit_edge_core::secret::SigningSecrets;
use didit_edge_core::time::{UnixMs, UnixSecs};

/// Settings delivering to `origins` (an `ORIGINS` value) on the retry `schedule`.
pub(crate) fn delivery_settings(origins: &str, schedule: &str) -> DeliveryConfig {
    DeliveryConfig {
        origins: parse_origins(origins).expect("valid origins"),
        signing_secrets: SigningSecrets::parse(
            "whsec_c2ltLW9yaWdpbi1zZWNyZXQtMzItYnl0ZXMtbG9uZyE=",
        )
        .expect("key"),
        origin_signing_secrets: Vec::new(),
        risk_rules: RiskRules::default(),
        retry_schedule: RetrySchedule::parse(schedule).expect("valid"),
        retention: Retention {
            payload_secs: 0,
            dead_letter_secs: 600,
            dedup_ttl_secs: 3_600,
            freshness_secs: 600,
        },
        after_dead_letter: AfterDeadLetter::Hold,
        subrequest_limit: 50,
    }
}

/// Didit's webhook for session `s{n}` (event `evt_{n}`), created at `now`: approved, low risk,
/// for the `default` consumer. Its subject is its own, so each `n` lands in an inbox of its own.
pub(crate) fn low_risk_claim(n: usize, now: UnixMs) -> Claim {
    Claim {
        id: format!("evt_{n}"),
        legacy_id: format!("legacy_{n}"),
        subject: format!("session:s{n}"),
        alias: None,
        webhook_type: "status.updated".into(),
        status: Some("Approved".into()),
        created_at: UnixSecs(now.0 / 1_000),
        content: ClaimContent::Classified(Classification {
            risk_level: Level::Low,
            consumers: vec!["default".into()],
            payload: "{}".into(),
        }),
        source: Source::Webhook,
        verified: None,
    }
}
