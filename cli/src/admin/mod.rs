//! `didit-edge admin`: the worker's admin API (origins and their breakers, dead letters,
//! replay, erasure of a subject, the lookup of a subject's events, Didit's own view of its
//! webhooks) as readable tables, or as the API's own JSON. Each answer is
//! read into the core's type for it (`didit_edge_core::admin`), the one the worker writes.
//!
//! One file per command group ([`origins`], [`dead_letters`] with replay, [`reconciliation`],
//! [`metrics`], [`erase`], [`lookup`], [`didit`]), the API [`client`] they share, and the [`print`]ing of
//! cells and tables.

mod client;
mod dead_letters;
mod didit;
mod erase;
mod lookup;
mod metrics;
mod origins;
mod print;
mod reconciliation;

use std::time::Duration;

use clap::{Args, Subcommand};

use crate::config;
use crate::error::{Result, EXIT_CODES};
pub(crate) use dead_letters::{DeadLetterArgs, ReplayArgs};
pub(crate) use didit::DiditAttemptsArgs;
pub(crate) use erase::EraseArgs;
pub(crate) use lookup::LookupArgs;

use client::Client;

/// The base URL of a local `wrangler dev`.
pub(crate) const LOCAL_URL: &str = "http://127.0.0.1:8787";

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
    /// Each origin's delivery over the last hour and day: attempts, delivered, refused,
    /// timeouts, network failures, success share, p50/p95 latency
    #[command(after_help = EXIT_CODES)]
    Metrics,
    /// Put dead letters back in line: one event's (ID), or all of them (--all)
    #[command(after_help = EXIT_CODES)]
    Replay(ReplayArgs),
    /// Erase what is stored about one subject (a data-subject request): payloads, pending
    /// deliveries, dead letters, stream statuses. Ids stay for deduplication
    #[command(after_help = EXIT_CODES)]
    Erase(EraseArgs),
    /// What happened to a subject's events (or one event): a timeline each, from receipt to
    /// every attempt and where each copy stands. Reads only
    #[command(after_help = EXIT_CODES)]
    Lookup(LookupArgs),
    /// Didit's webhook destinations with the delivery health Didit reports (needs the key's
    /// webhooks: read scope); * marks this edge's
    #[command(after_help = EXIT_CODES)]
    DiditDestinations,
    /// Every attempt Didit made for one session (each retry and resend its own row), with the
    /// status this edge answered, beside `admin lookup`'s timeline
    #[command(after_help = EXIT_CODES)]
    DiditAttempts(DiditAttemptsArgs),
}

pub(crate) fn run(args: &AdminArgs) -> Result<()> {
    let client = Client::new(args)?;
    match &args.command {
        AdminCommand::Origins => origins::origins(&client, args.json),
        AdminCommand::DeadLetters(list) => dead_letters::dead_letters(&client, list, args.json),
        AdminCommand::Reconciliation => reconciliation::reconciliation(&client, args.json),
        AdminCommand::Metrics => metrics::metrics(&client, args.json),
        AdminCommand::Replay(replay_args) => dead_letters::replay(&client, replay_args, args.json),
        AdminCommand::Erase(erase_args) => erase::erase(&client, erase_args, args.json),
        AdminCommand::Lookup(lookup_args) => lookup::lookup(&client, lookup_args, args.json),
        AdminCommand::DiditDestinations => didit::destinations(&client, args.json),
        AdminCommand::DiditAttempts(attempts) => didit::attempts(&client, attempts, args.json),
    }
}

/// `wire` read as the CLI reads an answer.
#[cfg(test)]
fn read<T: serde::de::DeserializeOwned>(wire: serde_json::Value) -> T {
    serde_json::from_value(wire).expect("the worker's shape")
}
