//! `didit-edge admin`: the worker's admin API (origins and their breakers, dead letters,
//! replay, erasure of a subject) as readable tables, or as the API's own JSON.

use std::time::Duration;

use clap::{Args, Subcommand};
use didit_edge_core::time::to_rfc3339;
use serde_json::{json, Value};

use crate::config::{self, redact_url, Lookup};
use crate::error::{Failure, Result, EXIT_CODES};
use crate::http::{self, cell, Answer, Method};

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

    /// Calls the API; a non-2xx answer is the remote's error.
    fn call(&self, method: Method, path: &str) -> Result<Value> {
        let url = format!("{}{path}", self.base);
        let answer = http::request(&self.agent, method, &url, &self.headers, None)?;
        Self::json(&url, &answer)
    }

    /// POSTs `body` as JSON; a non-2xx answer is the remote's error.
    fn post_json(&self, path: &str, body: &Value) -> Result<Value> {
        let url = format!("{}{path}", self.base);
        let mut headers = self.headers.clone();
        headers.push(("Content-Type".into(), "application/json".into()));
        let body = body.to_string();
        let answer = http::request(
            &self.agent,
            Method::Post,
            &url,
            &headers,
            Some(body.as_bytes()),
        )?;
        Self::json(&url, &answer)
    }

    fn json(url: &str, answer: &Answer) -> Result<Value> {
        if !answer.is_success() {
            return Err(Failure::remote(format!(
                "{} answered {} {}",
                redact_url(url),
                answer.status,
                answer.error_summary()
            )));
        }
        answer.json().ok_or_else(|| {
            Failure::remote(format!(
                "{} answered {} with something that is not JSON; is this a didit-edge worker?",
                redact_url(url),
                answer.status
            ))
        })
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

fn ms_time(value: Option<&Value>) -> String {
    value
        .and_then(Value::as_i64)
        .map_or_else(|| "-".into(), |ms| to_rfc3339(ms.div_euclid(1000)))
}

/// A breaker as a few words.
pub(crate) fn health(value: Option<&Value>) -> String {
    let Some(health) = value else {
        return "-".into();
    };
    match health.get("state").and_then(Value::as_str) {
        Some("closed") => match health.get("consecutive_failures").and_then(Value::as_u64) {
            Some(0) | None => "closed".into(),
            Some(1) => "closed (1 failure)".into(),
            Some(n) => format!("closed ({n} failures)"),
        },
        Some("open") => format!("open until {}", ms_time(health.get("until_ms"))),
        Some("half_open") => "half-open".into(),
        _ => health.to_string(),
    }
}

fn reconciliation(client: &Client, as_json: bool) -> Result<()> {
    let answer = client.call(Method::Get, "/admin/reconciliation")?;
    if as_json {
        println!("{answer}");
        return Ok(());
    }
    if answer.get("enabled") != Some(&Value::Bool(true)) {
        println!("reconciliation is off (DIDIT_API_KEY is not set)");
        return Ok(());
    }
    let run = answer.get("last_run").filter(|run| !run.is_null());
    let field = |value: Option<&Value>, name: &str| cell(value.and_then(|v| v.get(name)));
    let sweep = answer.get("sweep").filter(|sweep| !sweep.is_null());
    let rows = vec![
        vec!["checkpoint".into(), cell(answer.get("checkpoint"))],
        vec![
            "sweep".into(),
            sweep.map_or_else(
                || "none under way".into(),
                |sweep| {
                    format!(
                        "{} sessions from offset {}, started {}",
                        field(Some(sweep), "session_kind"),
                        field(Some(sweep), "offset"),
                        field(Some(sweep), "started_at")
                    )
                },
            ),
        ],
        vec!["last run".into(), field(run, "finished_at")],
        vec![
            "  checked".into(),
            format!(
                "{} sessions on {} pages, {} requests",
                field(run, "sessions_checked"),
                field(run, "pages"),
                field(run, "requests")
            ),
        ],
        vec![
            "  found".into(),
            format!(
                "{} gaps, {} events injected",
                field(run, "gaps_found"),
                field(run, "events_injected")
            ),
        ],
        vec!["  ended".into(), field(run, "ended")],
        vec![
            "  errors".into(),
            run.and_then(|run| run.get("errors"))
                .and_then(Value::as_array)
                .filter(|errors| !errors.is_empty())
                .map_or_else(
                    || "none".into(),
                    |errors| {
                        errors
                            .iter()
                            .map(|e| cell(Some(e)))
                            .collect::<Vec<_>>()
                            .join("; ")
                    },
                ),
        ],
        vec!["next run".into(), cell(answer.get("next_run_at"))],
        vec!["gaps waiting".into(), cell(answer.get("gaps_waiting"))],
        vec![
            "gaps set aside".into(),
            format!(
                "{} ({} given up)",
                cell(answer.get("gaps_set_aside")),
                cell(answer.get("gaps_given_up"))
            ),
        ],
    ];
    println!("{}", table(&["", ""], &rows));
    let gaps: Vec<Vec<String>> = answer
        .get("set_aside")
        .and_then(Value::as_array)
        .map(|gaps| gaps.iter().map(set_aside_row).collect())
        .unwrap_or_default();
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
fn set_aside_row(gap: &Value) -> Vec<String> {
    let field = |name: &str| cell(gap.get(name));
    let next = gap
        .get("next_try_at")
        .filter(|next| !next.is_null())
        .map_or_else(|| "given up".to_owned(), |next| cell(Some(next)));
    vec![
        field("session_id"),
        field("gap"),
        field("status"),
        field("failure"),
        field("http_status"),
        field("tries"),
        next,
    ]
}

fn origins(client: &Client, as_json: bool) -> Result<()> {
    let answer = client.call(Method::Get, "/admin/origins")?;
    if as_json {
        println!("{answer}");
        return Ok(());
    }
    let rows: Vec<Vec<String>> = answer
        .get("origins")
        .and_then(Value::as_array)
        .map(|list| {
            list.iter()
                .map(|o| {
                    vec![
                        cell(o.get("name")),
                        cell(o.get("consumer")),
                        cell(o.get("priority")),
                        cell(o.get("weight")),
                        cell(o.get("region")),
                        cell(o.get("cloud")),
                        o.get("timeout_ms")
                            .and_then(Value::as_u64)
                            .map_or_else(|| "-".into(), |ms| format!("{ms} ms")),
                        if o.get("probed") == Some(&Value::Bool(true)) {
                            "yes".into()
                        } else {
                            "no".into()
                        },
                        health(o.get("health")),
                    ]
                })
                .collect()
        })
        .unwrap_or_default();
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

fn dead_letter_row(letter: &Value) -> Vec<String> {
    let attempts = letter.get("attempts").and_then(Value::as_array);
    let last = attempts.and_then(|a| a.last()).map_or_else(
        || "-".into(),
        |a| {
            format!(
                "{} {} {}",
                cell(a.get("origin")),
                cell(a.get("status")),
                cell(a.get("error"))
            )
        },
    );
    vec![
        cell(letter.get("id")),
        cell(letter.get("consumer")),
        cell(letter.get("subject")),
        cell(letter.get("webhook_type")),
        cell(letter.get("reason")),
        ms_time(letter.get("dead_at_ms")),
        attempts.map_or(0, Vec::len).to_string(),
        last,
    ]
}

fn dead_letters(client: &Client, args: &DeadLetterArgs, as_json: bool) -> Result<()> {
    let mut letters: Vec<Value> = Vec::new();
    let mut after = args.after;
    let (next, total) = loop {
        let mut query = format!("limit={}", args.limit);
        if let Some(consumer) = &args.consumer {
            query.push_str(&format!("&consumer={}", encode(consumer)));
        }
        if let Some(after) = after {
            query.push_str(&format!("&after={after}"));
        }
        let page = client.call(Method::Get, &format!("/admin/dead-letters?{query}"))?;
        if let Some(list) = page.get("dead_letters").and_then(Value::as_array) {
            letters.extend(list.iter().cloned());
        }
        let total = page.get("total").cloned().unwrap_or(Value::Null);
        let next = page.get("next").and_then(Value::as_u64);
        match next {
            Some(cursor) if args.all && after != Some(cursor) => after = Some(cursor),
            _ => break (next, total),
        }
    };
    if as_json {
        println!(
            "{}",
            json!({"dead_letters": letters, "next": next, "total": total})
        );
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
    println!("{} of {} dead letters", rows.len(), cell(Some(&total)));
    if let Some(cursor) = next {
        println!("more: didit-edge admin dead-letters --after {cursor}  (or --all)");
    }
    Ok(())
}

fn replay(client: &Client, args: &ReplayArgs, as_json: bool) -> Result<()> {
    if let Some(id) = &args.id {
        let answer = client.call(
            Method::Post,
            &format!("/admin/dead-letters/{}/replay", encode(id)),
        )?;
        if as_json {
            println!("{answer}");
            return Ok(());
        }
        for copy in answer
            .get("replayed")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            println!(
                "replayed {} for consumer {}",
                cell(copy.get("id")),
                cell(copy.get("consumer"))
            );
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
        let answer = client.call(Method::Post, &format!("/admin/dead-letters/replay{query}"))?;
        calls += 1;
        let this = answer.get("replayed").and_then(Value::as_u64).unwrap_or(0);
        replayed += this;
        remaining = answer.get("remaining").and_then(Value::as_u64).unwrap_or(0);
        if remaining == 0 || this == 0 {
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
    let answer = client.post_json(
        "/admin/erasures",
        &json!({"subject_kind": args.kind, "subject_id": args.id}),
    )?;
    if as_json {
        println!("{answer}");
        return Ok(());
    }
    let erased = answer.get("erased");
    let count = |key: &str| cell(erased.and_then(|e| e.get(key)));
    println!(
        "erased {} events of this {}: {} payloads, {} pending deliveries, {} dead letters, {} stream statuses",
        count("events"),
        cell(answer.get("subject_kind")),
        count("payloads"),
        count("pending_deliveries"),
        count("dead_letters"),
        count("statuses"),
    );
    if erased
        .and_then(|e| e.get("reconciliation_sessions"))
        .and_then(Value::as_u64)
        .is_some_and(|n| n > 0)
    {
        println!("reconciliation forgot the session and will not fetch it again");
    }
    println!("kept: {}", cell(answer.get("kept")));
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

    #[test]
    fn breakers_read_as_words() {
        assert_eq!(
            health(Some(&json!({"state": "closed", "consecutive_failures": 0}))),
            "closed"
        );
        assert_eq!(
            health(Some(&json!({"state": "closed", "consecutive_failures": 2}))),
            "closed (2 failures)"
        );
        assert_eq!(
            health(Some(
                &json!({"state": "open", "until_ms": 1_000, "cool_down_ms": 10})
            )),
            "open until 1970-01-01T00:00:01Z"
        );
        assert_eq!(
            health(Some(
                &json!({"state": "half_open", "consecutive_successes": 1})
            )),
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
            set_aside_row(&waiting),
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
        assert_eq!(set_aside_row(&given_up)[6], "given up");
    }

    #[test]
    fn a_dead_letter_row_shows_its_last_attempt() {
        let letter = json!({"id": "evt_1", "consumer": "default", "subject": "session:s",
                            "webhook_type": "status.updated", "reason": "retries_exhausted",
                            "dead_at_ms": 0, "attempts": [
                                {"origin": "o", "status": 503, "error": "server_error"},
                                {"origin": "o", "status": null, "error": "timeout"}]});
        assert_eq!(
            dead_letter_row(&letter),
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
