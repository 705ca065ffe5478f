//! `didit-edge admin didit-destinations` and `didit-attempts`: Didit's own record of its
//! webhooks (`GET /admin/didit/destinations`, `POST /admin/didit/deliveries`), read through
//! the edge with its `DIDIT_API_KEY`: each destination's health as Didit reports it, and every
//! attempt Didit made for one session, beside what `admin lookup` shows of the edge's side.
//! Read as JSON values: these answers are printed, never kept.

use clap::Args;
use didit_edge_core::admin::LookupRequest;
use serde_json::Value;

use super::client::Client;
use super::print::{ms_time, print_json, table};
use crate::error::Result;
use crate::http::Method;

#[derive(Args, Debug)]
pub(crate) struct DiditAttemptsArgs {
    /// The session's id
    #[arg(value_name = "SESSION_ID")]
    pub(crate) session: String,
    /// A business session (KYB) rather than a user verification session
    #[arg(long)]
    pub(crate) business: bool,
}

const OFF: &str = "Didit's view is off (DIDIT_API_KEY is not set)";

fn off(answer: &Value) -> bool {
    answer.get("enabled").and_then(Value::as_bool) != Some(true)
}

/// A field as a cell: strings bare, `-` for null or absent.
fn field(row: &Value, key: &str) -> String {
    match row.get(key) {
        None | Some(Value::Null) => "-".into(),
        Some(Value::String(text)) => text.clone(),
        Some(other) => other.to_string(),
    }
}

pub(super) fn destinations(client: &Client, as_json: bool) -> Result<()> {
    let answer: Value = client.call(Method::Get, "/admin/didit/destinations")?;
    if as_json {
        print_json(&answer);
    } else {
        println!("{}", destinations_text(&answer));
    }
    Ok(())
}

fn destinations_text(answer: &Value) -> String {
    if off(answer) {
        return OFF.into();
    }
    let rows: Vec<Vec<String>> = answer
        .get("destinations")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .map(|row| {
            let this_edge = row.get("this_edge").and_then(Value::as_bool) == Some(true);
            vec![
                if this_edge { "*".into() } else { String::new() },
                field(row, "label"),
                field(row, "url"),
                field(row, "enabled"),
                field(row, "health_status"),
                format!(
                    "{}/{}",
                    field(row, "failed_deliveries_count"),
                    field(row, "deliveries_count")
                ),
                field(row, "error_rate_percentage"),
                field(row, "average_response_time_ms"),
                field(row, "last_delivery_at"),
                field(row, "uuid"),
            ]
        })
        .collect();
    if rows.is_empty() {
        return "Didit lists no webhook destination".into();
    }
    format!(
        "{}\n* this edge's ({})",
        table(
            &[
                "", "LABEL", "URL", "ENABLED", "HEALTH", "FAILED", "ERROR %", "AVG MS", "LAST",
                "UUID"
            ],
            &rows
        ),
        match answer.get("chosen_by").and_then(Value::as_str) {
            Some("setting") => "DIDIT_DESTINATION",
            _ => "enabled, on the host this command called",
        }
    )
}

pub(super) fn attempts(client: &Client, args: &DiditAttemptsArgs, as_json: bool) -> Result<()> {
    let request = LookupRequest {
        subject_kind: Some(
            if args.business {
                "business_session"
            } else {
                "session"
            }
            .into(),
        ),
        subject_id: Some(args.session.as_str().into()),
        event_id: None,
    };
    let answer: Value = client.post_json("/admin/didit/deliveries", &request)?;
    if as_json {
        print_json(&answer);
    } else {
        println!("{}", attempts_text(&answer));
    }
    Ok(())
}

fn attempts_text(answer: &Value) -> String {
    if off(answer) {
        return OFF.into();
    }
    let read = |key| field(answer, key);
    let mut out = format!(
        "Didit's attempts for session {}, {} to {} (UTC, {}), {} of {} pages read",
        read("session_id"),
        read("date_from"),
        read("date_to"),
        if read("days_from") == "edge_timeline" {
            "the days of the edge's timeline"
        } else {
            "the edge holds nothing of it: the last days"
        },
        read("pages_read"),
        read("page_budget"),
    );
    let no_destination = answer
        .get("destinations")
        .and_then(Value::as_array)
        .is_none_or(Vec::is_empty);
    if no_destination {
        out.push_str(
            "\nno destination of Didit's is this edge's: see `admin didit-destinations`, or set DIDIT_DESTINATION",
        );
        return out;
    }
    if answer.get("complete").and_then(Value::as_bool) != Some(true) {
        out.push_str(if answer.get("budget_reached").and_then(Value::as_bool) == Some(true) {
            "\nthe page budget ran out before the days were covered: older attempts may be missing"
        } else {
            "\nDidit's next page pointed outside its API: not followed, older attempts may be missing"
        });
    }
    let rows: Vec<Vec<String>> = answer
        .get("attempts")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .map(|attempt| {
            vec![
                attempt
                    .get("at_ms")
                    .and_then(Value::as_i64)
                    .map_or_else(|| field(attempt, "created_at"), ms_time),
                field(attempt, "response_status"),
                field(attempt, "response_time_ms"),
                field(attempt, "status"),
                field(attempt, "webhook_type"),
            ]
        })
        .collect();
    if rows.is_empty() {
        out.push_str("\nno attempt of Didit's for this session in those days");
    } else {
        out.push('\n');
        out.push_str(&table(
            &["TIME", "WE ANSWERED", "IN MS", "DIDIT SAYS", "TYPE"],
            &rows,
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn attempts_print_beside_what_was_read() {
        let answer = json!({"enabled": true, "session_id": "s1", "date_from": "2026-12-06",
            "date_to": "2026-12-07", "days_from": "edge_timeline", "destinations": ["d1"],
            "pages_read": 10, "page_budget": 10, "complete": false, "budget_reached": true,
            "attempts": [{"at_ms": 1_796_637_600_000_i64, "response_status": 503, "response_time_ms": 12,
                          "status": "failed", "webhook_type": "status.updated"},
                         {"at_ms": null, "created_at": "later", "response_status": null}]});
        let text = attempts_text(&answer);
        assert!(text.contains("page budget ran out"), "{text}");
        assert!(text.contains("2026-12-07T10:00:00Z  503"), "{text}");
        assert!(text.contains("later"), "{text}");
        assert_eq!(attempts_text(&json!({"enabled": false})), OFF);
        let none = attempts_text(&json!({"enabled": true, "destinations": []}));
        assert!(none.contains("DIDIT_DESTINATION"), "{none}");
    }

    #[test]
    fn destinations_mark_this_edges() {
        let answer = json!({"enabled": true, "chosen_by": "same_host", "destinations": [
            {"uuid": "d1", "label": "edge", "this_edge": true, "deliveries_count": 4,
             "failed_deliveries_count": 1, "health_status": "degraded"}]});
        let text = destinations_text(&answer);
        assert!(
            text.starts_with("   LABEL") && text.contains("\n*  edge"),
            "{text}"
        );
        assert!(text.contains("1/4") && text.contains("degraded"), "{text}");
    }
}
