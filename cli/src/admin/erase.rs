//! `didit-edge admin erase`: erasure of what is stored about one subject.

use clap::Args;
use didit_edge_core::admin::{ErasureReport, ErasureRequest};

use super::client::Client;
use super::print::print_json;
use crate::error::{Failure, Result};

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

pub(super) fn erase(client: &Client, args: &EraseArgs, as_json: bool) -> Result<()> {
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
