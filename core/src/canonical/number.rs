//! Numbers as Python writes them after Didit turned every whole float into an integer:
//! integers keep their digits (Python ints have no size limit), a whole float becomes the
//! exact integer of its `f64`, and any other float is written as Python's `repr`.
//!
//! Kept apart from the writer because it is the one part that does arithmetic, and the one
//! where `no_std` shows: `f64::trunc` and big integers have to be done by hand.

use alloc::string::String;
use alloc::vec::Vec;
use core::fmt::Write as _;

/// Writes a number as Python would after Didit's whole-float-to-int step.
pub(super) fn write_number(text: &str, out: &mut String) {
    let is_integer = !text.bytes().any(|b| matches!(b, b'.' | b'e' | b'E'));
    if is_integer {
        if text.bytes().all(|b| b == b'-' || b == b'0') {
            out.push('0');
        } else {
            out.push_str(text);
        }
        return;
    }
    // The grammar was validated by the parser, so this parse cannot fail; if it somehow did,
    // writing the text as given keeps the function total (the signature would simply not match).
    let Ok(value) = text.parse::<f64>() else {
        out.push_str(text);
        return;
    };
    if value.is_infinite() {
        out.push_str(if value > 0.0 { "Infinity" } else { "-Infinity" });
    } else if value == libm_trunc(value) {
        write_whole_float(value, out);
    } else {
        write_python_repr(value, out);
    }
}

/// `f64::trunc` lives in std; for |x| ≥ 2^52 every f64 is already whole.
fn libm_trunc(value: f64) -> f64 {
    if value.abs() >= 4_503_599_627_370_496.0 {
        value
    } else {
        (value as i64) as f64
    }
}

/// Writes the exact integer value of a whole, finite `f64`, as Python's `int(x)` does.
fn write_whole_float(value: f64, out: &mut String) {
    if value.abs() < 9_007_199_254_740_992.0 {
        let _ = write!(out, "{}", value as i64);
        return;
    }
    let bits = value.to_bits();
    let exponent = ((bits >> 52) & 0x7ff) as i32 - 1075;
    let mantissa = (bits & ((1u64 << 52) - 1)) | (1u64 << 52);
    // value = mantissa * 2^exponent with exponent > 0 here; build it in base 10^9 limbs.
    let mut limbs: Vec<u32> = Vec::new();
    let mut rest = mantissa;
    while rest > 0 {
        limbs.push((rest % 1_000_000_000) as u32);
        rest /= 1_000_000_000;
    }
    for _ in 0..exponent.max(0) {
        let mut carry = 0u64;
        for limb in limbs.iter_mut() {
            let doubled = u64::from(*limb) * 2 + carry;
            *limb = (doubled % 1_000_000_000) as u32;
            carry = doubled / 1_000_000_000;
        }
        if carry > 0 {
            limbs.push(carry as u32);
        }
    }
    if value < 0.0 {
        out.push('-');
    }
    let mut iter = limbs.iter().rev();
    if let Some(top) = iter.next() {
        let _ = write!(out, "{top}");
    }
    for limb in iter {
        let _ = write!(out, "{limb:09}");
    }
}

/// Python's `repr` of a non-whole float: the shortest digits that round-trip (Rust's `{}` and
/// `{:e}` produce the same digits), positional unless the decimal exponent is below -4.
fn write_python_repr(value: f64, out: &mut String) {
    let mut scientific = String::new();
    let _ = write!(scientific, "{value:e}");
    let (mantissa, exponent) = match scientific.split_once('e') {
        Some((m, e)) => (m, e.parse::<i32>().unwrap_or(0)),
        None => (scientific.as_str(), 0),
    };
    if !(-4..16).contains(&exponent) {
        let sign = if exponent < 0 { '-' } else { '+' };
        let _ = write!(out, "{mantissa}e{sign}{:02}", exponent.unsigned_abs());
    } else {
        let _ = write!(out, "{value}");
    }
}
