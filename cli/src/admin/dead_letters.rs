//! `didit-edge admin dead-letters` and `replay`: the dead letters, and putting them back in
//! line.

use clap::Args;
use didit_edge_core::admin::{BulkReplay, DeadLetter, DeadLetterPage, Replayed};
use serde_json::json;

use super::client::{encode, Client};
use super::print::{cell, ms_time, print_json, table};
use crate::error::Result;
use crate::http::Method;

/// Most calls one `replay --all` makes (each replays up to 40 subjects).
const MAX_REPLAY_CALLS: u32 = 10_000;

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

pub(super) fn dead_letters(client: &Client, args: &DeadLetterArgs, as_json: bool) -> Result<()> {
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

pub(super) fn replay(client: &Client, args: &ReplayArgs, as_json: bool) -> Result<()> {
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

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::admin::read;

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
