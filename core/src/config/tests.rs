use super::*;
use alloc::format;
use alloc::string::{String, ToString};
use alloc::vec;
use alloc::vec::Vec;

use crate::inbox::AfterDeadLetter;
use crate::rejection::Rejection;
use crate::retry::RetrySchedule;
use crate::secret::SigningSecrets;
#[cfg(target_arch = "wasm32")]
use wasm_bindgen_test::wasm_bindgen_test as test;

const SIGNING: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
const ROTATED: &str = "whsec_ZGlkaXQtZWRnZS1sb2NhbC1kZW1vLWtleS0wMDE=";

fn lookup(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
    let owned: Vec<(String, String)> = pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    // The last entry of a name wins, so a test can override what `minimal` sets.
    move |name| {
        owned
            .iter()
            .rfind(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
    }
}

fn minimal() -> Vec<(&'static str, &'static str)> {
    vec![
        ("DIDIT_WEBHOOK_SECRETS", "didit-secret"),
        (
            "ORIGINS",
            r#"[{"name":"aws-eu","url":"https://origin.example/hooks"}]"#,
        ),
        ("ORIGIN_SIGNING_SECRET", SIGNING),
    ]
}

fn with(extra: &[(&str, &str)]) -> Config {
    let mut pairs: Vec<(&str, &str)> = minimal();
    pairs.extend_from_slice(extra);
    Config::from_lookup(lookup(&pairs))
}

#[test]
fn defaults_fill_what_is_unset() {
    let config = with(&[]);
    assert!(config.problems.is_empty());
    let intake = config.intake.expect("intake");
    assert_eq!(intake.timestamp_tolerance_secs, 600);
    assert_eq!(intake.max_body_bytes, 1 << 20);
    assert!(!intake.allow_simple_signature);
    let delivery = config.delivery.expect("delivery");
    assert_eq!(delivery.retention.dedup_ttl_secs, 604_800);
    assert_eq!(delivery.retention.payload_secs, 0);
    assert_eq!(delivery.retention.dead_letter_secs, 14 * 86_400);
    assert_eq!(delivery.retention.freshness_secs, 600);
    assert_eq!(delivery.retry_schedule, RetrySchedule::default());
    assert_eq!(delivery.after_dead_letter, AfterDeadLetter::Hold);
    assert_eq!(delivery.subrequest_limit, 50);
    assert_eq!(
        delivery.origins[0].timeout_ms,
        crate::origin::DEFAULT_TIMEOUT_MS
    );
    assert_eq!(config.admin, Feature::Off);
    assert!(matches!(config.stream, Feature::Off));
}

#[test]
fn every_problem_is_named_and_no_secret_is_echoed() {
    let config = Config::from_lookup(lookup(&[
        ("DIDIT_WEBHOOK_SECRETS", "a,,b"),
        ("ORIGINS", r#"[{"name":"x","url":"ftp://nope"}]"#),
        ("ORIGIN_SIGNING_SECRET", "plain-secret-value"),
        ("MAX_BODY_BYTES", "lots"),
        ("RETRY_SCHEDULE", "5,0"),
        ("ALLOW_SIMPLE_SIGNATURE", "maybe"),
        (
            "RISK_RULES",
            "[{\"code\":\"x\",\"level\":\"high\",\"when\":{}}]",
        ),
    ]));
    assert_eq!(
        config.problems.settings(),
        [
            "DIDIT_WEBHOOK_SECRETS",
            "MAX_BODY_BYTES",
            "ALLOW_SIMPLE_SIGNATURE",
            "ORIGINS",
            "ORIGIN_SIGNING_SECRET",
            "RETRY_SCHEDULE",
            "RISK_RULES"
        ]
    );
    assert!(config.intake.is_none() && config.delivery.is_none());
    let text = format!("{}", config.problems);
    assert!(
        text.contains("ORIGIN_SIGNING_SECRET: entry 1 must start with `whsec_`"),
        "{text}"
    );
    assert!(!text.contains("plain-secret-value"));
    assert!(
        !text.contains("ftp://nope"),
        "origin URLs may hold credentials: {text}"
    );
    assert!(
        text.contains("RISK_RULES: rule 1: `when` has no condition"),
        "{text}"
    );
}

#[test]
fn broken_delivery_settings_leave_intake_working() {
    for (setting, value) in [
        ("ORIGINS", "[{"),
        ("RISK_RULES", "not json"),
        ("RETRY_SCHEDULE", "5,zero"),
        ("ORIGIN_SIGNING_SECRET", "whsec_"),
        ("AFTER_DEAD_LETTER", "skip"),
        ("DEAD_LETTER_RETENTION_SECS", "0"),
        ("SUBREQUEST_LIMIT", "5"),
    ] {
        let config = with(&[(setting, value)]);
        assert!(config.intake.is_some(), "{setting}");
        assert!(config.delivery.is_none(), "{setting}");
        assert_eq!(config.problems.settings(), [setting]);
    }
}

#[test]
fn broken_intake_limits_fall_back_to_their_safe_values() {
    let config = with(&[
        ("TIMESTAMP_TOLERANCE_SECS", "ten minutes"),
        ("MAX_BODY_BYTES", "0"),
        ("ALLOW_SIMPLE_SIGNATURE", "sure"),
    ]);
    let intake = config.intake.expect("intake goes on");
    assert_eq!(intake.timestamp_tolerance_secs, 600);
    assert_eq!(intake.max_body_bytes, MAX_MAX_BODY_BYTES);
    assert!(!intake.allow_simple_signature);
    assert_eq!(
        config.problems.settings(),
        [
            "TIMESTAMP_TOLERANCE_SECS",
            "MAX_BODY_BYTES",
            "ALLOW_SIMPLE_SIGNATURE"
        ]
    );
    assert!(config.delivery.is_some(), "delivery needs none of them");
    assert!(Config::from_lookup(lookup(&[])).intake.is_none());
}

#[test]
fn optional_features_fail_alone() {
    let config = with(&[
        ("ADMIN_TOKEN", "short"),
        ("STREAM_TOKEN_SECRET", "too-short-secret"),
    ]);
    assert!(config.intake.is_some() && config.delivery.is_some());
    assert_eq!(config.admin, Feature::Broken);
    assert!(matches!(config.stream, Feature::Broken));
    assert_eq!(
        format!("{}", config.problems),
        "ADMIN_TOKEN: is 5 bytes; use at least 24; STREAM_TOKEN_SECRET: is 16 bytes; use at least 32"
    );
}

#[test]
fn a_request_needing_a_feature_is_refused_as_off_or_as_misconfigured() {
    let off = || crate::rejection::Rejection::StreamOff;
    let config = with(&[("ADMIN_TOKEN", "short")]);
    let broken = config.required(&config.admin, off()).expect_err("broken");
    assert_eq!(
        (broken.status(), broken.code()),
        (503, "configuration_error")
    );
    assert!(broken.to_string().contains("ADMIN_TOKEN"), "{broken}");
    assert!(!broken.to_string().contains("short"), "never the value");
    assert_eq!(config.required(&config.stream, off()).err(), Some(off()));
    assert!(matches!(config.unless_broken(&config.stream), Ok(None)));
    assert_eq!(config.unless_broken(&config.admin), Err(broken));
    assert!(config.intake_or_refusal().is_ok() && config.delivery_or_refusal().is_ok());
    let no_origins = with(&[("ORIGINS", "[]")]);
    let refused = no_origins.delivery_or_refusal().expect_err("no origins");
    assert_eq!(
        (refused.status(), refused.code()),
        (503, "configuration_error")
    );
    let no_secret = Config::from_lookup(lookup(&[]));
    assert_eq!(
        no_secret
            .intake_or_refusal()
            .map(|_| ())
            .map_err(|r| r.status()),
        Err(503)
    );
}

#[test]
fn stream_secret_lifetime_and_audience_are_bounded() {
    let config = with(&[
        (
            "STREAM_TOKEN_SECRET",
            "a-stream-secret-that-is-long-enough-0123",
        ),
        ("STREAM_TOKEN_MAX_LIFETIME_SECS", "7200"),
    ]);
    assert!(matches!(config.stream, Feature::Broken));
    assert_eq!(
        format!("{}", config.problems),
        "STREAM_TOKEN_MAX_LIFETIME_SECS: must be between 10 and 3600"
    );
    let config = with(&[
        (
            "STREAM_TOKEN_SECRET",
            "a-stream-secret-that-is-long-enough-0123",
        ),
        ("STREAM_TOKEN_MAX_LIFETIME_SECS", "300"),
        ("STREAM_STATUS_RETENTION_SECS", "60"),
    ]);
    let stream = config.stream.on().expect("on");
    assert_eq!(
        (
            stream.max_lifetime_secs,
            stream.status_retention_secs,
            stream.audience.as_str()
        ),
        (300, 60, "didit-edge")
    );
    let config = with(&[
        (
            "STREAM_TOKEN_SECRET",
            "a-stream-secret-that-is-long-enough-0123",
        ),
        ("STREAM_TOKEN_AUDIENCE", "not a name"),
    ]);
    assert!(matches!(config.stream, Feature::Broken));
}

#[test]
fn retry_and_dead_letter_settings_are_read() {
    let config = with(&[
        ("RETRY_SCHEDULE", "2x3"),
        ("RETRY_JITTER_PERCENT", "0"),
        ("DEAD_LETTER_RETENTION_SECS", "3600"),
        ("AFTER_DEAD_LETTER", " Continue "),
        ("SUBREQUEST_LIMIT", "1000"),
    ]);
    let delivery = config.delivery.expect("valid");
    assert_eq!(
        delivery.retry_schedule.wait_after_ms(3, 12_345),
        Some(2_000)
    );
    assert_eq!(delivery.retry_schedule.wait_after_ms(4, 0), None);
    assert_eq!(delivery.retention.dead_letter_secs, 3600);
    assert_eq!(delivery.after_dead_letter, AfterDeadLetter::Continue);
    assert_eq!(delivery.subrequest_limit, 1000);

    let config = with(&[
        ("RETRY_JITTER_PERCENT", "60"),
        ("DEAD_LETTER_RETENTION_SECS", "0"),
        ("AFTER_DEAD_LETTER", "skip"),
    ]);
    assert_eq!(
        format!("{}", config.problems),
        "DEAD_LETTER_RETENTION_SECS: must be between 1 and 31536000; \
         RETRY_JITTER_PERCENT: must be between 0 and 50; \
         AFTER_DEAD_LETTER: must be one of `hold`, `continue`"
    );
}

#[test]
fn payload_retention_cannot_outlive_the_record() {
    let config = with(&[
        ("DEDUP_TTL_SECS", "3600"),
        ("PAYLOAD_RETENTION_SECS", "3601"),
    ]);
    assert_eq!(config.problems.settings(), ["PAYLOAD_RETENTION_SECS"]);
    let config = with(&[
        ("DEDUP_TTL_SECS", "3600"),
        ("PAYLOAD_RETENTION_SECS", "3600"),
    ]);
    assert_eq!(config.delivery.expect("valid").retention.payload_secs, 3600);
}

#[test]
fn origins_may_name_their_own_signing_secrets() {
    let origins = r#"[{"name":"aws","url":"https://a","signing_secret":"AWS_SIGNING"},{"name":"gcp","url":"https://g"}]"#;
    let rotating = format!("{ROTATED}, {SIGNING}");
    let config = with(&[("ORIGINS", origins), ("AWS_SIGNING", &rotating)]);
    let delivery = config.delivery.expect("valid");
    let keys = |at: usize| match delivery.signing_for(&delivery.origins[at]) {
        OriginSigning::StandardWebhooks(keys) => keys,
        OriginSigning::Didit(_) => panic!("a CloudEvent origin gets Didit's format"),
    };
    let aws: Vec<&[u8]> = keys(0).iter().map(|s| s.key()).collect();
    assert_eq!(aws.len(), 2);
    assert_eq!(aws[0], b"didit-edge-local-demo-key-001");
    assert_eq!(keys(1), &delivery.signing_secrets);
    let config = with(&[("ORIGINS", origins)]);
    assert_eq!(
        format!("{}", config.problems),
        "ORIGINS: origin `aws` names signing_secret `AWS_SIGNING`, which is not set"
    );
}

#[test]
fn a_didit_format_origin_is_signed_with_its_one_didit_style_secret() {
    let origins = r#"[{"name":"app","url":"https://a","format":"didit","signing_secret":"APP_DIDIT"},{"name":"ce","url":"https://c"}]"#;
    // A Didit-style secret is any string, used as is: not a `whsec_` key.
    let config = with(&[("ORIGINS", origins), ("APP_DIDIT", " plain-secret-Ü ")]);
    let delivery = config.delivery.expect("valid");
    match delivery.signing_for(&delivery.origins[0]) {
        OriginSigning::Didit(secret) => assert_eq!(secret.key(), "plain-secret-Ü".as_bytes()),
        OriginSigning::StandardWebhooks(_) => panic!("a didit origin gets a CloudEvent"),
    }
    assert!(matches!(
        delivery.signing_for(&delivery.origins[1]),
        OriginSigning::StandardWebhooks(keys) if keys == &delivery.signing_secrets
    ));
    // Didit's own secret (minimal() sets DIDIT_WEBHOOK_SECRETS) is refused, unechoed.
    let didits = with(&[]).intake.expect("intake").webhook_secrets;
    let didit_key = core::str::from_utf8(didits.iter().next().expect("a secret").key())
        .expect("utf-8")
        .to_string();
    let config = with(&[("ORIGINS", origins), ("APP_DIDIT", &didit_key)]);
    assert!(config.delivery.is_none());
    let text = format!("{}", config.problems);
    assert_eq!(
        text,
        "ORIGINS: origin `app`: its signing_secret is one of DIDIT_WEBHOOK_SECRETS; give it its own"
    );
    assert!(!text.contains(&didit_key));
    let hidden = "hidden-didit-secret";
    let two = format!("{hidden},other");
    for (value, problem) in [
        (
            two.as_str(),
            "ORIGINS: origin `app`: signing_secret `APP_DIDIT` lists several secrets; a didit-format origin takes one",
        ),
        (
            " ",
            "ORIGINS: origin `app` names signing_secret `APP_DIDIT`, which is not set",
        ),
    ] {
        let config = with(&[("ORIGINS", origins), ("APP_DIDIT", value)]);
        assert!(config.delivery.is_none());
        let text = format!("{}", config.problems);
        assert_eq!(text, problem);
        assert!(!text.contains(hidden));
    }
}

#[test]
fn missing_settings_are_reported() {
    let config = Config::from_lookup(lookup(&[]));
    assert_eq!(
        config.problems.settings(),
        ["DIDIT_WEBHOOK_SECRETS", "ORIGINS", "ORIGIN_SIGNING_SECRET"]
    );
    assert!(config
        .problems
        .0
        .iter()
        .all(|e| e.problem == Problem::Missing));
}

#[test]
fn source_addresses_restrict_deliveries_when_set() {
    let open = with(&[]).intake.expect("intake");
    assert!(open.source_ips.is_empty());
    assert_eq!(open.admits_source(None), Ok(()));
    let didit = with(&[("DIDIT_SOURCE_IPS", "18.203.201.92, 2001:db8::1")]);
    assert!(didit.problems.is_empty());
    let intake = didit.intake.expect("intake");
    assert_eq!(intake.admits_source(Some("18.203.201.92")), Ok(()));
    assert_eq!(intake.admits_source(Some("2001:0db8:0:0::1")), Ok(()));
    // An IPv4 client written as an IPv4-mapped IPv6 address is the same client, either way.
    assert_eq!(intake.admits_source(Some("::ffff:18.203.201.92")), Ok(()));
    let mapped = with(&[("DIDIT_SOURCE_IPS", "::ffff:18.203.201.92")])
        .intake
        .expect("intake");
    assert_eq!(mapped.admits_source(Some("18.203.201.92")), Ok(()));
    assert_eq!(
        mapped.admits_source(Some("::ffff:18.203.201.93")),
        Err(Rejection::ForbiddenSource)
    );
    for other in [Some("18.203.201.93"), Some("not an ip"), Some(""), None] {
        assert_eq!(
            intake.admits_source(other),
            Err(Rejection::ForbiddenSource),
            "{other:?}"
        );
    }
    // A typo restricts nothing (signatures still decide) and is named.
    let typo = with(&[("DIDIT_SOURCE_IPS", "18.203.201.92,18.203.201")]);
    assert_eq!(typo.problems.settings(), ["DIDIT_SOURCE_IPS"]);
    assert_eq!(
        format!("{}", typo.problems.0[0]),
        "DIDIT_SOURCE_IPS: entry 2 is not an IPv4 or IPv6 address; use addresses separated by commas"
    );
    assert_eq!(
        typo.intake.expect("intake").admits_source(Some("10.0.0.1")),
        Ok(())
    );
}

#[test]
fn alerts_are_off_unless_a_url_is_set_and_a_bad_one_breaks_only_them() {
    assert_eq!(with(&[]).alerts, Feature::Off);
    assert_eq!(
        with(&[
            ("ALERTS_URL", " https://hooks.example/alerts "),
            ("ALERTS_SIGNING_SECRET", ROTATED)
        ])
        .alerts,
        Feature::On(AlertsConfig {
            url: "https://hooks.example/alerts".into(),
            signing_secrets: SigningSecrets::parse(ROTATED).expect("valid"),
        })
    );
    let broken = with(&[
        ("ALERTS_URL", "hooks.example/alerts"),
        ("ALERTS_SIGNING_SECRET", ROTATED),
    ]);
    assert_eq!(broken.alerts, Feature::Broken);
    assert_eq!(broken.problems.settings(), ["ALERTS_URL"]);
    assert!(broken.delivery.is_some() && broken.intake.is_some());
}

#[test]
fn alerts_are_signed_with_their_own_key_never_the_origins() {
    let unkeyed = with(&[("ALERTS_URL", "https://hooks.example/alerts")]);
    assert_eq!(unkeyed.alerts, Feature::Broken, "held until a key is set");
    assert_eq!(unkeyed.problems.settings(), ["ALERTS_SIGNING_SECRET"]);
    // Refused with `extra` settings, naming `names` and never echoing a key; delivery goes on.
    let refused = |extra: &[(&str, &str)], secret: &str, names: &str| {
        let mut pairs = extra.to_vec();
        pairs.extend([
            ("ALERTS_URL", "https://hooks.example/alerts"),
            ("ALERTS_SIGNING_SECRET", secret),
        ]);
        let config = with(&pairs);
        assert_eq!(config.alerts, Feature::Broken, "{secret}");
        assert_eq!(config.problems.settings(), ["ALERTS_SIGNING_SECRET"]);
        let text = format!("{}", config.problems);
        assert!(text.contains(names) && !text.contains("whsec_"), "{text}");
        assert!(config.delivery.is_some(), "delivery goes on");
    };
    // The origins' key, alone or in a rotation list, is refused.
    let shared = format!("{ROTATED},{SIGNING}");
    for secret in [SIGNING, shared.as_str()] {
        refused(&[], secret, "ORIGIN_SIGNING_SECRET");
    }
    // An origin's own key is refused too, alone or in a rotation list, naming the origin.
    let origins = r#"[{"name":"aws","url":"https://a","signing_secret":"AWS_SIGNING"},{"name":"gcp","url":"https://g"}]"#;
    let own = "whsec_YWxlcnRzLW93bi1rZXktMzItYnl0ZXMtbG9uZy4uLi4=";
    let rotating = format!("{own},{ROTATED}");
    for secret in [ROTATED, rotating.as_str()] {
        refused(
            &[("ORIGINS", origins), ("AWS_SIGNING", ROTATED)],
            secret,
            "origin `aws`'s signing_secret",
        );
    }
    // A key of its own is taken.
    let config = with(&[
        ("ORIGINS", origins),
        ("AWS_SIGNING", ROTATED),
        ("ALERTS_URL", "https://hooks.example/alerts"),
        ("ALERTS_SIGNING_SECRET", own),
    ]);
    assert!(
        matches!(config.alerts, Feature::On(_)),
        "{}",
        config.problems
    );
}

#[test]
fn a_jurisdiction_is_one_the_platform_knows_and_a_broken_one_stops_intake() {
    assert_eq!(with(&[]).jurisdiction, Ok(None));
    for known in ["eu", "us", "fedramp", "fedramp-high"] {
        assert_eq!(
            with(&[("DURABLE_OBJECT_JURISDICTION", known)]).jurisdiction,
            Ok(Some(known))
        );
    }
    let broken = with(&[("DURABLE_OBJECT_JURISDICTION", "EU-West")]);
    assert_eq!(broken.jurisdiction, Err(()));
    assert!(
        broken.intake.is_none(),
        "nothing is stored in an unknown place"
    );
    assert_eq!(broken.problems.settings(), ["DURABLE_OBJECT_JURISDICTION"]);
}

#[test]
fn reconciliation_is_off_without_an_api_key_and_a_bad_setting_breaks_only_it() {
    assert_eq!(with(&[]).reconcile, Feature::Off);
    // The other settings alone switch nothing on.
    assert_eq!(
        with(&[
            ("DIDIT_API_BASE_URL", "http://127.0.0.1:9"),
            ("RECONCILE_SETTLE_SECS", "x")
        ])
        .reconcile,
        Feature::Off
    );
    for (setting, value) in [
        ("DIDIT_API_KEY", "two words"),
        ("DIDIT_API_BASE_URL", "verification.didit.me/v3"),
        ("DIDIT_API_BASE_URL", "https://x/v3?a=b"),
        ("DIDIT_DESTINATION", "a b"),
        ("RECONCILE_LOOKBACK_SECS", "60"),
        ("RECONCILE_INTERVAL_SECS", "9"),
        ("RECONCILE_RECHECK_SECS", "59"),
        ("RECONCILE_REQUESTS_PER_RUN", "6"),
    ] {
        let mut settings = vec![("DIDIT_API_KEY", "k")];
        settings.push((setting, value));
        let broken = with(&settings);
        assert_eq!(broken.reconcile, Feature::Broken, "{setting}={value}");
        assert_eq!(broken.problems.settings(), [setting]);
        assert!(broken.delivery.is_some() && broken.intake.is_some());
        assert!(!format!("{}", broken.problems).contains("two words"));
    }
}

#[test]
fn reconciliation_reads_its_settings_and_counts_what_its_neighbours_cost() {
    use crate::reconcile;
    let on = with(&[("DIDIT_API_KEY", " key-123 ")]).reconcile;
    assert_eq!(
        on,
        Feature::On(ReconcileConfig {
            api_key: "key-123".into(),
            base_url: "https://verification.didit.me/v3".into(),
            destination: None,
            settings: reconcile::Settings {
                lookback_secs: reconcile::DEFAULT_LOOKBACK_SECS,
                interval_secs: reconcile::DEFAULT_INTERVAL_SECS,
                settle_secs: reconcile::DEFAULT_SETTLE_SECS,
                recheck_secs: reconcile::DEFAULT_RECHECK_SECS,
                requests_per_run: 40,
                memory_secs: 604_800,
                publishes_per_event: 0,
                alerts: false,
                lease_secs: reconcile::LEASE_SECS,
                gap_retry: reconcile::GapRetry::default(),
            },
        })
    );
    let Feature::On(config) = on else {
        panic!("on");
    };
    assert!(
        !format!("{config:?}").contains("key-123"),
        "the key is never printed"
    );
    let tuned = with(&[
        ("DIDIT_API_KEY", "k"),
        ("DIDIT_API_BASE_URL", "http://127.0.0.1:8999/v3/"),
        ("RECONCILE_LOOKBACK_SECS", "7200"),
        ("RECONCILE_INTERVAL_SECS", "60"),
        ("RECONCILE_SETTLE_SECS", "0"),
        ("RECONCILE_RECHECK_SECS", "600"),
        ("RECONCILE_REQUESTS_PER_RUN", "1000"),
    ]);
    let tuned = tuned.reconcile.on().expect("on").clone();
    assert_eq!(tuned.base_url, "http://127.0.0.1:8999/v3");
    assert_eq!(
        tuned.settings,
        reconcile::Settings {
            lookback_secs: 7200,
            interval_secs: 60,
            settle_secs: 0,
            recheck_secs: 600,
            requests_per_run: 1000,
            memory_secs: 604_800,
            publishes_per_event: 0,
            alerts: false,
            lease_secs: reconcile::LEASE_SECS,
            gap_retry: reconcile::GapRetry::default(),
        }
    );
    // What a run spends on an event's stream publishes and on alerts is known to it.
    let counted = with(&[
        ("DIDIT_API_KEY", "k"),
        ("STREAM_TOKEN_SECRET", "0123456789abcdef0123456789abcdef"),
        ("ALERTS_URL", "https://hooks.example/alerts"),
        ("ALERTS_SIGNING_SECRET", ROTATED),
    ]);
    let counted = counted.reconcile.on().expect("on").settings;
    assert_eq!((counted.publishes_per_event, counted.alerts), (2, true));
}

#[test]
fn the_inboxes_remember_longer_than_reconciliation_looks_back() {
    // Lookback + settle + recheck + tolerance: 259200 + 600 + 3600 + 600 with the defaults.
    let needed = 264_000u64;
    let at = |ttl: u64| {
        let ttl = ttl.to_string();
        with(&[("DIDIT_API_KEY", "k"), ("DEDUP_TTL_SECS", ttl.as_str())])
    };
    let enough = at(needed);
    assert!(enough.problems.is_empty(), "{}", enough.problems);
    assert_eq!(
        enough
            .reconcile
            .on()
            .map(|config| config.settings.memory_secs),
        Some(needed)
    );
    let short = at(needed - 1);
    assert_eq!(short.reconcile, Feature::Broken);
    assert_eq!(
        short.problems.settings(),
        ["RECONCILE_LOOKBACK_SECS", "DEDUP_TTL_SECS"],
        "both settings are named"
    );
    assert!(format!("{}", short.problems).contains("at least"));
    // Held like any bad setting: deliveries go on, and nothing else is refused.
    assert!(short.delivery.is_some() && short.intake.is_some());
    // Without reconciliation any TTL is fine; a shorter lookback makes room for a short TTL.
    assert!(with(&[("DEDUP_TTL_SECS", "1")]).problems.is_empty());
    let small = with(&[
        ("DIDIT_API_KEY", "k"),
        ("DEDUP_TTL_SECS", "8400"),
        ("RECONCILE_LOOKBACK_SECS", "3600"),
        ("RECONCILE_SETTLE_SECS", "600"),
        ("RECONCILE_RECHECK_SECS", "3600"),
        ("TIMESTAMP_TOLERANCE_SECS", "600"),
    ]);
    assert!(small.problems.is_empty(), "{}", small.problems);
    assert!(small.reconcile.on().is_some());
}

#[test]
fn the_admin_api_signs_in_by_either_token_or_access_and_refuses_half_set_ups() {
    const OPERATOR: &str = "operator-token-0123456789abcdef";
    let both = with(&[
        ("ADMIN_TOKEN", OPERATOR),
        ("ADMIN_READ_TOKEN", "reader-token-0123456789abcdefgh"),
    ]);
    let auth = both.admin.on().expect("on");
    assert!(auth.operator.is_some() && auth.read_only.is_some() && auth.access.is_none());
    let reader_only = with(&[("ADMIN_READ_TOKEN", "reader-token-0123456789abcdefgh")]);
    assert!(reader_only.admin.on().is_some_and(|a| a.operator.is_none()));
    let same = with(&[("ADMIN_TOKEN", OPERATOR), ("ADMIN_READ_TOKEN", OPERATOR)]);
    assert_eq!(same.admin, Feature::Broken);
    assert_eq!(
        format!("{}", same.problems),
        "ADMIN_READ_TOKEN: must differ from ADMIN_TOKEN"
    );

    let access = with(&[
        ("ACCESS_TEAM_DOMAIN", "team.cloudflareaccess.com"),
        ("ACCESS_AUD", "app-aud"),
        ("ACCESS_OPERATORS", "Ops@Example.com, lead@example.com"),
    ]);
    let set_up = access
        .admin
        .on()
        .and_then(|a| a.access.clone())
        .expect("on");
    assert_eq!(set_up.issuer, "https://team.cloudflareaccess.com");
    assert_eq!(
        set_up.jwks_url,
        "https://team.cloudflareaccess.com/cdn-cgi/access/certs"
    );
    assert_eq!(set_up.operators, ["ops@example.com", "lead@example.com"]);
    assert_eq!(set_up.readers, None);
    let local_keys = with(&[
        ("ACCESS_TEAM_DOMAIN", "team.cloudflareaccess.com"),
        ("ACCESS_AUD", "app-aud"),
        ("ACCESS_JWKS_URL", "http://127.0.0.1:9999/certs"),
        ("ACCESS_READERS", "a@example.com"),
    ]);
    let set_up = local_keys
        .admin
        .on()
        .and_then(|a| a.access.clone())
        .expect("on");
    assert_eq!(set_up.jwks_url, "http://127.0.0.1:9999/certs");
    assert_eq!(set_up.readers, Some(vec!["a@example.com".to_string()]));

    for (broken, named) in [
        (
            vec![("ACCESS_AUD", "app-aud")],
            "ACCESS_TEAM_DOMAIN: is not set",
        ),
        (
            vec![("ACCESS_TEAM_DOMAIN", "team.cloudflareaccess.com")],
            "ACCESS_AUD: is not set",
        ),
        (
            vec![("ACCESS_TEAM_DOMAIN", "team"), ("ACCESS_AUD", "a")],
            "ACCESS_TEAM_DOMAIN: must be a host name such as `myteam.cloudflareaccess.com`",
        ),
        (
            vec![
                ("ACCESS_TEAM_DOMAIN", "team.cloudflareaccess.com"),
                ("ACCESS_AUD", "a"),
                ("ACCESS_OPERATORS", "a@b.c,,"),
            ],
            "ACCESS_OPERATORS: must be a comma-separated list without blank entries",
        ),
    ] {
        let config = with(&broken);
        assert_eq!(config.admin, Feature::Broken, "{named}");
        assert_eq!(format!("{}", config.problems), named);
    }
}

#[test]
fn a_didit_destination_is_read_with_reconciliation() {
    let on = with(&[("DIDIT_API_KEY", "k"), ("DIDIT_DESTINATION", " 9b2c-uuid ")]).reconcile;
    let Feature::On(config) = on else {
        panic!("on: {on:?}");
    };
    assert_eq!(config.destination.as_deref(), Some("9b2c-uuid"));
}
