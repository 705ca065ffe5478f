//! `didit-edge`: didit-edge on the command line. Signs and sends Didit webhooks exactly as
//! Didit does, runs a local origin that verifies what the edge forwards, drives the admin API,
//! mints status-stream tokens and watches the stream. See `cli/README.md`.

#![forbid(unsafe_code)]
#![cfg_attr(
    not(test),
    deny(clippy::unwrap_used, clippy::expect_used, clippy::panic)
)]

mod admin;
mod config;
mod didit;
mod error;
mod http;
mod listen;
mod send;
mod sign;
mod token;
mod watch;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::error::{Failure, EXIT_CODES};

#[derive(Parser, Debug)]
#[command(
    name = "didit-edge",
    version,
    about = "Sign and send Didit webhooks, run a verifying local origin, and drive a didit-edge worker",
    long_about = "Sign and send Didit webhooks exactly as Didit does, run a local origin that \
                  verifies what the edge forwards, list origins and dead letters, replay them, \
                  mint status-stream tokens and watch the stream.\n\n\
                  Secrets come from a flag, the environment, or ./.dev.vars (the file wrangler dev \
                  reads), and are never printed.",
    after_help = EXIT_CODES,
    propagate_version = true
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Print a correctly signed Didit delivery (headers and body) for any event type
    #[command(after_help = EXIT_CODES)]
    Sign(sign::SignArgs),
    /// Sign a Didit delivery and POST it; --repeat for a quick load check, --resend for a retry
    #[command(after_help = EXIT_CODES)]
    Send(send::SendArgs),
    /// A local origin on 127.0.0.1 that verifies and prints every event the edge forwards
    #[command(after_help = EXIT_CODES)]
    Listen(listen::ListenArgs),
    /// The worker's admin API: origins, dead letters, replay
    #[command(after_help = EXIT_CODES)]
    Admin(admin::AdminArgs),
    /// Mint a status-stream token (an HS256 JWT signed with STREAM_TOKEN_SECRET)
    #[command(after_help = EXIT_CODES)]
    Token(token::TokenArgs),
    /// Watch the status stream (GET /v1/stream over a WebSocket) and print each status
    #[command(after_help = EXIT_CODES)]
    Watch(watch::WatchArgs),
}

fn run(cli: &Cli) -> Result<(), Failure> {
    match &cli.command {
        Command::Sign(args) => sign::run(args),
        Command::Send(args) => send::run(args),
        Command::Listen(args) => listen::run(args),
        Command::Admin(args) => admin::run(args),
        Command::Token(args) => token::run(args),
        Command::Watch(args) => watch::run(args),
    }
}

/// A clap usage error as one line: the message, what was missing, and where help is.
fn usage_line(rendered: &str) -> String {
    let mut parts = Vec::new();
    for line in rendered.lines() {
        let line = line.trim();
        if line.is_empty() {
            if parts.is_empty() {
                continue;
            }
            break;
        }
        parts.push(line.strip_prefix("error: ").unwrap_or(line).to_owned());
    }
    parts.join(" ")
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(error) => {
            use clap::error::ErrorKind;
            return match error.kind() {
                ErrorKind::DisplayHelp | ErrorKind::DisplayVersion => {
                    let _ = error.print();
                    ExitCode::SUCCESS
                }
                ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => {
                    let _ = error.print();
                    ExitCode::from(error::Exit::Usage as u8)
                }
                _ => {
                    eprintln!(
                        "didit-edge: {} (see --help)",
                        usage_line(&error.render().to_string())
                    );
                    ExitCode::from(error::Exit::Usage as u8)
                }
            };
        }
    };
    match run(&cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(failure) => {
            eprintln!("didit-edge: {failure}");
            ExitCode::from(failure.exit as u8)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn the_command_line_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn usage_errors_become_one_line() {
        let error = Cli::try_parse_from(["didit-edge", "token"]).expect_err("no --sub");
        let line = usage_line(&error.render().to_string());
        assert!(line.contains("--sub"), "{line}");
        assert!(!line.contains('\n'));
        let error = Cli::try_parse_from(["didit-edge", "send", "--bogus"]).expect_err("unknown");
        assert!(usage_line(&error.render().to_string()).contains("--bogus"));
    }

    #[test]
    fn every_command_documents_the_exit_codes() {
        let mut command = Cli::command();
        for sub in command.get_subcommands_mut() {
            if sub.get_name() == "help" {
                continue;
            }
            let help = sub.render_long_help().to_string();
            assert!(help.contains("Exit codes:"), "{}", sub.get_name());
            for nested in sub.get_subcommands_mut().filter(|n| n.get_name() != "help") {
                let help = nested.render_long_help().to_string();
                assert!(help.contains("Exit codes:"), "{}", nested.get_name());
            }
        }
    }

    #[test]
    fn resend_refuses_payload_flags_and_body_refuses_generated_ones() {
        assert!(
            Cli::try_parse_from(["didit-edge", "send", "--resend", "--status", "declined"])
                .is_err()
        );
        assert!(Cli::try_parse_from(["didit-edge", "send", "--resend"]).is_ok());
        assert!(
            Cli::try_parse_from(["didit-edge", "send"]).is_err(),
            "a URL is needed"
        );
        assert!(Cli::try_parse_from([
            "didit-edge",
            "sign",
            "--body",
            "f",
            "--type",
            "user.data.updated"
        ])
        .is_err());
        assert!(
            Cli::try_parse_from(["didit-edge", "admin", "replay"]).is_err(),
            "an id or --all"
        );
        assert!(Cli::try_parse_from(["didit-edge", "admin", "replay", "evt_1", "--all"]).is_err());
        assert!(Cli::try_parse_from(["didit-edge", "listen", "--fail", "200"]).is_err());
    }
}
