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
    let Some(value) = super::float::parse(text) else {
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

/// Python's `repr` of a non-whole float: the shortest digits that round-trip, positional
/// unless the decimal exponent is below -4 (it cannot reach 16: such a float is whole).
///
/// The digits come from serde_json's float writer, which the edge carries anyway, rather than
/// from `core::fmt`'s `{}` and `{:e}` (the same shortest digits, but 20 KB of the upload for
/// this one use).
fn write_python_repr(value: f64, out: &mut String) {
    let Some((digits, point)) = shortest_digits(value) else {
        return;
    };
    if value < 0.0 {
        out.push('-');
    }
    let exponent = point - 1;
    if !(-4..16).contains(&exponent) {
        let (first, rest) = digits.split_at(1);
        out.push_str(first);
        if !rest.is_empty() {
            out.push('.');
            out.push_str(rest);
        }
        let sign = if exponent < 0 { '-' } else { '+' };
        let _ = write!(out, "e{sign}{:02}", exponent.unsigned_abs());
    } else if point <= 0 {
        out.push_str("0.");
        out.extend(core::iter::repeat_n('0', point.unsigned_abs() as usize));
        out.push_str(&digits);
    } else {
        let point = point as usize;
        if point >= digits.len() {
            out.push_str(&digits);
            out.extend(core::iter::repeat_n('0', point - digits.len()));
            out.push_str(".0");
        } else {
            let (whole, fraction) = digits.split_at(point);
            out.push_str(whole);
            out.push('.');
            out.push_str(fraction);
        }
    }
}

/// The shortest decimal digits that round-trip `|value|` (finite, non-zero), without leading
/// or trailing zeros, and where the decimal point goes: value = 0.DIGITS × 10^point. Read from
/// serde_json's text of the float, whatever its form (`0.001`, `1.5e-7`, `1e20`).
fn shortest_digits(value: f64) -> Option<(String, i32)> {
    let text = serde_json::to_string(&value).ok()?;
    let text = text.trim_start_matches('-');
    let (mantissa, exponent) = match text.split_once(['e', 'E']) {
        Some((mantissa, exponent)) => (mantissa, exponent.parse::<i32>().ok()?),
        None => (text, 0),
    };
    let (whole, fraction) = mantissa.split_once('.').unwrap_or((mantissa, ""));
    let mut digits: String = whole.chars().chain(fraction.chars()).collect();
    let mut point = i32::try_from(whole.len()).ok()? + exponent;
    let leading = digits.len() - digits.trim_start_matches('0').len();
    digits.drain(..leading);
    point -= i32::try_from(leading).ok()?;
    digits.truncate(digits.trim_end_matches('0').len());
    (!digits.is_empty()).then_some((digits, point))
}

#[cfg(test)]
mod tests {
    use super::*;
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    fn repr(value: f64) -> String {
        let mut out = String::new();
        write_python_repr(value, &mut out);
        out
    }

    #[test]
    // The tie below is written as its exact value (…589.25), which clippy would shorten to the
    // …589.3 that reads as the same float and hides what the case is about.
    #[allow(clippy::excessive_precision)]
    fn known_forms_are_pythons() {
        for (value, python) in [
            (0.5, "0.5"),
            (-0.1, "-0.1"),
            (123.25, "123.25"),
            (0.0001, "0.0001"),
            (0.00001, "1e-05"),
            (1.5e-7, "1.5e-07"),
            (-2.5e-300, "-2.5e-300"),
            (1234567890.125, "1234567890.125"),
            (0.1 + 0.2, "0.30000000000000004"),
            (5e-324, "5e-324"),
            // Two shortest candidates equally close (…589.25): Python rounds to even; the
            // `core::fmt` digits this writer used before said …589.3.
            (1085861697151589.25, "1085861697151589.2"),
        ] {
            assert_eq!(repr(value), python, "{value:e}");
        }
    }

    /// Python's own `repr` of 2,192 floats (random bit patterns, decimal-looking values at
    /// many scales, and ties near 2^49..2^52), written by CPython into the fixture.
    #[test]
    fn every_float_of_the_fixture_is_written_as_python_writes_it() {
        let fixture = include_str!("../../tests/fixtures/python_float_repr.txt");
        let mut checked = 0;
        for line in fixture.lines().filter(|line| !line.starts_with('#')) {
            let (bits, python) = line.split_once(' ').expect("bits, then repr");
            let value = f64::from_bits(bits.parse().expect("u64"));
            assert_eq!(repr(value), python, "bits {bits}");
            checked += 1;
        }
        assert_eq!(checked, 2_192);
    }
}
