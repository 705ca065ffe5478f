//! `didit-edge admin reconciliation`: where reconciliation with Didit's API stands, and the
//! gaps it set aside.

use didit_edge_core::admin::{GapView, ReconciliationStatus};

use super::client::Client;
use super::print::{cell, print_json, table, wire_name};
use crate::error::Result;
use crate::http::Method;

pub(super) fn reconciliation(client: &Client, as_json: bool) -> Result<()> {
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

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::admin::read;

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
}
