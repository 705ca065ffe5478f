//! `didit-edge admin metrics`: each origin's delivery over the last hour and day.

use didit_edge_core::admin::{LastProbe, MetricsView, WindowMetrics};
use didit_edge_core::time::UnixMs;

use super::client::Client;
use super::print::{print_json, table};
use crate::error::Result;
use crate::http::Method;

/// A share per mille as a percentage with one decimal, or a dash without attempts.
fn share(per_mille: Option<u32>) -> String {
    per_mille.map_or_else(|| "-".into(), |n| format!("{}.{}%", n / 10, n % 10))
}

/// A percentile as "≤ N ms": it is the upper bound of a power-of-two bucket.
fn latency(ms: Option<u64>) -> String {
    ms.map_or_else(|| "-".into(), |ms| format!("<{ms} ms"))
}

/// The last health probe, as seen from the answer's `now`: "up 42 s ago".
fn probe(last: Option<LastProbe>, now: UnixMs) -> String {
    last.map_or_else(
        || "-".into(),
        |probe| {
            let ago_secs = (now.0 - probe.at_ms.0).max(0) / 1000;
            let state = if probe.up { "up" } else { "down" };
            format!("{state} {ago_secs} s ago")
        },
    )
}

/// One window as a table row; the last probe is given on the hour's row only.
fn row(origin: &str, window: &str, m: &WindowMetrics, last_probe: String) -> Vec<String> {
    vec![
        origin.into(),
        window.into(),
        m.attempts.to_string(),
        m.delivered.to_string(),
        m.refused.to_string(),
        m.timeouts.to_string(),
        m.network.to_string(),
        share(m.success_per_mille),
        latency(m.p50_ms),
        latency(m.p95_ms),
        last_probe,
    ]
}

pub(super) fn metrics(client: &Client, as_json: bool) -> Result<()> {
    let answer: MetricsView = client.call(Method::Get, "/admin/metrics")?;
    if as_json {
        print_json(&answer);
        return Ok(());
    }
    let rows: Vec<Vec<String>> = answer
        .origins
        .iter()
        .flat_map(|o| {
            [
                row(
                    &o.origin,
                    "hour",
                    &o.hour,
                    probe(o.last_probe, answer.now_ms),
                ),
                row(&o.origin, "day", &o.day, String::new()),
            ]
        })
        .collect();
    println!(
        "{}",
        table(
            &[
                "ORIGIN",
                "WINDOW",
                "ATTEMPTS",
                "DELIVERED",
                "REFUSED",
                "TIMEOUTS",
                "NETWORK",
                "SUCCESS",
                "P50",
                "P95",
                "LAST PROBE"
            ],
            &rows
        )
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shares_and_latencies_read_as_words() {
        assert_eq!(share(Some(666)), "66.6%");
        assert_eq!(share(Some(1000)), "100.0%");
        assert_eq!(share(None), "-");
        assert_eq!(latency(Some(128)), "<128 ms");
        assert_eq!(latency(None), "-");
        let now = UnixMs(1_700_000_042_500);
        let up = LastProbe {
            at_ms: UnixMs(1_700_000_000_000),
            up: true,
        };
        assert_eq!(probe(Some(up), now), "up 42 s ago");
        let down = LastProbe { up: false, ..up };
        assert_eq!(probe(Some(down), now), "down 42 s ago");
        assert_eq!(probe(None, now), "-");
    }
}
