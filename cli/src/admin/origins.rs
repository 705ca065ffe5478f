//! `didit-edge admin origins`: every origin with its breaker.

use didit_edge_core::admin::OriginsView;
use didit_edge_core::health::BreakerState;

use super::client::Client;
use super::print::{cell, ms_time, print_json, table};
use crate::error::Result;
use crate::http::Method;

/// A breaker as a few words.
pub(super) fn health(breaker: &BreakerState) -> String {
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

pub(super) fn origins(client: &Client, as_json: bool) -> Result<()> {
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

#[cfg(test)]
mod tests {
    use serde_json::{json, Value};

    use super::*;
    use crate::admin::read;

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
}
