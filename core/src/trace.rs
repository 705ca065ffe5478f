//! W3C Trace Context for what the edge forwards: the CloudEvents distributed-tracing
//! extension's `traceparent` attribute, and the same value as the request's `traceparent`
//! header, so origins can join the edge's trace with their own.
//!
//! The trace starts at the edge when the event is accepted, and derives from the event id
//! alone: every attempt, retry and replay of one event belongs to one trace, and the trace id
//! is the event id's 32 hex digits, so an operator finds an event's trace from its id (and the
//! other way round) without a lookup. Nothing is drawn at random, which keeps the stored
//! CloudEvent and its signature the same on every attempt.

use alloc::string::String;

use sha2::{Digest, Sha256};

/// The traceparent version this writes.
const VERSION: &str = "00";
/// Sampled: the edge logs every transition of every event, so each trace has a record.
const FLAGS: &str = "01";

/// The `traceparent` of the event `event_id`: `00-<trace id>-<parent id>-01`.
pub fn traceparent(event_id: &str) -> String {
    let digest = Sha256::new()
        .chain_update(b"didit-edge traceparent\0")
        .chain_update(event_id.as_bytes())
        .finalize();
    let trace_id = match event_id.strip_prefix("evt_") {
        Some(hex) if is_trace_id(hex) => String::from(hex),
        // Ids of older releases are not 32 hex digits; their trace id is a digest instead.
        _ => nonzero_hex(digest.get(..16).unwrap_or_default()),
    };
    let parent_id = nonzero_hex(digest.get(16..24).unwrap_or_default());
    alloc::format!("{VERSION}-{trace_id}-{parent_id}-{FLAGS}")
}

/// 32 lowercase hex digits, not all zero (the W3C rules for a trace id).
fn is_trace_id(hex: &str) -> bool {
    hex.len() == 32
        && hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
        && hex.bytes().any(|b| b != b'0')
}

/// Lowercase hex of `bytes`, with the last digit set if every byte is zero (an all-zero id is
/// invalid).
fn nonzero_hex(bytes: &[u8]) -> String {
    let mut text = hex::encode(bytes);
    if bytes.iter().all(|b| *b == 0) {
        text.pop();
        text.push('1');
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    fn parts(traceparent: &str) -> (String, String, String, String) {
        let fields: alloc::vec::Vec<&str> = traceparent.split('-').collect();
        assert_eq!(fields.len(), 4, "{traceparent}");
        (
            fields[0].into(),
            fields[1].into(),
            fields[2].into(),
            fields[3].into(),
        )
    }

    #[test]
    fn the_trace_id_is_the_event_id_and_the_value_is_stable() {
        let id = "evt_f17568b6b74b50061761dc9f3cd2c55d";
        let (version, trace_id, parent_id, flags) = parts(&traceparent(id));
        assert_eq!(
            (version.as_str(), trace_id.as_str(), flags.as_str()),
            ("00", "f17568b6b74b50061761dc9f3cd2c55d", "01")
        );
        assert_eq!(parent_id.len(), 16);
        assert!(parent_id
            .bytes()
            .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()));
        assert_eq!(traceparent(id), traceparent(id), "every attempt, one trace");
        assert_ne!(
            parts(&traceparent("evt_f17568b6b74b50061761dc9f3cd2c55e")).2,
            parent_id
        );
    }

    #[test]
    fn an_id_that_is_no_trace_id_gets_a_valid_one() {
        for id in [
            "legacy-1",
            "evt_00000000000000000000000000000000",
            "evt_F17568B6B74B50061761DC9F3CD2C55D",
            "",
        ] {
            let (_, trace_id, parent_id, _) = parts(&traceparent(id));
            assert!(is_trace_id(&trace_id), "{id}: {trace_id}");
            assert_ne!(trace_id, id.trim_start_matches("evt_"));
            assert_eq!(parent_id.len(), 16);
        }
        assert_eq!(nonzero_hex(&[0, 0]), "0001");
    }
}
