//! `didit-edge admin lookup`: what happened to a subject's events, one timeline each
//! (`POST /admin/lookup`), printed in time order per event.

use clap::Args;
use didit_edge_core::admin::{CopyTimeline, EventTimeline, Lookup, LookupRequest};

use super::client::Client;
use super::print::{ms_time, print_json};
use crate::error::{Failure, Result};

#[derive(Args, Debug)]
pub(crate) struct LookupArgs {
    /// A session's events (its session id)
    #[arg(long, value_name = "SESSION_ID", conflicts_with_all = ["vendor_data", "subject"])]
    pub(crate) session: Option<String>,
    /// A user's events (their vendor_data, any text)
    #[arg(long, value_name = "VENDOR_DATA", conflicts_with = "subject")]
    pub(crate) vendor_data: Option<String>,
    /// Any subject's events: session, business_session, user, business or transaction, and its id
    #[arg(long, num_args = 2, value_names = ["KIND", "ID"])]
    pub(crate) subject: Option<Vec<String>>,
    /// Only this event: its id (the webhook-id origins saw) or Didit's event_id. Alone, without
    /// a subject, it is found only while it is a dead letter
    #[arg(long, value_name = "ID")]
    pub(crate) event: Option<String>,
}

impl LookupArgs {
    /// The request body; the ids ride in it, not in the URL.
    fn request(&self) -> Result<LookupRequest<'_>> {
        let subject = match (&self.session, &self.vendor_data, &self.subject) {
            (Some(id), None, None) => Some(("session", id.as_str())),
            (None, Some(id), None) => Some(("user", id.as_str())),
            (None, None, Some(pair)) => match pair.as_slice() {
                [kind, id] => Some((kind.as_str(), id.as_str())),
                _ => return Err(Failure::usage("--subject takes a kind and an id")),
            },
            (None, None, None) => None,
            _ => {
                return Err(Failure::usage(
                    "name one subject: --session, --vendor-data or --subject",
                ))
            }
        };
        if subject.is_none() && self.event.is_none() {
            return Err(Failure::usage(
                "name a subject (--session, --vendor-data, --subject KIND ID), an --event, or both",
            ));
        }
        Ok(LookupRequest {
            subject_kind: subject.map(|(kind, _)| kind.into()),
            subject_id: subject.map(|(_, id)| id.into()),
            event_id: self.event.as_deref().map(Into::into),
        })
    }
}

pub(super) fn lookup(client: &Client, args: &LookupArgs, as_json: bool) -> Result<()> {
    let answer: Lookup = client.post_json("/admin/lookup", &args.request()?)?;
    if as_json {
        print_json(&answer);
    } else {
        print!("{}", timelines(&answer));
    }
    Ok(())
}

/// The answer as text: a line for the subject, then each event's timeline.
fn timelines(lookup: &Lookup) -> String {
    let mut out = format!("{} subject", lookup.subject_kind);
    if let Some(at) = lookup.erased_at_ms {
        out.push_str(&format!(
            ": erased at {} (only what deduplication needs is kept)",
            ms_time(at)
        ));
    }
    out.push('\n');
    if lookup.events.is_empty() {
        out.push_str("no events kept\n");
    }
    for event in &lookup.events {
        out.push('\n');
        out.push_str(&timeline(event));
    }
    out
}

fn timeline(event: &EventTimeline) -> String {
    let mut out = format!(
        "{}  {}  {}",
        event.id,
        event.webhook_type,
        event.status.as_deref().unwrap_or("-")
    );
    if let Some(didit) = &event.didit_event_id {
        out.push_str(&format!("  (Didit event_id {didit})"));
    }
    out.push('\n');
    let received = &event.received;
    let how = match (&received.source[..], &received.signature) {
        ("api", _) => "from Didit's API (reconciliation)".to_owned(),
        (_, Some(signature)) => format!(
            "webhook, {} verified (secret {})",
            signature.header, signature.secret_index
        ),
        (_, None) => "webhook".to_owned(),
    };
    out.push_str(&line(
        received.at_ms,
        "received",
        &format!("{how}; {} ms after Didit's timestamp", received.age_ms),
    ));
    match &event.classified {
        Some(classified) => out.push_str(&format!(
            "{:24}  {:10}  risk {}, consumers: {}\n",
            "",
            "classified",
            classified.risk_level,
            match classified.consumers.is_empty() {
                true => "none (kept for deduplication only)".to_owned(),
                false => classified.consumers.join(", "),
            }
        )),
        None => out.push_str(&format!(
            "{:24}  {:10}  waiting for valid delivery settings\n",
            "", "stored"
        )),
    }
    for copy in &event.copies {
        out.push_str(&copy_lines(copy));
    }
    out.push_str(&format!(
        "{:24}  {:10}  {}\n",
        "",
        "payload",
        match event.payload_kept {
            true => "kept",
            false => "not kept",
        }
    ));
    out
}

fn copy_lines(copy: &CopyTimeline) -> String {
    let mut out = format!("  {}:\n", copy.consumer);
    if copy.requests_not_kept > 0 {
        out.push_str(&format!(
            "{:24}  {:10}  {} earlier requests not kept\n",
            "", "…", copy.requests_not_kept
        ));
    }
    for entry in &copy.log {
        let mut what = entry.origin.clone().unwrap_or_else(|| "-".into());
        if let Some(status) = entry.status {
            what.push_str(&format!(" {status}"));
        }
        if let Some(error) = &entry.error {
            what.push_str(&format!(" {error}"));
        }
        if let Some(latency) = entry.latency_ms {
            what.push_str(&format!(" {latency} ms"));
        }
        if let Some(location) = &entry.location {
            what.push_str(&format!(" → {location}"));
        }
        out.push_str(&line(entry.at_ms, "attempt", &what));
    }
    if let Some(at) = copy.replayed_at_ms {
        out.push_str(&line(
            at,
            "replayed",
            &format!("{} time(s) by an operator", copy.replays),
        ));
    }
    let reason = copy.reason.as_deref().unwrap_or("-");
    match (copy.state.as_str(), copy.at_ms) {
        ("delivered", Some(at)) => out.push_str(&line(
            at,
            "delivered",
            &format!("to {}", copy.delivered_to.as_deref().unwrap_or("-")),
        )),
        ("dead", Some(at)) => out.push_str(&line(at, "dead", &format!("dead letter: {reason}"))),
        ("expired", Some(at)) => out.push_str(&line(at, "ended", reason)),
        _ => match copy.next_attempt_at_ms {
            Some(next) => out.push_str(&line(
                next,
                "next try",
                &format!(
                    "pending after {} failed attempts",
                    copy.failures.unwrap_or(0)
                ),
            )),
            None => out.push_str(&format!("{:24}  {}\n", "", copy.state)),
        },
    }
    out
}

fn line(at_ms: i64, step: &str, what: &str) -> String {
    format!("{:24}  {step:10}  {what}\n", ms_time(at_ms))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_retried_event_prints_each_attempt_then_its_delivery() {
        let lookup: Lookup = super::super::read(serde_json::json!({
            "subject_kind": "session",
            "erased_at_ms": null,
            "events": [{
                "id": "evt_a", "didit_event_id": "d-1", "webhook_type": "status.updated",
                "status": "Approved", "created_at": 1_795_333_920,
                "received": {"at_ms": 1_795_333_920_250_i64, "source": "webhook",
                             "signature": {"header": "X-Signature-V2", "secret_index": 0},
                             "age_ms": 250},
                "classified": {"risk_level": "low", "consumers": ["default"]},
                "payload_kept": false,
                "copies": [{
                    "consumer": "default", "state": "delivered", "failures": null,
                    "next_attempt_at_ms": null, "at_ms": 1_795_333_921_000_i64,
                    "delivered_to": "aws", "reason": null, "attempts": 2, "requests": 2,
                    "requests_not_kept": 0, "replays": 0, "replayed_at_ms": null,
                    "log": [
                        {"at_ms": 1_795_333_920_300_i64, "origin": "aws", "status": 503,
                         "error": "server_error", "latency_ms": 41},
                        {"at_ms": 1_795_333_921_000_i64, "origin": "aws", "status": 204,
                         "error": null, "latency_ms": 9}
                    ]
                }]
            }]
        }));
        let text = timelines(&lookup);
        assert!(
            text.contains("X-Signature-V2 verified (secret 0); 250 ms after"),
            "{text}"
        );
        assert!(
            text.contains("attempt     aws 503 server_error 41 ms"),
            "{text}"
        );
        assert!(text.contains("attempt     aws 204 9 ms"), "{text}");
        assert!(text.contains("delivered   to aws"), "{text}");
        let retry = text.find("503").expect("the retry");
        let delivery = text.find("204").expect("the delivery");
        assert!(retry < delivery, "in time order: {text}");
    }

    #[test]
    fn an_erased_subject_says_so() {
        let lookup: Lookup = super::super::read(serde_json::json!({
            "subject_kind": "user", "erased_at_ms": 1_795_333_920_000_i64, "events": []
        }));
        let text = timelines(&lookup);
        assert!(text.starts_with("user subject: erased at 2026-"), "{text}");
    }
}
