//! Python's `json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=…)`, the
//! writer behind every body Didit sends.
//!
//! This is a second Python-JSON writer beside [`didit_edge_core::canonical`], on purpose:
//!
//! - They write different things. The core writes Didit's *canonical* form of bytes it was
//!   given (the `X-Signature-V2` message): integers kept as written, and every whole float
//!   turned into an integer first (`97.0` → `97`). This writes the *raw body* Didit sends,
//!   `json.dumps` of a payload as it is, where `97.0` stays `97.0`; the core cannot write that.
//! - It is an independent oracle. The CLI plays Didit against the core's verifier: if it wrote
//!   its bodies with the core's code, a mistake there would sit on both sides of every check
//!   and never show. Instead both writers answer to Python itself: this one in
//!   `the_encoder_writes_what_python_writes` below, the core's in `core/tests/vectors.rs`,
//!   against the same `canonical` cases of `core/tests/vectors.json`, which
//!   `tests/fixtures/generate_vectors.py` computes with Python's own `json.dumps`.

use std::fmt::Write as _;

use serde_json::Value;

/// `json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=…)`.
pub(crate) fn python_json(value: &Value, ensure_ascii: bool) -> String {
    let mut out = String::new();
    write_value(value, ensure_ascii, &mut out);
    out
}

fn write_value(value: &Value, ensure_ascii: bool, out: &mut String) {
    match value {
        Value::Null => out.push_str("null"),
        Value::Bool(true) => out.push_str("true"),
        Value::Bool(false) => out.push_str("false"),
        Value::Number(number) => {
            if let Some(int) = number.as_i64() {
                let _ = write!(out, "{int}");
            } else if let Some(int) = number.as_u64() {
                let _ = write!(out, "{int}");
            } else if let Some(float) = number.as_f64() {
                out.push_str(&python_float_repr(float));
            }
        }
        Value::String(text) => write_string(text, ensure_ascii, out),
        Value::Array(items) => {
            out.push('[');
            for (index, item) in items.iter().enumerate() {
                if index > 0 {
                    out.push(',');
                }
                write_value(item, ensure_ascii, out);
            }
            out.push(']');
        }
        Value::Object(members) => {
            // Python sorts by code point, which is the byte order of UTF-8.
            let mut keys: Vec<&String> = members.keys().collect();
            keys.sort();
            out.push('{');
            for (index, key) in keys.into_iter().enumerate() {
                if index > 0 {
                    out.push(',');
                }
                write_string(key, ensure_ascii, out);
                out.push(':');
                if let Some(member) = members.get(key) {
                    write_value(member, ensure_ascii, out);
                }
            }
            out.push('}');
        }
    }
}

/// A string as Python's `json` writes it: `"`, `\` and control characters escaped (`\n` and
/// friends by name), and with `ensure_ascii` everything outside printable ASCII as `\uXXXX`
/// (lowercase hex, surrogate pairs above the BMP).
fn write_string(text: &str, ensure_ascii: bool, out: &mut String) {
    out.push('"');
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{08}' => out.push_str("\\b"),
            '\u{0c}' => out.push_str("\\f"),
            c if (c as u32) < 0x20 || (ensure_ascii && !(' '..='~').contains(&c)) => {
                let mut units = [0u16; 2];
                for unit in c.encode_utf16(&mut units) {
                    let _ = write!(out, "\\u{unit:04x}");
                }
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

/// Python's `repr(float)`: the shortest digits that read back the same, in positional form
/// from 1e-4 up to 1e16 (always with a fraction, `97.0`), else as `1e-05` / `1.5e+20`.
pub(crate) fn python_float_repr(value: f64) -> String {
    if value.is_nan() {
        return "NaN".into();
    }
    if value.is_infinite() {
        return if value > 0.0 { "Infinity" } else { "-Infinity" }.into();
    }
    // Rust's `{:e}` writes the same shortest round-trip digits: `d.ddde±x`.
    let scientific = format!("{:e}", value.abs());
    let (mantissa, exponent) = scientific.split_once('e').unwrap_or((&scientific, "0"));
    let exponent: i32 = exponent.parse().unwrap_or(0);
    let digits: String = mantissa.chars().filter(char::is_ascii_digit).collect();
    let sign = if value.is_sign_negative() { "-" } else { "" };
    // The decimal point sits `point` digits into `digits`.
    let point = exponent + 1;
    if !(-4 < point && point <= 16) {
        let (first, rest) = digits.split_at(1);
        let fraction = if rest.is_empty() {
            String::new()
        } else {
            format!(".{rest}")
        };
        let exp_sign = if exponent < 0 { '-' } else { '+' };
        return format!("{sign}{first}{fraction}e{exp_sign}{:02}", exponent.abs());
    }
    let len = i32::try_from(digits.len()).unwrap_or(i32::MAX);
    if point <= 0 {
        let zeros = "0".repeat(usize::try_from(-point).unwrap_or(0));
        format!("{sign}0.{zeros}{digits}")
    } else if point >= len {
        let zeros = "0".repeat(usize::try_from(point - len).unwrap_or(0));
        format!("{sign}{digits}{zeros}.0")
    } else {
        let (whole, fraction) = digits.split_at(usize::try_from(point).unwrap_or(0));
        format!("{sign}{whole}.{fraction}")
    }
}

/// The raw body as Didit sends it (`tests/didit.py`'s `encode`).
pub(crate) fn encode(payload: &Value) -> Vec<u8> {
    python_json(payload, true).into_bytes()
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::didit::tests::vectors;

    /// `tests/didit.py`'s `whole_floats_to_ints`, for values an f64 can hold exactly.
    fn whole_floats_to_ints(value: &Value) -> Option<Value> {
        Some(match value {
            Value::Number(n) if n.is_f64() => {
                let f = n.as_f64()?;
                if f.fract() == 0.0 {
                    if f.abs() >= 9.0e15 {
                        return None; // beyond what this test's i64 path holds exactly
                    }
                    json!(f as i64)
                } else {
                    value.clone()
                }
            }
            Value::Array(items) => Value::Array(
                items
                    .iter()
                    .map(whole_floats_to_ints)
                    .collect::<Option<_>>()?,
            ),
            Value::Object(fields) => Value::Object(
                fields
                    .iter()
                    .map(|(k, v)| Some((k.clone(), whole_floats_to_ints(v)?)))
                    .collect::<Option<_>>()?,
            ),
            other => other.clone(),
        })
    }

    #[test]
    fn the_encoder_writes_what_python_writes() {
        // Python's canonical() is json.dumps of whole_floats_to_ints: the same writer.
        let mut checked = 0;
        for case in vectors()["canonical"].as_array().expect("cases") {
            let body = case["body"].as_str().expect("body");
            let Ok(parsed) = serde_json::from_str::<Value>(body) else {
                continue;
            };
            // Integers beyond 64 bits are not held exactly by serde_json's Value; the CLI never
            // re-serializes a body it was given, so only generated payloads go through here.
            if body.contains("123456789012345678901234567890") {
                continue;
            }
            let Some(ints) = whole_floats_to_ints(&parsed) else {
                continue;
            };
            assert_eq!(python_json(&ints, true), case["escaped"], "{body}");
            assert_eq!(python_json(&ints, false), case["utf8"], "{body}");
            checked += 1;
        }
        assert!(checked >= 6, "only {checked} canonical vectors checked");
    }

    #[test]
    fn floats_are_written_as_python_repr() {
        for (value, repr) in [
            (97.0, "97.0"),
            (0.98765, "0.98765"),
            (-0.0, "-0.0"),
            (1e16, "1e+16"),
            (1e15, "1000000000000000.0"),
            (0.0001, "0.0001"),
            (0.00001, "1e-05"),
            (1.5e-7, "1.5e-07"),
            (1e20, "1e+20"),
            (123.456, "123.456"),
            (-189.99241999999998, "-189.99241999999998"),
            (1.2345678901234568e29, "1.2345678901234568e+29"),
        ] {
            assert_eq!(python_float_repr(value), repr);
        }
    }
}
