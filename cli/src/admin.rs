//! `didit-edge admin`: the worker's admin API (origins and their breakers, dead letters,
//! replay, erasure of a subject) as readable tables, or as the API's own JSON. Each answer is
//! read into the core's type for it (`didit_edge_core::admin`), the one the worker writes.

use std::fmt::Display;
use std::time::Duration;

use clap::{Args, Subcommand};
use didit_edge_core::admin::{
    BulkReplay, DeadLetter, DeadLetterPage, ErasureReport, ErasureRequest, GapView, OriginsView,
    ReconciliationStatus, Replayed,
};
use didit_edge_core::health::BreakerState;
use didit_edge_core::time::to_rfc3339;
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::{json, Value};

use crate::config::{self, redact_url, Lookup};
use crate::error::{Failure, Result, EXIT_CODES};
use crate::http::{self, Answer, Method};

/// The base URL of a local `wrangler dev`.
pub(crate) const LOCAL_URL: &str = "http://127.0.0.1:8787";
/// Most calls one `replay --all` makes (each replays up to 40 subjects).
const MAX_REPLAY_CALLS: u32 = 10_000;

#[derive(Args, Debug)]
pub(crate) struct AdminArgs {
    /// The worker's base URL [default: $DIDIT_EDGE_URL, else http://127.0.0.1:8787]. The token
    /// comes from $ADMIN_TOKEN, else ADMIN_TOKEN in ./.dev.vars
    #[arg(long, global = true, value_name = "URL")]
    pub(crate) url: Option<String>,
    /// Print the API's JSON instead of a table
    #[arg(long, global = true)]
    pub(crate) json: bool,
    /// Give up on a call after this long
    #[arg(long, global = true, default_value = "30s", value_parser = config::parse_duration, value_name = "DURATION")]
    pub(crate) timeout: Duration,
    #[command(subcommand)]
    pub(crate) command: AdminCommand,
}

#[derive(Subcommand, Debug)]
pub(crate) enum AdminCommand {
    /// Every origin with its consumer, failover priority, weight and circuit breaker
    #[command(after_help = EXIT_CODES)]
    Origins,
    /// Dead letters of every subject, oldest first, with their last attempt
    #[command(after_help = EXIT_CODES)]
    DeadLetters(DeadLetterArgs),
    /// Where reconciliation with Didit's API stands: checkpoint, last run, next run
    #[command(after_help = EXIT_CODES)]
    Reconciliation,
    /// Put dead letters back in line: one event's (ID), or all of them (--all)
    #[command(after_help = EXIT_CODES)]
    Replay(ReplayArgs),
    /// Erase what is stored about one subject (a data-subject request): payloads, pending
    /// deliveries, dead letters, stream statuses. Ids stay for deduplication
    #[command(after_help = EXIT_CODES)]
    Erase(EraseArgs),
}

#[derive(Args, Debug)]
pub(crate) struct EraseArgs {
    /// The subject's kind
    #[arg(value_parser = ["session", "business_session", "user", "business", "transaction"])]
    pub(crate) kind: String,
    /// Its id: the session id, or for a user the vendor_data (any text; it is percent-encoded)
    #[arg(value_name = "ID")]
    pub(crate) id: String,
    /// Confirms the erasure, which cannot be undone (required)
    #[arg(long)]
    pub(crate) yes: bool,
}

#[derive(Args, Debug)]
pub(crate) struct DeadLetterArgs {
    /// Only this consumer's
    #[arg(long)]
    pub(crate) consumer: Option<String>,
    /// At most this many per page (1–500)
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u32).range(1..=500))]
    pub(crate) limit: u32,
    /// Start after this cursor (the `next` of the previous page)
    #[arg(long, value_name = "CURSOR", conflicts_with = "all")]
    pub(crate) after: Option<u64>,
    /// Follow every page
    #[arg(long)]
    pub(crate) all: bool,
}

#[derive(Args, Debug)]
pub(crate) struct ReplayArgs {
    /// The event id (evt_…) whose dead copies are replayed
    #[arg(
        value_name = "ID",
        required_unless_present = "all",
        conflicts_with = "all"
    )]
    pub(crate) id: Option<String>,
    /// Replay every dead letter (calling again while some remain)
    #[arg(long)]
    pub(crate) all: bool,
    /// With --all: only this consumer's
    #[arg(long, requires = "all")]
    pub(crate) consumer: Option<String>,
}

struct Client {
    agent: ureq::Agent,
    base: String,
    headers: Vec<(String, String)>,
}

impl Client {
    fn new(args: &AdminArgs) -> Result<Self> {
        let base = args
            .url
            .clone()
            .or_else(|| config::env_var("DIDIT_EDGE_URL"))
            .unwrap_or_else(|| LOCAL_URL.to_owned());
        config::check_url(&base, &["http", "https"])?;
        let lookup = Lookup {
            flag: None,
            env: &["ADMIN_TOKEN"],
            dev_vars: &["ADMIN_TOKEN"],
        };
        let token = lookup.find().ok_or_else(|| {
            Failure::usage(format!(
                "no admin token: set $ADMIN_TOKEN or ADMIN_TOKEN in ./{}",
                config::DEV_VARS
            ))
        })?;
        Ok(Self {
            agent: http::agent(args.timeout),
            base: base.trim_end_matches('/').to_owned(),
            headers: vec![
                ("Authorization".into(), format!("Bearer {}", token.trim())),
                ("Accept".into(), "application/json".into()),
            ],
        })
    }

    /// Calls the API and reads its answer as a `T`; a non-2xx answer is the remote's error.
    fn call<T: DeserializeOwned>(&self, method: Method, path: &str) -> Result<T> {
        let url = format!("{}{path}", self.base);
        let answer = http::request(&self.agent, method, &url, &self.headers, None)?;
        Self::read(&url, &answer)
    }

    /// POSTs `body` as JSON and reads the answer as a `T`; a non-2xx answer is the remote's
    /// error.
    fn post_json<T: DeserializeOwned>(&self, path: &str, body: &impl Serialize) -> Result<T> {
        let url = format!("{}{path}", self.base);
        let mut headers = self.headers.clone();
        headers.push(("Content-Type".into(), "application/json".into()));
        let body = serde_json::to_string(body).map_err(|error| {
            Failure::usage(format!("the request could not be written: {error}"))
        })?;
        let answer = http::request(
            &self.agent,
            Method::Post,
            &url,
            &headers,
            Some(body.as_bytes()),
        )?;
        Self::read(&url, &answer)
    }

    fn read<T: DeserializeOwned>(url: &str, answer: &Answer) -> Result<T> {
        if !answer.is_success() {
            return Err(Failure::remote(format!(
                "{} answered {} {}",
                redact_url(url),
                answer.status,
                answer.error_summary()
            )));
        }
        let json = answer.json().ok_or_else(|| {
            Failure::remote(format!(
                "{} answered {} with something that is not JSON; is this a didit-edge worker?",
                redact_url(url),
                answer.status
            ))
        })?;
        serde_json::from_value(json).map_err(|error| {
            Failure::remote(format!(
                "{} answered {} with JSON this CLI does not read ({error}); are the worker and the CLI the same version?",
                redact_url(url),
                answer.status
            ))
        })
    }
}

/// An answer as the API's JSON, on one line.
fn print_json(view: &impl Serialize) {
    // Through a `Value`, so keys print in the order they always have (sorted).
    match serde_json::to_value(view) {
        Ok(value) => println!("{value}"),
        Err(error) => eprintln!("the answer could not be printed as JSON: {error}"),
    }
}

/// A field as a table cell: `-` for nothing.
fn cell(value: Option<impl Display>) -> String {
    value.map_or_else(|| "-".into(), |value| value.to_string())
}

/// A value's name on the wire (`sweep_done`), as a cell.
fn wire_name(value: &impl Serialize) -> String {
    match serde_json::to_value(value) {
        Ok(Value::String(name)) => name,
        Ok(other) => other.to_string(),
        Err(_) => "-".into(),
    }
}

/// Percent-encodes a query value or path segment.
fn encode(text: &str) -> String {
    http::percent_encode(text, b"")
}

/// Left-aligned columns two spaces apart, headers first.
pub(crate) fn table(headers: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let line = |cells: Vec<&str>| {
        let mut out = String::new();
        for (index, (cell, width)) in cells.iter().zip(&widths).enumerate() {
            if index + 1 == cells.len() {
                out.push_str(cell);
            } else {
                out.push_str(&format!("{cell:<width$}  "));
            }
        }
        out.trim_end().to_owned()
    };
    let mut out = vec![line(headers.to_vec())];
    out.extend(
        rows.iter()
            .map(|row| line(row.iter().map(String::as_str).collect())),
    );
    out.join("\n")
}

/// A moment in Unix ms as RFC 3339.
fn ms_time(ms: i64) -> String {
    to_rfc3339(ms.div_euclid(1000))
}

/// A breaker as a few words.
pub(crate) fn health(breaker: &BreakerState) -> String {
    match *breaker {
        BreakerState::Closed {
            consecutive_failures: 0,
        } => "closed".into(),
        BreakerState::Closed {
            consecutive_failures: 1,
        } => "closed (1 failure)".into(),
        BreakerState::Closed {
            consecutive_failures: n,
        } => format!("closed ({n} failures)"),
        BreakerState::Open { until_ms, .. } => format!("open until {}", ms_time(until_ms)),
        BreakerState::HalfOpen { .. } => "half-open".into(),
    }
}

fn reconciliation(client: &Client, as_json: bool) -> Result<()> {
    let answer: ReconciliationStatus = client.call(Method::Get, "/admin/reconciliation")?;
    if as_json {
        print_json(&answer);
        return Ok(());
    }
    let ReconciliationStatus::On(status) = answer else {
        println!("reconciliation is off (DIDIT_API_KEY is not set)");
        return Ok(());
    };
    let run = status.last_run.as_ref();
    let rows = vec![
        vec!["checkpoint".into(), cell(status.checkpoint.as_ref())],
        vec![
            "sweep".into(),
            status.sweep.as_ref().map_or_else(
                || "none under way".into(),
                |sweep| {
                    format!(
                        "{} sessions from offset {}, started {}",
                        sweep.session_kind, sweep.offset, sweep.started_at
                    )
                },
            ),
        ],
        vec!["last run".into(), cell(run.map(|run| &run.finished_at))],
        vec![
            "  checked".into(),
            format!(
                "{} sessions on {} pages, {} requests",
                cell(run.map(|run| run.sessions_checked)),
                cell(run.map(|run| run.pages)),
                cell(run.map(|run| run.requests))
            ),
        ],
        vec![
            "  found".into(),
            format!(
                "{} gaps, {} events injected",
                cell(run.map(|run| run.gaps_found)),
                cell(run.map(|run| run.events_injected))
            ),
        ],
        vec!["  ended".into(), cell(run.map(|run| wire_name(&run.ended)))],
        vec![
            "  errors".into(),
            run.map(|run| &run.errors)
                .filter(|errors| !errors.is_empty())
                .map_or_else(|| "none".into(), |errors| errors.join("; ")),
        ],
        vec!["next run".into(), cell(status.next_run_at.as_ref())],
        vec!["gaps waiting".into(), status.gaps_waiting.to_string()],
        vec![
            "gaps set aside".into(),
            format!(
                "{} ({} given up)",
                status.gaps_set_aside, status.gaps_given_up
            ),
        ],
    ];
    println!("{}", table(&["", ""], &rows));
    let gaps: Vec<Vec<String>> = status.set_aside.iter().map(set_aside_row).collect();
    if !gaps.is_empty() {
        println!();
        println!(
            "{}",
            table(
                &["SESSION", "GAP", "STATUS", "FAILURE", "HTTP", "TRIES", "NEXT TRY"],
                &gaps
            )
        );
    }
    Ok(())
}

/// One set-aside gap as a row: which session, why, and when it is tried again.
fn set_aside_row(gap: &GapView) -> Vec<String> {
    vec![
        gap.session_id.clone(),
        gap.gap.clone(),
        gap.status.clone(),
        gap.failure.clone(),
        cell(gap.http_status),
        gap.tries.to_string(),
        gap.next_try_at
            .clone()
            .unwrap_or_else(|| "given up".to_owned()),
    ]
}

fn origins(client: &Client, as_json: bool) -> Result<()> {
    let answer: OriginsView = client.call(Method::Get, "/admin/origins")?;
    if as_json {
        print_json(&answer);
        return Ok(());
    }
    let rows: Vec<Vec<String>> = answer
        .origins
        .iter()
        .map(|o| {
            vec![
                o.name.clone(),
                o.consumer.clone(),
                o.priority.to_string(),
                o.weight.to_string(),
                cell(o.region.as_ref()),
                cell(o.cloud.as_ref()),
                format!("{} ms", o.timeout_ms),
                if o.probed { "yes" } else { "no" }.into(),
                health(&o.health),
            ]
        })
        .collect();
    println!(
        "{}",
        table(
            &[
                "NAME", "CONSUMER", "PRIORITY", "WEIGHT", "REGION", "CLOUD", "TIMEOUT", "PROBED",
                "HEALTH"
            ],
            &rows
        )
    );
    Ok(())
}

fn dead_letter_row(letter: &DeadLetter) -> Vec<String> {
    let last = letter.attempts.last().map_or_else(
        || "-".into(),
        |a| {
            format!(
                "{} {} {}",
                cell(a.origin.as_ref()),
                cell(a.status),
                cell(a.error.as_ref())
            )
        },
    );
    vec![
        letter.id.clone(),
        letter.consumer.clone(),
        letter.subject.clone(),
        letter.webhook_type.clone(),
        letter.reason.clone(),
        ms_time(letter.dead_at_ms),
        letter.attempts.len().to_string(),
        last,
    ]
}

fn dead_letters(client: &Client, args: &DeadLetterArgs, as_json: bool) -> Result<()> {
    let mut letters: Vec<DeadLetter> = Vec::new();
    let mut after = args.after;
    let (next, total) = loop {
        let mut query = format!("limit={}", args.limit);
        if let Some(consumer) = &args.consumer {
            query.push_str(&format!("&consumer={}", encode(consumer)));
        }
        if let Some(after) = after {
            query.push_str(&format!("&after={after}"));
        }
        let page: DeadLetterPage =
            client.call(Method::Get, &format!("/admin/dead-letters?{query}"))?;
        letters.extend(page.dead_letters);
        match page.next {
            Some(cursor) if args.all && after != Some(cursor) => after = Some(cursor),
            next => break (next, page.total),
        }
    };
    if as_json {
        print_json(&DeadLetterPage {
            dead_letters: letters,
            next,
            total,
        });
        return Ok(());
    }
    let rows: Vec<Vec<String>> = letters.iter().map(dead_letter_row).collect();
    if !rows.is_empty() {
        println!(
            "{}",
            table(
                &[
                    "ID",
                    "CONSUMER",
                    "SUBJECT",
                    "TYPE",
                    "REASON",
                    "DEAD AT",
                    "ATTEMPTS",
                    "LAST ATTEMPT"
                ],
                &rows
            )
        );
    }
    println!("{} of {total} dead letters", rows.len());
    if let Some(cursor) = next {
        println!("more: didit-edge admin dead-letters --after {cursor}  (or --all)");
    }
    Ok(())
}

fn replay(client: &Client, args: &ReplayArgs, as_json: bool) -> Result<()> {
    if let Some(id) = &args.id {
        let answer: Replayed = client.call(
            Method::Post,
            &format!("/admin/dead-letters/{}/replay", encode(id)),
        )?;
        if as_json {
            print_json(&answer);
            return Ok(());
        }
        for copy in &answer.replayed {
            println!("replayed {} for consumer {}", copy.id, copy.consumer);
        }
        return Ok(());
    }
    let query = args
        .consumer
        .as_ref()
        .map(|c| format!("?consumer={}", encode(c)))
        .unwrap_or_default();
    let (mut replayed, mut remaining, mut calls) = (0u64, 0u64, 0u32);
    while calls < MAX_REPLAY_CALLS {
        let answer: BulkReplay =
            client.call(Method::Post, &format!("/admin/dead-letters/replay{query}"))?;
        calls += 1;
        replayed += answer.replayed;
        remaining = answer.remaining;
        if remaining == 0 || answer.replayed == 0 {
            break;
        }
    }
    if as_json {
        println!(
            "{}",
            json!({"replayed": replayed, "remaining": remaining, "calls": calls})
        );
    } else {
        let noun = if replayed == 1 { "letter" } else { "letters" };
        println!("replayed {replayed} dead {noun} ({remaining} remaining)");
    }
    Ok(())
}

fn erase(client: &Client, args: &EraseArgs, as_json: bool) -> Result<()> {
    if !args.yes {
        return Err(Failure::usage(
            "erasure cannot be undone: pass --yes to erase this subject's data".to_owned(),
        ));
    }
    // The id rides in the body: no URL normalisation can change which subject is erased.
    let answer: ErasureReport = client.post_json(
        "/admin/erasures",
        &ErasureRequest {
            subject_kind: args.kind.as_str().into(),
            subject_id: args.id.as_str().into(),
        },
    )?;
    if as_json {
        print_json(&answer);
        return Ok(());
    }
    let erased = &answer.erased;
    println!(
        "erased {} events of this {}: {} payloads, {} pending deliveries, {} dead letters, {} stream statuses",
        erased.events,
        answer.subject_kind,
        erased.payloads,
        erased.pending_deliveries,
        erased.dead_letters,
        erased.statuses,
    );
    if erased.reconciliation_sessions > 0 {
        println!("reconciliation forgot the session and will not fetch it again");
    }
    println!("kept: {}", answer.kept);
    Ok(())
}

pub(crate) fn run(args: &AdminArgs) -> Result<()> {
    let client = Client::new(args)?;
    match &args.command {
        AdminCommand::Origins => origins(&client, args.json),
        AdminCommand::DeadLetters(list) => dead_letters(&client, list, args.json),
        AdminCommand::Reconciliation => reconciliation(&client, args.json),
        AdminCommand::Replay(replay_args) => replay(&client, replay_args, args.json),
        AdminCommand::Erase(erase_args) => erase(&client, erase_args, args.json),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_align_columns() {
        let rows = vec![
            vec!["a".to_owned(), "long value".to_owned(), "x".to_owned()],
            vec!["bbbb".to_owned(), "v".to_owned(), "y".to_owned()],
        ];
        assert_eq!(
            table(&["H1", "H2", "H3"], &rows),
            "H1    H2          H3\na     long value  x\nbbbb  v           y"
        );
    }

    /// `wire` read as the CLI reads an answer.
    fn read<T: DeserializeOwned>(wire: Value) -> T {
        serde_json::from_value(wire).expect("the worker's shape")
    }

    #[test]
    fn breakers_read_as_words() {
        let words = |wire: Value| health(&read(wire));
        assert_eq!(
            words(json!({"state": "closed", "consecutive_failures": 0})),
            "closed"
        );
        assert_eq!(
            words(json!({"state": "closed", "consecutive_failures": 1})),
            "closed (1 failure)"
        );
        assert_eq!(
            words(json!({"state": "closed", "consecutive_failures": 2})),
            "closed (2 failures)"
        );
        assert_eq!(
            words(json!({"state": "open", "until_ms": 1_000, "cool_down_ms": 10})),
            "open until 1970-01-01T00:00:01Z"
        );
        assert_eq!(
            words(json!({"state": "half_open", "consecutive_successes": 1,
                         "cool_down_ms": 10, "probe_since_ms": null})),
            "half-open"
        );
    }

    #[test]
    fn ids_and_names_are_percent_encoded() {
        assert_eq!(encode("evt_0123abc"), "evt_0123abc");
        assert_eq!(encode("a b/c?&"), "a%20b%2Fc%3F%26");
    }

    #[test]
    fn a_set_aside_gap_row_says_why_and_when_next() {
        let waiting = json!({"session_id": "s-1", "gap": "0011223344556677", "status": "Approved",
                             "tries": 2, "failure": "decision_unavailable", "http_status": 500,
                             "next_try_at": "2026-12-06T20:00:00Z"});
        assert_eq!(
            set_aside_row(&read(waiting)),
            [
                "s-1",
                "0011223344556677",
                "Approved",
                "decision_unavailable",
                "500",
                "2",
                "2026-12-06T20:00:00Z"
            ]
        );
        let given_up = json!({"session_id": "s-2", "gap": "g", "status": "Declined", "tries": 10,
                              "failure": "decision_refused", "http_status": 403, "next_try_at": null});
        assert_eq!(set_aside_row(&read(given_up))[6], "given up");
    }

    #[test]
    fn a_dead_letter_row_shows_its_last_attempt() {
        let letter = json!({"id": "evt_1", "consumer": "default", "subject": "session:s",
                            "webhook_type": "status.updated", "reason": "retries_exhausted",
                            "received_at_ms": 0, "dead_at_ms": 0, "attempts": [
                                {"at_ms": 0, "origin": "o", "status": 503, "error": "server_error"},
                                {"at_ms": 0, "origin": "o", "status": null, "error": "timeout"}]});
        assert_eq!(
            dead_letter_row(&read(letter)),
            [
                "evt_1",
                "default",
                "session:s",
                "status.updated",
                "retries_exhausted",
                "1970-01-01T00:00:00Z",
                "2",
                "o - timeout"
            ]
        );
    }
}
