//! Delivery settings for the tests that drive the alarm run with a limited origin: the
//! origins and retry schedule each names, everything else fixed (no payload kept past
//! delivery, one hour of deduplication, dead letters held).

use didit_edge_core::config::DeliveryConfig;
use didit_edge_core::delivery::Retention;
use didit_edge_core::inbox::AfterDeadLetter;
use didit_edge_core::origin::parse_origins;
use didit_edge_core::retry::RetrySchedule;
use didit_edge_core::risk::RiskRules;
use didit_edge_core::secret::SigningSecrets;

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
