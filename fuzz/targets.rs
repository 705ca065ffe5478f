//! The fuzz targets' bodies: every parser that sees outside input, each with the properties it
//! must keep on any input, not only "does not panic". `cargo fuzz` runs them on nightly
//! (`fuzz/fuzz_targets/`), and `core/tests/fuzz_corpus.rs` replays the committed corpus on
//! stable, so CI guards what fuzzing found without nightly.

use std::collections::BTreeMap;

use didit_edge_core::access::{AccessConfig, Assertion, Jwks};
use didit_edge_core::admin::{erasure_request, DeadLetterQuery, MAX_SUBJECT_ID_BYTES};
use didit_edge_core::canonical::{CanonicalJson, NonAscii};
use didit_edge_core::config::Config;
use didit_edge_core::didit_view::{
    self, parse_deliveries_page, parse_destinations, select_destinations, DayWindow, SessionScan,
};
use didit_edge_core::endpoint::endpoint;
use didit_edge_core::envelope::Envelope;
use didit_edge_core::inbox::Knowledge;
use didit_edge_core::intake::{ClassifyPolicy, Identified, Incoming, Intake};
use didit_edge_core::mac::{HmacSha256, RustCrypto};
use didit_edge_core::origin::parse_origins;
use didit_edge_core::reconcile::api::{self, Answer, SessionKind, SessionRow};
use didit_edge_core::reconcile::{self, event, Injected, Settings, State, Step};
use didit_edge_core::retry::{RetrySchedule, MAX_RETRIES};
use didit_edge_core::risk::RiskRules;
use didit_edge_core::secret::WebhookSecrets;
use didit_edge_core::stream::AdminFilters;
use didit_edge_core::stream_token::{self, Expected, StreamTokenSecret};
use didit_edge_core::time::{parse_http_date, UnixMs, UnixSecs};
use didit_edge_core::verify::SignatureHeaders;
use serde_json::value::RawValue;

const SECRET: &[u8] = b"fuzz-didit-secret";
const NOW: i64 = 1_763_784_000;

/// Splits fuzz input into the body and up to four header values (separated by a 0xFF byte,
/// which valid UTF-8 never holds).
fn parts(data: &[u8]) -> (&[u8], Vec<Option<&str>>) {
    let mut pieces = data.split(|&b| b == 0xFF);
    let body = pieces.next().unwrap_or_default();
    let headers = pieces
        .take(4)
        .map(|piece| std::str::from_utf8(piece).ok())
        .collect();
    (body, headers)
}

/// The webhook intake, body and signature headers: never panics; a delivery signed with the
/// secret over its exact bytes is authentic, names the same event twice, and (if it is
/// admitted) classifies into a CloudEvent that is JSON and carries the body untouched.
pub(crate) fn intake(data: &[u8]) {
    let (body, headers) = parts(data);
    let header = |i: usize| headers.get(i).copied().flatten();
    let secrets = WebhookSecrets::parse("fuzz-didit-secret").expect("secret");
    let origins = parse_origins(r#"[{"name":"o","url":"https://o.example/"}]"#).expect("origins");
    let rules = RiskRules::default();
    let policy = ClassifyPolicy {
        risk_rules: &rules,
        origins: &origins,
    };
    // As sent, with whatever headers the input holds.
    let as_sent = Incoming {
        body,
        headers: SignatureHeaders {
            signature: header(0),
            signature_v2: header(1),
            signature_simple: header(2),
            timestamp: header(3),
        },
        test_header: false,
    };
    if let Ok(intake) = Intake::new(as_sent, true) {
        if let Ok(verified) = intake.verify_with(&secrets, &mut RustCrypto) {
            if let Ok(identified) = intake.identify(verified, NOW, 600) {
                let _ = identified.classify(&policy);
            }
        }
    }
    // Signed properly: authentic whatever the body says.
    let tag = hex::encode(RustCrypto.tag(SECRET, body));
    let signed = Incoming {
        body,
        headers: SignatureHeaders {
            signature: Some(&tag),
            ..Default::default()
        },
        test_header: false,
    };
    let intake = Intake::new(signed, false).expect("a signature header is present");
    let verified = intake
        .verify_with(&secrets, &mut RustCrypto)
        .expect("signed with the secret over the exact bytes");
    let Ok(identified) = intake.identify(verified, NOW, u64::MAX) else {
        return;
    };
    let again = Identified::recall(body, verified, identified.test, identified.received_at)
        .expect("an identified body is identified again");
    assert_eq!(again.event_id, identified.event_id);
    assert_eq!(again.legacy_id, identified.legacy_id);
    if let Ok(classified) = identified.classify(&policy) {
        // Compared as raw JSON text, byte for byte: a number beyond f64 (`1e999`, found by this
        // target) is valid JSON that travels as sent, though no `serde_json::Value` holds it.
        let member = |json: &str, key: &str| -> String {
            let object: BTreeMap<String, Box<RawValue>> =
                serde_json::from_str(json).expect("a JSON object");
            object
                .get(key)
                .expect("the member is there")
                .get()
                .to_owned()
        };
        let data = member(classified.cloud_event.get(), "data");
        let carried = member(&data, "payload");
        let original: Box<RawValue> = serde_json::from_slice(body).expect("the body is JSON");
        assert_eq!(carried, original.get(), "the payload travels untouched");
    }
}

/// Didit's canonical JSON: never panics, and the canonical form canonicalizes to itself, in
/// both non-ASCII modes. The one exception is what Python itself writes outside JSON: a number
/// too large for a float is `Infinity` in Didit's canonical form (found by this target), which
/// no JSON parser reads back.
pub(crate) fn canonical(data: &[u8]) {
    let Ok(parsed) = CanonicalJson::parse(data) else {
        return;
    };
    for mode in [NonAscii::Escaped, NonAscii::Utf8] {
        let once = parsed.to_string(mode);
        match CanonicalJson::parse(once.as_bytes()) {
            Ok(again) => assert_eq!(once, again.to_string(mode), "a fixed point"),
            Err(error) => assert!(
                once.contains("Infinity"),
                "{error}: the canonical form {once:?} is not JSON"
            ),
        }
        if mode == NonAscii::Escaped {
            assert!(once.is_ascii());
        }
    }
}

/// The envelope: never panics; what it reads is what serde_json reads of the same fields.
pub(crate) fn envelope(data: &[u8]) {
    let Ok(envelope) = Envelope::parse(data) else {
        return;
    };
    // The envelope skips fields it does not read without checking their UTF-8 (found by this
    // target); the intake refuses such a body as `malformed_json` before it names an event, so
    // only UTF-8 bodies are compared.
    if std::str::from_utf8(data).is_err() {
        return;
    }
    let value: serde_json::Value = match serde_json::from_slice(data) {
        Ok(value) => value,
        // Valid JSON that `Value` cannot hold (a number beyond f64); the envelope reads it.
        Err(error) if error.to_string().starts_with("number out of range") => return,
        Err(error) => panic!("the envelope read what serde_json refuses: {error}"),
    };
    if let Some(text) = value["webhook_type"].as_str() {
        assert_eq!(envelope.webhook_type.as_deref(), Some(text));
    }
    if let Some(text) = value["vendor_data"].as_str() {
        assert_eq!(envelope.vendor_data.as_deref(), Some(text));
    }
}

/// Stream tokens: never panic, and never grant anything to a token not signed with the secret.
pub(crate) fn stream_token(data: &[u8]) {
    let Ok(token) = std::str::from_utf8(data) else {
        return;
    };
    let secret =
        StreamTokenSecret::parse("fuzz-stream-secret-0123456789-abcdefghij").expect("secret");
    let expected = Expected {
        audience: "didit-edge",
        now_secs: NOW,
        max_lifetime_secs: 900,
    };
    if let Ok(grant) = stream_token::verify(token, &secret, &expected, &mut RustCrypto) {
        // Only possible if the input carries a valid HS256 signature under the secret.
        let signed_len = token.rfind('.').expect("three parts");
        let tag = RustCrypto.tag(
            b"fuzz-stream-secret-0123456789-abcdefghij",
            &data[..signed_len],
        );
        use base64::Engine as _;
        let sent = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(&token[signed_len + 1..])
            .expect("base64url");
        assert_eq!(
            sent.as_slice(),
            tag.as_slice(),
            "granted {grant:?} without the secret"
        );
    }
}

/// The settings: any text in any setting never panics, a valid group is usable, and no
/// problem ever quotes a secret's value.
pub(crate) fn config(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let mut fields = text.split('\u{1}');
    let values: Vec<String> = (0..6)
        .map(|_| fields.next().unwrap_or_default().to_string())
        .collect();
    let secret = "fuzz-secret-value-never-echoed";
    let config = Config::from_lookup(|name| match name {
        "DIDIT_WEBHOOK_SECRETS" => Some(format!("{secret},{}", values[0])),
        "ORIGINS" => Some(values[1].clone()),
        "RISK_RULES" => Some(values[2].clone()),
        "RETRY_SCHEDULE" => Some(values[3].clone()),
        "ORIGIN_SIGNING_SECRET" => Some(values[4].clone()),
        "TIMESTAMP_TOLERANCE_SECS" | "MAX_BODY_BYTES" | "AFTER_DEAD_LETTER" => {
            Some(values[5].clone())
        }
        _ => None,
    });
    let problems = format!("{}", config.problems);
    assert!(
        !problems.contains(secret),
        "a secret was echoed: {problems}"
    );
    if let Some(delivery) = &config.delivery {
        assert!(!delivery.origins.is_empty());
        assert!(delivery.retry_schedule.retries() <= MAX_RETRIES);
    }
    let _ = parse_origins(text);
    let _ = RiskRules::parse(text);
    if let Ok(schedule) = RetrySchedule::parse(text) {
        assert!((1..=MAX_RETRIES).contains(&schedule.retries()));
        assert!(schedule.wait_after_ms(schedule.retries() + 1, 7).is_none());
    }
}

/// The admin API's query strings and paths: never panic, never accept an unknown parameter;
/// an erasure body names a known kind and an id that survives a round trip through its JSON.
pub(crate) fn admin_query(data: &[u8]) {
    let Ok(query) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(parsed) = DeadLetterQuery::parse(Some(query)) {
        assert!((1..=500).contains(&parsed.limit));
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            let key = pair.split_once('=').map_or(pair, |(k, _)| k);
            assert!(
                ["consumer", "limit", "after"].contains(&key),
                "accepted {key}"
            );
        }
    }
    let _ = AdminFilters::parse(Some(query));
    let _ = endpoint("DELETE", query);
    // The same bytes as an erasure's body: a subject it names is within bounds, and its
    // kind and id survive a round trip through the documented JSON exactly.
    if let Ok(subject) = erasure_request(data) {
        assert!(!subject.id.trim().is_empty() && subject.id.len() <= MAX_SUBJECT_ID_BYTES);
        let again = serde_json::to_vec(&serde_json::json!({
            "subject_kind": subject.kind.as_str(),
            "subject_id": subject.id.as_ref(),
        }))
        .expect("json");
        let again = erasure_request(&again).expect("its own encoding");
        assert_eq!((again.kind, again.id), (subject.kind, subject.id));
    }
}

/// What reconciliation reads from Didit's API (`didit_edge_core::reconcile`): a session list
/// page, a decision and a `Retry-After`, split by 0xFF. Never panics; a page's rows and
/// unreadable rows add up to its length; an event written from a decision names itself, keeps
/// the decision byte for byte and the decision's status; and a run fed these answers always
/// ends within its budget.
pub(crate) fn didit_api(data: &[u8]) {
    let mut pieces = data.split(|&b| b == 0xFF);
    fn text(piece: Option<&[u8]>) -> Option<&str> {
        std::str::from_utf8(piece.unwrap_or_default()).ok()
    }
    let (page, decision, retry_after) = (
        text(pieces.next()),
        text(pieces.next()),
        text(pieces.next()),
    );
    if let Some(retry_after) = retry_after {
        retry_after_is_bounded(retry_after);
    }
    let Some(page) = page else { return };
    page_rows_add_up(page);
    let decision = decision.unwrap_or_default();
    event_from_decision_names_itself(decision);
    run_ends_within_budget(page, decision);
}

/// A `Retry-After` (seconds or an HTTP date) never asks for more than the cap.
fn retry_after_is_bounded(retry_after: &str) {
    let now = UnixSecs(NOW);
    if let Some(secs) = api::retry_after_secs(retry_after, now) {
        assert!(secs <= api::MAX_RETRY_AFTER_SECS);
    }
    let _ = parse_http_date(retry_after);
}

/// A session list page, read as either kind: its rows and unreadable rows add up to its length,
/// and an empty page has no next one.
fn page_rows_add_up(page: &str) {
    for kind in [SessionKind::User, SessionKind::Business] {
        if let Ok(parsed) = api::parse_page(page, kind, 0) {
            assert_eq!(
                parsed.rows.len() as u64 + parsed.unreadable_rows,
                parsed.len
            );
            assert!(parsed.len > 0 || !parsed.has_next);
        }
    }
}

/// An event written from a decision keeps the decision byte for byte, and the intake reads it
/// back as naming itself, with the decision's status, in the session's inbox.
fn event_from_decision_names_itself(decision: &str) {
    let now = UnixSecs(NOW);
    let row = SessionRow {
        session_id: "s-1".into(),
        kind: SessionKind::User,
        status: "Approved".into(),
        created_at: now.micros(),
    };
    if let Ok(reconciled) = event::from_decision(decision, &row, now) {
        assert!(reconciled.body.contains(decision.trim()) || decision.trim() != decision);
        let identified = Identified::from_api(reconciled.body.as_bytes(), NOW)
            .expect("a written event names itself");
        assert_eq!(
            identified.status.as_deref(),
            Some(reconciled.status.as_str())
        );
        assert!(identified.inbox().ends_with(":s-1"));
    }
}

/// A whole run whose every list answers `page` and every decision `decision`: it ends, within
/// its budget, and everything it injects is an event the intake reads.
fn run_ends_within_budget(page: &str, decision: &str) {
    let settings = Settings {
        lookback_secs: 86_400,
        interval_secs: 300,
        settle_secs: 0,
        recheck_secs: 3_600,
        requests_per_run: 12,
        memory_secs: 7 * 86_400,
        publishes_per_event: 2,
        alerts: true,
        lease_secs: reconcile::LEASE_SECS,
        gap_retry: reconcile::GapRetry::default(),
    };
    let mut state = State::default();
    state.switched_on = Some(UnixSecs(0).micros());
    let now = UnixMs(NOW * 1000);
    let Ok(mut run) = reconcile::begin(state, settings, now) else {
        panic!("a fresh state runs");
    };
    let mut steps = 0;
    loop {
        steps += 1;
        assert!(steps < 200, "a run ends");
        match run.poll(now) {
            Step::Done => break,
            Step::List { .. } => run.handle_page(Answer::Ok(page), now),
            Step::Recall { .. } => run.handle_recalled([], []),
            Step::AskInbox { .. } => run.handle_inbox(Ok(Knowledge::Missing), now),
            Step::FetchDecision { .. } => run.handle_decision(Answer::Ok(decision), now),
            Step::Inject { body } => {
                assert!(Identified::from_api(body.as_bytes(), NOW).is_ok());
                run.handle_injected(Ok(Injected::Accepted), now);
            }
            Step::Alert { .. } => run.handle_alerted(Ok(()), now),
        }
        run.drain_changes().for_each(drop);
    }
    let (state, _) = run.finish(now);
    let report = state.last_run.expect("a report");
    assert!(report.counts.requests <= 12);
}

/// A Cloudflare Access assertion, and the same bytes as the team's keys: neither parser
/// panics, and an assertion judged good (as if its signature verified) is this team's, for
/// this application, unexpired.
pub(crate) fn access(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let config = AccessConfig {
        issuer: "https://team.cloudflareaccess.com".into(),
        jwks_url: "https://team.cloudflareaccess.com/cdn-cgi/access/certs".into(),
        audience: "aud-1".into(),
        operators: vec!["ops@example.com".into()],
        readers: Some(vec!["reader@example.com".into()]),
    };
    if let Ok(assertion) = Assertion::parse(text) {
        assert!(!assertion.kid.is_empty());
        assert!(text
            .trim()
            .starts_with(std::str::from_utf8(assertion.signed()).expect("utf-8")));
        if let Ok(identity) = assertion.identity(true, &config, NOW) {
            let claims = text.trim().split('.').nth(1).expect("claims part");
            use base64::Engine as _;
            let claims: serde_json::Value = serde_json::from_slice(
                &base64::engine::general_purpose::URL_SAFE_NO_PAD
                    .decode(claims)
                    .expect("base64url"),
            )
            .expect("json");
            assert_eq!(claims["iss"], "https://team.cloudflareaccess.com");
            assert!(claims["exp"].as_i64().expect("exp") + 60 > NOW);
            assert!(!identity.name.is_empty());
            let _ = config.role_of(&identity);
        }
        assert!(assertion.identity(false, &config, NOW).is_err());
    }
    if let Ok(jwks) = Jwks::parse(text) {
        for key in &jwks.keys {
            assert_eq!(jwks.key(&key.kid).map(|k| &k.kid), Some(&key.kid));
        }
    }
}

/// Didit's view of its webhooks (`didit_edge_core::didit_view`): a destinations list, a
/// deliveries page and a lookup's answer, split by 0xFF. Never panics; a destination's URL as
/// shown carries no user info or query; the days read are ordered and bounded; a scan fed the
/// page as every answer reads at most its budget, and keeps only the session's rows.
pub(crate) fn didit_view(data: &[u8]) {
    let mut pieces = data.split(|&b| b == 0xFF);
    let mut text = || std::str::from_utf8(pieces.next().unwrap_or_default()).unwrap_or_default();
    let (list, page, lookup) = (text(), text(), text());
    let base = "https://verification.didit.me/v3";
    let Ok(mut destinations) = parse_destinations(list) else {
        return;
    };
    for destination in &destinations {
        if let Some(url) = &destination.url {
            assert!(!url.contains(['?', '#']), "{url}");
            let authority = url
                .split("://")
                .nth(1)
                .unwrap_or_default()
                .split('/')
                .next();
            assert!(!authority.unwrap_or_default().contains('@'), "{url}");
        }
    }
    let configured = destinations.first().map(|d| d.uuid.clone());
    select_destinations(
        &mut destinations,
        configured.as_deref(),
        "https://edge.example/admin",
    );
    let _ = parse_deliveries_page(page, "d");
    let window = DayWindow::of_lookup(Some(lookup), NOW * 1000);
    assert!(window.first_day <= window.last_day);
    assert!(window.last_day - window.first_day < didit_view::MAX_WINDOW_DAYS);
    let mut scan = SessionScan::new("s1", &destinations, window);
    let mut pages = 0;
    while scan.next_path().is_some() {
        pages += 1;
        if scan.handle_page(page, base).is_err() {
            break;
        }
    }
    assert!(pages <= didit_view::PAGE_BUDGET);
    let found = scan.finish();
    assert!(found.pages_read <= didit_view::PAGE_BUDGET);
    assert!(found.attempts.len() <= didit_view::MAX_ATTEMPTS);
}
