//! `didit-edge send`: sign and POST deliveries, one, many at once (a quick load check), or the
//! previous one again as Didit's retry would send it.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use clap::Args;
use serde_json::{json, Value};

use crate::config::{self, redact_url};
use crate::didit::{self, SignOptions};
use crate::error::{Exit, Failure, Result};
use crate::http::{self, Answer, Method};
use crate::sign::{PayloadArgs, SigningArgs, Source, PAYLOAD_FLAGS};

#[derive(Args, Debug)]
pub(crate) struct SendArgs {
    /// The webhook endpoint, e.g. http://127.0.0.1:8787/webhooks/didit (with --resend: the
    /// previous delivery's URL unless given)
    #[arg(value_name = "URL", required_unless_present = "resend")]
    pub(crate) url: Option<String>,
    /// Send this many deliveries (each generated afresh: new event_id, and a new session unless
    /// --session-id is given), then print the count per answer and the latencies
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub(crate) repeat: u32,
    /// How many deliveries are in flight at once with --repeat
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=256))]
    pub(crate) concurrency: u32,
    /// Send the previous delivery again as Didit's retry does: the same body (same event_id and
    /// timestamp), signed again with a fresh X-Timestamp; the edge answers `duplicate`
    #[arg(long, conflicts_with_all = PAYLOAD_FLAGS)]
    pub(crate) resend: bool,
    /// With --resend: as a resend from Didit's console or API instead (the same event_id with a
    /// fresh body timestamp and signatures), which the edge also recognises as a duplicate
    #[arg(long = "fresh-timestamp", requires = "resend")]
    pub(crate) fresh_timestamp: bool,
    /// Give up on a request after this long
    #[arg(long, default_value = "30s", value_parser = config::parse_duration, value_name = "DURATION")]
    pub(crate) timeout: Duration,
    /// Print the answer (or the --repeat summary) as one JSON object
    #[arg(long)]
    pub(crate) json: bool,
    /// Where the previous delivery is kept for --resend [default:
    /// $XDG_STATE_HOME/didit-edge/last.json, else ~/.local/state/didit-edge/last.json]
    #[arg(long = "state-file", value_name = "FILE")]
    pub(crate) state_file: Option<PathBuf>,
    // Flattened last: their help headings would otherwise swallow the options above.
    #[command(flatten)]
    pub(crate) payload: PayloadArgs,
    #[command(flatten)]
    pub(crate) signing: SigningArgs,
}

/// The previous delivery, as kept for `--resend` (never the secret).
#[derive(serde::Serialize, serde::Deserialize)]
struct LastDelivery {
    url: String,
    body_base64: String,
    options: SignOptions,
    sent_at: i64,
}

fn state_path(args: &SendArgs) -> PathBuf {
    if let Some(path) = &args.state_file {
        return path.clone();
    }
    if let Some(dir) = config::env_var("XDG_STATE_HOME") {
        return PathBuf::from(dir).join("didit-edge").join("last.json");
    }
    if let Some(home) = config::env_var("HOME") {
        return PathBuf::from(home)
            .join(".local")
            .join("state")
            .join("didit-edge")
            .join("last.json");
    }
    PathBuf::from(".didit-edge").join("last.json")
}

fn load_last(path: &PathBuf) -> Result<LastDelivery> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        Failure::usage(format!(
            "nothing to resend: no previous delivery in {} ({e})",
            path.display()
        ))
    })?;
    serde_json::from_str(&text).map_err(|e| {
        Failure::usage(format!(
            "{} is not a delivery this tool wrote: {e}",
            path.display()
        ))
    })
}

/// Keeps the delivery for `--resend`; a failure to do so is reported, not fatal.
fn save_last(path: &PathBuf, last: &LastDelivery) {
    let write = || -> std::io::Result<()> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)?;
        }
        let text = serde_json::to_string(last).map_err(std::io::Error::other)?;
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create(true).truncate(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt as _;
            options.mode(0o600); // the body holds (test) identity data
        }
        std::io::Write::write_all(&mut options.open(path)?, text.as_bytes())
    };
    if let Err(error) = write() {
        eprintln!(
            "didit-edge: warning: could not keep this delivery for --resend in {}: {error}",
            path.display()
        );
    }
}

/// A delivery to make: its body and how to sign it.
struct Plan {
    url: String,
    source: Source,
    secret: String,
    options: SignOptions,
}

/// One delivery's outcome.
enum Outcome {
    Answered(Answer),
    Unreachable(Failure),
}

impl Outcome {
    /// `200 accepted`, `401 invalid_signature`, `network error`.
    fn key(&self) -> String {
        match self {
            Self::Answered(answer) => {
                let json = answer.json();
                let word = json
                    .as_ref()
                    .and_then(|v| v.get("status").and_then(Value::as_str))
                    .or_else(|| {
                        json.as_ref()
                            .and_then(|v| v.pointer("/error/code").and_then(Value::as_str))
                    })
                    .unwrap_or("");
                format!("{} {word}", answer.status).trim().to_owned()
            }
            Self::Unreachable(_) => "network error".to_owned(),
        }
    }
}

impl Plan {
    fn deliver(&self, agent: &ureq::Agent) -> Result<(Vec<u8>, Outcome, Duration)> {
        let body = self.source.body()?;
        let headers = didit::sign(&body, &self.secret, &self.options)?;
        let started = Instant::now();
        let outcome = match http::request(agent, Method::Post, &self.url, &headers, Some(&body)) {
            Ok(answer) => Outcome::Answered(answer),
            Err(failure) if failure.exit == Exit::Network => Outcome::Unreachable(failure),
            Err(failure) => return Err(failure),
        };
        Ok((body, outcome, started.elapsed()))
    }
}

pub(crate) fn run(args: &SendArgs) -> Result<()> {
    let secret = args.signing.secret()?;
    let state = state_path(args);
    let plan = if args.resend {
        let last = load_last(&state)?;
        let mut body = STANDARD.decode(&last.body_base64).map_err(|e| {
            Failure::usage(format!("{} holds no readable body: {e}", state.display()))
        })?;
        if args.fresh_timestamp {
            let mut payload: Value = serde_json::from_slice(&body).map_err(|_| {
                Failure::usage("--fresh-timestamp needs a JSON body with a `timestamp`")
            })?;
            let Some(fields) = payload.as_object_mut() else {
                return Err(Failure::usage("--fresh-timestamp needs a JSON object body"));
            };
            fields.insert("timestamp".into(), json!(config::now_secs()));
            body = didit::encode(&payload);
        }
        let mut options = args.signing.options(Some(&last.options), args.payload.test);
        // A retry is signed again now: X-Timestamp is the time of this attempt.
        if options.x_timestamp.is_none() {
            options.x_timestamp = Some(config::now_secs());
        }
        Plan {
            url: args.url.clone().unwrap_or(last.url),
            source: Source::Fixed(body),
            secret,
            options,
        }
    } else {
        Plan {
            url: args.url.clone().unwrap_or_default(),
            source: Source::from_args(&args.payload)?,
            secret,
            options: args.signing.options(None, args.payload.test),
        }
    };
    config::check_url(&plan.url, &["http", "https"])?;
    let agent = http::agent(args.timeout);
    let keep = |body: &[u8]| {
        save_last(
            &state,
            &LastDelivery {
                url: plan.url.clone(),
                body_base64: STANDARD.encode(body),
                options: SignOptions {
                    x_timestamp: None,
                    ..plan.options.clone()
                },
                sent_at: config::now_secs(),
            },
        );
    };
    if args.repeat == 1 {
        let (body, outcome, latency) = plan.deliver(&agent)?;
        let answer = match outcome {
            Outcome::Answered(answer) => answer,
            Outcome::Unreachable(failure) => return Err(failure),
        };
        keep(&body);
        if answer.is_success() && !args.json {
            if let Some(hint) = lookup_hint(&body, &plan.url) {
                eprintln!("{hint}");
            }
        }
        return report_one(&answer, latency, args.json);
    }
    repeat(args, &plan, &agent, keep)
}

/// Where to find what became of an accepted event: the answer's `evt_…` alone is found only
/// while it is a dead letter, so a newcomer is told its subject, which always finds it.
fn lookup_hint(body: &[u8], url: &str) -> Option<String> {
    let payload: Value = serde_json::from_slice(body).ok()?;
    let text = |name: &str| {
        payload
            .get(name)
            .and_then(Value::as_str)
            .filter(|v| !v.is_empty())
    };
    let flag = match (text("session_id"), text("vendor_data")) {
        (Some(session), _) => format!("--session {session}"),
        (None, Some(vendor_data)) => format!("--vendor-data '{vendor_data}'"),
        (None, None) => return None,
    };
    // The console is served by the same worker: its URL is the webhook URL's origin.
    let origin = url
        .split_once("://")
        .map(|(scheme, rest)| format!("{scheme}://{}", rest.split('/').next().unwrap_or(rest)));
    let console = origin.map_or_else(String::new, |o| format!(" or in the console, {o}/console/"));
    Some(format!(
        "look it up with `didit-edge admin lookup {flag}`{console} (docs/console.md)"
    ))
}

fn report_one(answer: &Answer, latency: Duration, as_json: bool) -> Result<()> {
    let text = answer.text();
    if as_json {
        let parsed = answer.json().unwrap_or_else(|| Value::String(text.clone()));
        println!(
            "{}",
            json!({"status": answer.status, "answer": parsed, "latency_ms": latency.as_millis()})
        );
    } else {
        println!("{} {}", answer.status, text.trim());
    }
    if answer.is_success() {
        Ok(())
    } else {
        Err(Failure::remote(format!(
            "the receiver refused the delivery: {} {}",
            answer.status,
            answer.error_summary()
        )))
    }
}

/// The `p`-th percentile (nearest rank) of sorted latencies.
fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    #[allow(
        clippy::cast_possible_truncation,
        clippy::cast_sign_loss,
        clippy::cast_precision_loss
    )]
    let rank = ((p * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}

fn millis(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1000.0
}

/// `--repeat`: every delivery sent, `--concurrency` at a time, then the summary; the last body
/// sent is kept for `--resend`.
fn repeat(
    args: &SendArgs,
    plan: &Plan,
    agent: &ureq::Agent,
    keep: impl Fn(&[u8]) + Sync,
) -> Result<()> {
    let sent = send_all(args, plan, agent)?;
    if let Some(body) = &sent.last_body {
        keep(body);
    }
    let summary = Summary::of(&sent);
    if args.json {
        summary.print_json(args.concurrency);
    } else {
        summary.print_text(&plan.url, args.concurrency);
    }
    summary.verdict(&plan.url)
}

/// What `--repeat` sent.
struct Sent {
    /// Each delivery's [`Outcome::key`] and latency.
    results: Vec<(String, Duration)>,
    last_body: Option<Vec<u8>>,
    elapsed: Duration,
}

/// Sends `args.repeat` deliveries from `args.concurrency` threads. The first error that is not
/// the receiver's answer or a network failure stops them all, and is the result.
fn send_all(args: &SendArgs, plan: &Plan, agent: &ureq::Agent) -> Result<Sent> {
    let next = AtomicU32::new(0);
    let results: Mutex<Vec<(String, Duration)>> = Mutex::new(Vec::new());
    let first_error: Mutex<Option<Failure>> = Mutex::new(None);
    let last_body: Mutex<Option<Vec<u8>>> = Mutex::new(None);
    let started = Instant::now();
    std::thread::scope(|scope| {
        for _ in 0..args.concurrency.min(args.repeat) {
            scope.spawn(|| {
                while next.fetch_add(1, Ordering::Relaxed) < args.repeat {
                    match plan.deliver(agent) {
                        Ok((body, outcome, latency)) => {
                            if let Ok(mut results) = results.lock() {
                                results.push((outcome.key(), latency));
                            }
                            if let Ok(mut last) = last_body.lock() {
                                *last = Some(body);
                            }
                        }
                        Err(failure) => {
                            if let Ok(mut first) = first_error.lock() {
                                first.get_or_insert(failure);
                            }
                            // Stop every worker: the same error would repeat.
                            next.store(args.repeat, Ordering::Relaxed);
                        }
                    }
                }
            });
        }
    });
    let elapsed = started.elapsed();
    if let Some(failure) = first_error.into_inner().ok().flatten() {
        return Err(failure);
    }
    Ok(Sent {
        results: results.into_inner().unwrap_or_default(),
        last_body: last_body.into_inner().ok().flatten(),
        elapsed,
    })
}

/// The `--repeat` summary: how many answers of each kind, the latencies and the rate.
struct Summary {
    sent: usize,
    /// Deliveries per [`Outcome::key`].
    counts: BTreeMap<String, u32>,
    p50: Duration,
    p95: Duration,
    max: Duration,
    elapsed: Duration,
    /// Deliveries per second.
    rate: f64,
}

impl Summary {
    fn of(sent: &Sent) -> Self {
        let mut counts: BTreeMap<String, u32> = BTreeMap::new();
        for (key, _) in &sent.results {
            *counts.entry(key.clone()).or_default() += 1;
        }
        let mut latencies: Vec<Duration> = sent.results.iter().map(|(_, l)| *l).collect();
        latencies.sort();
        #[allow(clippy::cast_precision_loss)]
        let rate = sent.results.len() as f64 / sent.elapsed.as_secs_f64().max(1e-9);
        Self {
            sent: sent.results.len(),
            counts,
            p50: percentile(&latencies, 0.50),
            p95: percentile(&latencies, 0.95),
            max: latencies.last().copied().unwrap_or_default(),
            elapsed: sent.elapsed,
            rate,
        }
    }

    /// `--json`: one object.
    fn print_json(&self, concurrency: u32) {
        println!(
            "{}",
            json!({
                "sent": self.sent, "concurrency": concurrency,
                "seconds": self.elapsed.as_secs_f64(), "per_second": self.rate,
                "counts": self.counts,
                "latency_ms": {
                    "p50": millis(self.p50), "p95": millis(self.p95), "max": millis(self.max),
                },
            })
        );
    }

    /// A line of totals, a line per kind of answer, and a line of latencies.
    fn print_text(&self, url: &str, concurrency: u32) {
        let rate = self.rate;
        println!(
            "{} deliveries to {} in {:.2} s ({rate:.1}/s), concurrency {}",
            self.sent,
            redact_url(url),
            self.elapsed.as_secs_f64(),
            concurrency
        );
        let width = self.counts.keys().map(String::len).max().unwrap_or(0);
        for (key, count) in &self.counts {
            println!("  {key:<width$}  {count}");
        }
        println!(
            "latency  p50 {:.1} ms  p95 {:.1} ms  max {:.1} ms",
            millis(self.p50),
            millis(self.p95),
            millis(self.max)
        );
    }

    /// A failure if any delivery was refused (anything but a 2xx answer), else if any could
    /// not reach the receiver.
    fn verdict(&self, url: &str) -> Result<()> {
        let answered_ok = |key: &String| key.starts_with('2');
        let unreachable = self.counts.get("network error").copied().unwrap_or(0);
        let refused: u32 = self
            .counts
            .iter()
            .filter(|(key, _)| !answered_ok(key) && key.as_str() != "network error")
            .map(|(_, count)| *count)
            .sum();
        if refused > 0 {
            Err(Failure::remote(format!(
                "{refused} of {} deliveries were refused",
                self.sent
            )))
        } else if unreachable > 0 {
            Err(Failure::network(format!(
                "{unreachable} of {} deliveries could not reach {}",
                self.sent,
                redact_url(url)
            )))
        } else {
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn an_accepted_event_is_found_by_its_subject() {
        let session = br#"{"session_id":"5d2c-1","vendor_data":"user-42","status":"Approved"}"#;
        assert_eq!(
            lookup_hint(session, "http://127.0.0.1:8787/webhooks/didit").as_deref(),
            Some("look it up with `didit-edge admin lookup --session 5d2c-1` or in the console, http://127.0.0.1:8787/console/ (docs/console.md)")
        );
        let user = br#"{"vendor_data":"user-42","webhook_type":"user.status.updated"}"#;
        assert!(lookup_hint(user, "https://edge.example/webhooks/didit")
            .is_some_and(|hint| hint.contains("--vendor-data 'user-42'")
                && hint.contains("https://edge.example/console/")));
        assert_eq!(lookup_hint(b"not json", "http://x/"), None);
        assert_eq!(lookup_hint(br#"{"transaction_id":"t"}"#, "http://x/"), None);
    }

    use super::*;

    #[test]
    fn percentiles_are_nearest_rank() {
        let sorted: Vec<Duration> = (1..=20).map(Duration::from_millis).collect();
        assert_eq!(percentile(&sorted, 0.5), Duration::from_millis(10));
        assert_eq!(percentile(&sorted, 0.95), Duration::from_millis(19));
        assert_eq!(percentile(&sorted, 1.0), Duration::from_millis(20));
        assert_eq!(percentile(&[], 0.5), Duration::ZERO);
        assert_eq!(percentile(&sorted[..1], 0.95), Duration::from_millis(1));
    }

    #[test]
    fn outcomes_are_keyed_by_status_and_answer() {
        let answer = |status, body: &str| {
            Outcome::Answered(Answer {
                status,
                content_type: None,
                body: body.as_bytes().to_vec(),
            })
        };
        assert_eq!(
            answer(200, r#"{"status":"accepted","id":"evt_1"}"#).key(),
            "200 accepted"
        );
        assert_eq!(
            answer(
                401,
                r#"{"error":{"code":"invalid_signature","message":"x"}}"#
            )
            .key(),
            "401 invalid_signature"
        );
        assert_eq!(answer(502, "bad gateway").key(), "502");
        assert_eq!(
            Outcome::Unreachable(Failure::network("x")).key(),
            "network error"
        );
    }
}
