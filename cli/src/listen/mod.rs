//! `didit-edge listen`: a local origin on 127.0.0.1 that verifies each request's Standard
//! Webhooks signature, prints one line per CloudEvent, and answers as told (to try retries,
//! failover and dead letters), or passes each verified event on to your own app.

mod verification;

use std::collections::HashMap;
use std::io::Read as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use clap::Args;
use didit_edge_core::secret::SigningSecrets;
use didit_edge_core::time::to_rfc3339;
use serde_json::{json, Value};

use crate::config::{self, redact_url, Lookup};
use crate::error::{Failure, Result};
use crate::http::{self, cell, Method};
use verification::{verify, Refusal};

/// Largest request body read.
const MAX_BODY_BYTES: u64 = 8 * 1024 * 1024;

#[derive(Args, Debug)]
pub(crate) struct ListenArgs {
    /// The port on 127.0.0.1 (0: any free port, printed at start)
    #[arg(long, default_value_t = 8788)]
    pub(crate) port: u16,
    /// The origin signing secret, whsec_… (a comma-separated list during a rotation: any may
    /// sign) [default: $ORIGIN_SIGNING_SECRET, else ORIGIN_SIGNING_SECRET in ./.dev.vars]
    #[arg(long, value_name = "WHSEC")]
    pub(crate) secret: Option<String>,
    /// Answer every verified event with this status instead of 204 (with --fail-first, only the
    /// first N)
    #[arg(long, value_name = "STATUS", value_parser = clap::value_parser!(u16).range(300..=599))]
    pub(crate) fail: Option<u16>,
    /// Fail only the first N verified events (with --fail's status, default 500), then accept
    #[arg(long = "fail-first", value_name = "N")]
    pub(crate) fail_first: Option<u64>,
    /// Add `webhook-delivery: abort-message` to failing answers: the edge stops retrying and
    /// makes the event a dead letter at once (fails with 500 unless --fail says otherwise)
    #[arg(long)]
    pub(crate) abort: bool,
    /// Wait this long before answering each event (e.g. 3s, to exceed an origin's timeout_ms)
    #[arg(long, value_name = "DURATION", value_parser = config::parse_duration)]
    pub(crate) slow: Option<Duration>,
    /// Pass each verified event on to your app (the same body, webhook-* and traceparent
    /// headers) and answer with its status and body
    #[arg(long, value_name = "URL")]
    pub(crate) forward: Option<String>,
    /// Refuse webhook-timestamps further than this from now
    #[arg(long, value_name = "DURATION", default_value = "5m", value_parser = config::parse_duration)]
    pub(crate) tolerance: Duration,
    /// Print each event's whole JSON after its line
    #[arg(short, long)]
    pub(crate) verbose: bool,
}

/// What the listener shares between requests.
struct State {
    secrets: SigningSecrets,
    secret_count: usize,
    fail: Option<u16>,
    fail_first: Option<u64>,
    abort: bool,
    slow: Option<Duration>,
    forward: Option<String>,
    tolerance_secs: i64,
    verbose: bool,
    verified: AtomicU64,
    attempts: Mutex<HashMap<String, u32>>,
    agent: ureq::Agent,
}

fn header<'r>(request: &'r tiny_http::Request, name: &str) -> Option<&'r str> {
    request
        .headers()
        .iter()
        .find(|h| h.field.as_str().as_str().eq_ignore_ascii_case(name))
        .map(|h| h.value.as_str())
}

type Reply = tiny_http::Response<std::io::Cursor<Vec<u8>>>;

fn reply(status: u16, content_type: &str, body: Vec<u8>, extra: &[(&str, &str)]) -> Reply {
    let mut response = tiny_http::Response::from_data(body).with_status_code(status);
    for (name, value) in [("Content-Type", content_type)].iter().chain(extra) {
        if let Ok(header) = tiny_http::Header::from_bytes(name.as_bytes(), value.as_bytes()) {
            response.add_header(header);
        }
    }
    response
}

fn json_reply(status: u16, value: &Value, extra: &[(&str, &str)]) -> Reply {
    reply(
        status,
        "application/json",
        value.to_string().into_bytes(),
        extra,
    )
}

fn text(value: &Value, pointer: &str) -> String {
    cell(value.pointer(pointer))
}

/// The line printed for each event.
pub(crate) fn event_line(event: &Value, webhook_id: &str, now: i64) -> String {
    let status = match event.pointer("/data/status") {
        Some(Value::String(s)) => s.clone(),
        _ => text(event, "/data/status_code"),
    };
    let mut line = format!(
        "{}  {}  {}  {}  risk={}  {}",
        to_rfc3339(now),
        text(event, "/type"),
        text(event, "/subject"),
        status,
        text(event, "/data/risk/level"),
        webhook_id
    );
    if event.pointer("/data/test") == Some(&Value::Bool(true)) {
        line.push_str("  test");
    }
    line
}

/// The Standard Webhooks headers of a request, as sent.
struct WebhookHeaders {
    id: Option<String>,
    timestamp: Option<String>,
    signature: Option<String>,
}

impl WebhookHeaders {
    fn of(request: &tiny_http::Request) -> Self {
        Self {
            id: header(request, "webhook-id").map(str::to_owned),
            timestamp: header(request, "webhook-timestamp").map(str::to_owned),
            signature: header(request, "webhook-signature").map(str::to_owned),
        }
    }

    /// The `webhook-id` as a line shows it.
    fn shown_id(&self) -> String {
        self.id.clone().unwrap_or_else(|| "-".into())
    }

    fn verify(&self, state: &State, body: &[u8], now: i64) -> std::result::Result<(), Refusal> {
        verify(
            &state.secrets,
            self.id.as_deref(),
            self.timestamp.as_deref(),
            self.signature.as_deref(),
            body,
            now,
            state.tolerance_secs,
        )
    }
}

impl State {
    /// Counts a verified delivery of `webhook_id`: its attempt number, 1 the first time.
    fn count_attempt(&self, webhook_id: &str) -> u32 {
        self.attempts.lock().map_or(1, |mut attempts| {
            let count = attempts.entry(webhook_id.to_owned()).or_insert(0);
            *count += 1;
            *count
        })
    }

    /// Counts a verified event, and whether it is failed on purpose (`--fail`, `--fail-first`,
    /// `--abort`).
    fn fails_next(&self) -> bool {
        let number = self.verified.fetch_add(1, Ordering::SeqCst);
        match (self.fail, self.fail_first) {
            (_, Some(first)) => number < first,
            (Some(_), None) => true,
            (None, None) => self.abort,
        }
    }

    /// The answer to an event failed on purpose, with `--abort`'s header if given.
    fn failing_reply(&self) -> (u16, Reply) {
        let status = self.fail.unwrap_or(500);
        let mut extra = Vec::new();
        if self.abort {
            extra.push(("webhook-delivery", "abort-message"));
        }
        let response = json_reply(
            status,
            &json!({"error": "failing_on_purpose", "message": "didit-edge listen was told to fail"}),
            &extra,
        );
        (status, response)
    }
}

/// Answers one request: a health probe, a delivery, or 405.
fn handle(state: &State, request: tiny_http::Request) {
    let now = config::now_secs();
    match request.method() {
        tiny_http::Method::Get | tiny_http::Method::Head => probe(state, request, now),
        tiny_http::Method::Post => deliver(state, request, now),
        _ => {
            let _ = request.respond(json_reply(
                405,
                &json!({"error": "method_not_allowed"}),
                &[("Allow", "GET, POST")],
            ));
        }
    }
}

/// A health probe (`health_url`): failing with --fail, unless only the first few fail.
fn probe(state: &State, request: tiny_http::Request, now: i64) {
    let status = match (state.fail, state.fail_first) {
        (Some(status), None) => status,
        _ => 200,
    };
    if state.verbose {
        println!("{}  GET {} → {status}", to_rfc3339(now), request.url());
    }
    let _ = request.respond(reply(status, "text/plain", b"ok\n".to_vec(), &[]));
}

/// A delivery: refused unless it verifies, then answered as the flags say, with its line.
fn deliver(state: &State, mut request: tiny_http::Request, now: i64) {
    let body = match read_body(&mut request) {
        Ok(Some(body)) => body,
        Ok(None) => {
            let _ = request.respond(json_reply(413, &json!({"error": "payload_too_large"}), &[]));
            return;
        }
        Err(error) => {
            eprintln!("didit-edge: could not read a request: {error}");
            return;
        }
    };
    let headers = WebhookHeaders::of(&request);
    let shown_id = headers.shown_id();
    if let Err(refusal) = headers.verify(state, &body, now) {
        refuse(request, &refusal, &shown_id, now);
        return;
    }
    let attempt = state.count_attempt(&shown_id);
    let Ok(event) = serde_json::from_slice::<Value>(&body) else {
        println!(
            "{}  verified, but not JSON  {shown_id}  → 400",
            to_rfc3339(now)
        );
        let _ = request.respond(json_reply(400, &json!({"error": "not_json"}), &[]));
        return;
    };
    let (status, response) = answer(state, &request, &headers, &body);
    let mut line = event_line(&event, &shown_id, now);
    if attempt > 1 {
        line.push_str(&format!("  attempt {attempt}"));
    }
    println!("{line}  → {status}");
    if state.verbose {
        if let Ok(pretty) = serde_json::to_string_pretty(&event) {
            println!("{pretty}");
        }
    }
    let _ = request.respond(response);
}

/// The request's body; `None` when it is larger than [`MAX_BODY_BYTES`].
fn read_body(request: &mut tiny_http::Request) -> std::io::Result<Option<Vec<u8>>> {
    let mut body = Vec::new();
    request
        .as_reader()
        .take(MAX_BODY_BYTES + 1)
        .read_to_end(&mut body)?;
    Ok((body.len() as u64 <= MAX_BODY_BYTES).then_some(body))
}

/// Prints the refusal's line and answers 401 with its code.
fn refuse(request: tiny_http::Request, refusal: &Refusal, shown_id: &str, now: i64) {
    println!(
        "{}  refused  {}  {}  → 401",
        to_rfc3339(now),
        refusal.message(),
        shown_id
    );
    let _ = request.respond(json_reply(
        401,
        &json!({"error": refusal.code(), "message": refusal.message()}),
        &[],
    ));
}

/// The answer to a verified event: failed on purpose, the app's answer with `--forward`, or 204;
/// after `--slow`'s wait.
fn answer(
    state: &State,
    request: &tiny_http::Request,
    headers: &WebhookHeaders,
    body: &[u8],
) -> (u16, Reply) {
    let failing = state.fails_next();
    if let Some(delay) = state.slow {
        std::thread::sleep(delay);
    }
    if failing {
        state.failing_reply()
    } else if let Some(url) = &state.forward {
        forward(&state.agent, url, request, headers, body)
    } else {
        (204, reply(204, "text/plain", Vec::new(), &[]))
    }
}

/// Passes a verified event on to the app at `url` (the same body, the webhook-* headers and the
/// trace context) and answers with the app's status and body, or 502 when it cannot be reached.
fn forward(
    agent: &ureq::Agent,
    url: &str,
    request: &tiny_http::Request,
    sent: &WebhookHeaders,
    body: &[u8],
) -> (u16, Reply) {
    let headers: Vec<(String, String)> = [
        ("content-type", header(request, "content-type")),
        ("webhook-id", sent.id.as_deref()),
        ("webhook-timestamp", sent.timestamp.as_deref()),
        ("webhook-signature", sent.signature.as_deref()),
        // The edge's W3C trace context, so the app's spans join the delivery's trace.
        ("traceparent", header(request, "traceparent")),
        ("tracestate", header(request, "tracestate")),
    ]
    .into_iter()
    .filter_map(|(name, value)| Some((name.to_owned(), value?.to_owned())))
    .collect();
    match http::request(agent, Method::Post, url, &headers, Some(body)) {
        Ok(answer) => {
            let content_type = answer
                .content_type
                .clone()
                .unwrap_or_else(|| "text/plain".into());
            (
                answer.status,
                reply(answer.status, &content_type, answer.body, &[]),
            )
        }
        Err(failure) => {
            eprintln!("didit-edge: forwarding failed: {failure}");
            (
                502,
                json_reply(502, &json!({"error": "forward_failed"}), &[]),
            )
        }
    }
}

pub(crate) fn run(args: &ListenArgs) -> Result<()> {
    let lookup = Lookup {
        flag: args.secret.as_deref(),
        env: &["ORIGIN_SIGNING_SECRET"],
        dev_vars: &["ORIGIN_SIGNING_SECRET"],
    };
    let list = lookup.find().ok_or_else(|| {
        Failure::usage(format!(
            "no origin signing secret (whsec_…): pass one with {}",
            lookup.sources("--secret")
        ))
    })?;
    let secrets = SigningSecrets::parse(&list)
        .map_err(|e| Failure::usage(format!("the origin signing secret {e}")))?;
    if let Some(forward) = &args.forward {
        config::check_url(forward, &["http", "https"])?;
    }
    let server = tiny_http::Server::http(("127.0.0.1", args.port))
        .map_err(|e| Failure::network(format!("cannot listen on 127.0.0.1:{}: {e}", args.port)))?;
    let port = server
        .server_addr()
        .to_ip()
        .map_or(args.port, |addr| addr.port());
    let secret_count = secrets.iter().count();
    let state = Arc::new(State {
        secrets,
        secret_count,
        fail: args.fail,
        fail_first: args.fail_first,
        abort: args.abort,
        slow: args.slow,
        forward: args.forward.clone(),
        tolerance_secs: i64::try_from(args.tolerance.as_secs()).unwrap_or(i64::MAX),
        verbose: args.verbose,
        verified: AtomicU64::new(0),
        attempts: Mutex::new(HashMap::new()),
        agent: http::agent(Duration::from_secs(60)),
    });
    let mut mode = match (args.fail, args.fail_first, args.abort) {
        (_, Some(n), _) => format!(", failing the first {n} events"),
        (Some(status), None, _) => format!(", failing every event with {status}"),
        (None, None, true) => ", aborting every event".to_owned(),
        (None, None, false) => String::new(),
    };
    if let Some(forward) = &args.forward {
        mode.push_str(&format!(", forwarding to {}", redact_url(forward)));
    }
    println!(
        "listening on http://127.0.0.1:{port} (Standard Webhooks, {} secret{}{mode})",
        state.secret_count,
        if state.secret_count == 1 { "" } else { "s" }
    );
    loop {
        let request = server
            .recv()
            .map_err(|e| Failure::network(format!("the listener stopped: {e}")))?;
        let state = Arc::clone(&state);
        std::thread::spawn(move || handle(&state, request));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_line_names_type_subject_status_risk_and_id() {
        let event = json!({"type": "me.didit.status.updated", "subject": "s-1",
                           "data": {"status": "Declined", "status_code": "declined",
                                    "risk": {"level": "high"}, "test": true}});
        assert_eq!(
            event_line(&event, "evt_1", 0),
            "1970-01-01T00:00:00Z  me.didit.status.updated  s-1  Declined  risk=high  evt_1  test"
        );
        let bare = json!({"type": "me.didit.business.data.updated", "subject": "acme",
                          "data": {"status": null, "status_code": null}});
        assert!(event_line(&bare, "evt_2", 0).contains("acme  -  risk=-  evt_2"));
    }
}
