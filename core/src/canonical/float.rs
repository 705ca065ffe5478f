//! The `f64` nearest a JSON number's text, ties to even: what Python's `float()` reads, and
//! what `str::parse::<f64>` gives.
//!
//! Done here with exact big-integer arithmetic rather than by `str::parse`: the standard
//! library's fast algorithm and its 10 KB table of powers of five (which does not compress) are
//! 12 KiB of every upload (docs/performance.md) for the one use the edge has, the canonical
//! form of the floats in a signed body. This is slower (a division of big integers per float)
//! but exact, which is all the signature needs.

use alloc::vec;
use alloc::vec::Vec;
use core::cmp::Ordering;

/// Significant digits kept: an `f64` is decided by at most 767 of them, and the digits dropped
/// past these are kept as one nonzero digit when any of them is nonzero.
const MAX_DIGITS: usize = 800;

/// The nearest `f64` to `text` (JSON's number grammar; `None` for anything else), rounding
/// ties to even, with overflow to infinity and underflow to zero as the standard does.
pub(super) fn parse(text: &str) -> Option<f64> {
    let (negative, text) = match text.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, text),
    };
    let (mantissa, exponent) = match text.split_once(['e', 'E']) {
        Some((mantissa, exponent)) => (mantissa, Some(exponent)),
        None => (text, None),
    };
    let mut digits: Vec<u8> = Vec::new();
    // value = digits × 10^exp10, the digits read as one integer.
    let mut exp10: i64 = 0;
    let mut dropped_nonzero = false;
    let mut seen_point = false;
    let mut seen_digit = false;
    for byte in mantissa.bytes() {
        match byte {
            b'.' if !seen_point => seen_point = true,
            b'0'..=b'9' => {
                seen_digit = true;
                let digit = byte - b'0';
                if digits.len() < MAX_DIGITS {
                    if !(digits.is_empty() && digit == 0) {
                        digits.push(digit);
                    }
                    if seen_point {
                        exp10 -= 1;
                    }
                } else {
                    dropped_nonzero |= digit != 0;
                    if !seen_point {
                        exp10 += 1;
                    }
                }
            }
            _ => return None,
        }
    }
    if !seen_digit {
        return None;
    }
    if let Some(exponent) = exponent {
        let (exponent_negative, exponent_digits) = match exponent.as_bytes().split_first() {
            Some((b'-', rest)) => (true, rest),
            Some((b'+', rest)) => (false, rest),
            _ => (false, exponent.as_bytes()),
        };
        if exponent_digits.is_empty() {
            return None;
        }
        let mut value: i64 = 0;
        for &byte in exponent_digits {
            if !byte.is_ascii_digit() {
                return None;
            }
            // Past a million the answer is zero or infinity whatever the digits.
            value = (value * 10 + i64::from(byte - b'0')).min(1_000_000);
        }
        exp10 += if exponent_negative { -value } else { value };
    }
    if dropped_nonzero {
        digits.push(1);
        exp10 -= 1;
    }
    while digits.last() == Some(&0) {
        digits.pop();
        exp10 += 1;
    }
    let sign = u64::from(negative) << 63;
    let magnitude = i64::try_from(digits.len()).ok()? + exp10;
    if digits.is_empty() || magnitude <= -324 {
        // Below 10^-324, under half the smallest subnormal (4.9e-324).
        return Some(f64::from_bits(sign));
    }
    if magnitude > 310 {
        return Some(f64::from_bits(sign | f64::INFINITY.to_bits()));
    }
    Some(f64::from_bits(sign | magnitude_bits(&digits, exp10)))
}

/// The bits of the nearest `f64` to digits × 10^exp10 (digits nonzero, the value within
/// 10^-324..10^310).
fn magnitude_bits(digits: &[u8], exp10: i64) -> u64 {
    let mut numerator = vec![0u32];
    for &digit in digits {
        multiply_add(&mut numerator, 10, u32::from(digit));
    }
    let mut denominator = vec![1u32];
    for _ in 0..exp10.unsigned_abs() {
        multiply_add(
            if exp10 > 0 {
                &mut numerator
            } else {
                &mut denominator
            },
            10,
            0,
        );
    }
    // quotient = ⌊numerator × 2^shift / denominator⌋ holds 55 or 56 bits.
    let shift = 55 - bit_length(&numerator) + bit_length(&denominator);
    let (mut rest, divisor) = if shift >= 0 {
        (shifted(&numerator, shift.unsigned_abs()), denominator)
    } else {
        (numerator, shifted(&denominator, shift.unsigned_abs()))
    };
    let mut quotient: u64 = 0;
    for bit in (0..=56u32).rev() {
        let part = shifted(&divisor, u64::from(bit));
        if compare(&rest, &part) != Ordering::Less {
            subtract(&mut rest, &part);
            quotient |= 1 << bit;
        }
    }
    let inexact = rest.iter().any(|&limb| limb != 0);
    // value ≈ quotient × 2^-shift; keep 53 bits, fewer below the normal range.
    let length = 64 - i64::from(quotient.leading_zeros());
    let top_exponent = length - 1 - shift;
    let drop = length - 53 + (-1022 - top_exponent).max(0);
    let (mut kept, scale) = if drop >= 64 {
        // Under half the smallest subnormal: zero (the range check leaves no such value).
        (0, -1074)
    } else {
        let kept = quotient >> drop;
        let rest_bits = quotient & ((1u64 << drop) - 1);
        let half = 1u64 << (drop - 1);
        let up = rest_bits > half || (rest_bits == half && (inexact || kept & 1 == 1));
        (kept + u64::from(up), drop - shift)
    };
    let mut scale = scale;
    if kept == 1 << 53 {
        kept >>= 1;
        scale += 1;
    }
    if kept < 1 << 52 {
        // Subnormal (scale is -1074 here), or zero.
        return kept;
    }
    let biased = scale + 52 + 1023;
    if biased >= 2047 {
        return f64::INFINITY.to_bits();
    }
    (biased.unsigned_abs() << 52) | (kept & ((1 << 52) - 1))
}

/// number = number × factor + add, little-endian 32-bit limbs.
fn multiply_add(number: &mut Vec<u32>, factor: u32, add: u32) {
    let mut carry = u64::from(add);
    for limb in number.iter_mut() {
        let product = u64::from(*limb) * u64::from(factor) + carry;
        *limb = product as u32;
        carry = product >> 32;
    }
    if carry > 0 {
        number.push(carry as u32);
    }
}

/// How many bits `number` takes (0 for zero).
fn bit_length(number: &[u32]) -> i64 {
    let mut length = 0;
    for (index, &limb) in number.iter().enumerate() {
        if limb != 0 {
            length = index as i64 * 32 + 32 - i64::from(limb.leading_zeros());
        }
    }
    length
}

/// number × 2^bits.
fn shifted(number: &[u32], bits: u64) -> Vec<u32> {
    let limbs = (bits / 32) as usize;
    let bits = (bits % 32) as u32;
    let mut out = vec![0u32; limbs];
    let mut carry = 0u32;
    for &limb in number {
        out.push(if bits == 0 {
            limb
        } else {
            (limb << bits) | carry
        });
        carry = if bits == 0 { 0 } else { limb >> (32 - bits) };
    }
    out.push(carry);
    out
}

/// Compares two numbers whatever their count of leading zero limbs.
fn compare(a: &[u32], b: &[u32]) -> Ordering {
    let length = a.len().max(b.len());
    for index in (0..length).rev() {
        let x = a.get(index).copied().unwrap_or(0);
        let y = b.get(index).copied().unwrap_or(0);
        if x != y {
            return x.cmp(&y);
        }
    }
    Ordering::Equal
}

/// a = a - b, where a ≥ b.
fn subtract(a: &mut [u32], b: &[u32]) {
    let mut borrow = 0i64;
    for (index, limb) in a.iter_mut().enumerate() {
        let difference = i64::from(*limb) - i64::from(b.get(index).copied().unwrap_or(0)) - borrow;
        borrow = i64::from(difference < 0);
        *limb = (difference + (borrow << 32)) as u32;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::format;
    use alloc::string::String;
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    fn same(text: &str) {
        let expected: f64 = text.parse().expect("a float");
        let got = parse(text).expect("parses");
        assert_eq!(got.to_bits(), expected.to_bits(), "{text}");
    }

    #[test]
    fn edges_read_as_the_standard_reads_them() {
        for text in [
            "0",
            "-0",
            "0.0",
            "-0.0",
            "1",
            "-1",
            "0.1",
            "0.5",
            "1e23",
            "8.98846567431158e307",
            "9007199254740993",
            "9007199254740995",
            "9007199254740992.5",
            "2.2250738585072011e-308",
            "2.2250738585072012e-308",
            "2.2250738585071e-308",
            "4.9406564584124654e-324",
            "2.4703282292062327e-324",
            "2.4703282292062328e-324",
            "2.4703282292062327208828439643411068618252990130716238221279284125033775364e-324",
            "1.7976931348623157e308",
            "1.7976931348623158e308",
            "1.7976931348623159e308",
            "1.797693134862315807937289714053e308",
            "1e308",
            "1e309",
            "1e-324",
            "1e-400",
            "1e400",
            "123456789012345678901234567890",
            "0.30000000000000004",
            "1085861697151589.25",
            "1E+2",
            "1e-0",
            "100e-2",
            "0.000000000000000000000000000001",
        ] {
            same(text);
        }
        for text in ["", "-", ".", "e5", "1e", "1e+", "1x", "1..2"] {
            assert_eq!(parse(text), None, "{text}");
        }
    }

    #[test]
    fn long_digit_strings_read_as_the_standard_reads_them() {
        let mut nines = String::from("0.");
        nines.extend(core::iter::repeat_n('9', 1500));
        same(&nines);
        let mut ones = String::from("1");
        ones.extend(core::iter::repeat_n('0', 900));
        ones.push_str("1e-900");
        same(&ones);
        // Exactly halfway between 1 and the next double, then a little above, far out.
        let mut half = String::from("1.00000000000000011102230246251565404236316680908203125");
        same(&half);
        half.extend(core::iter::repeat_n('0', 1000));
        half.push('1');
        same(&half);
    }

    #[test]
    fn random_numbers_read_as_the_standard_reads_them() {
        let mut state: u64 = 0x9E37_79B9_7F4A_7C15;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        for _ in 0..40_000 {
            let length = 1 + next() % 25;
            let mut digits: String = (0..length)
                .map(|_| char::from(b'0' + (next() % 10) as u8))
                .collect();
            let point = next() % (length + 1);
            if point < length {
                digits.insert(point as usize, '.');
                if digits.starts_with('.') {
                    digits.insert(0, '0');
                }
            }
            let exponent = (next() % 700) as i64 - 350;
            same(&format!("{digits}e{exponent}"));
            // And the exact decimal of a random double, cut short and as it is.
            let value = f64::from_bits(next() >> 1);
            if value.is_finite() {
                same(&format!("{value:e}"));
                same(&format!("{value:.30e}"));
            }
        }
    }

    /// Python's shortest `repr` of 2,192 floats reads back as the very same bits.
    #[test]
    fn pythons_reprs_read_back_as_their_floats() {
        let fixture = include_str!("../../tests/fixtures/python_float_repr.txt");
        for line in fixture.lines().filter(|line| !line.starts_with('#')) {
            let (bits, python) = line.split_once(' ').expect("bits, then repr");
            if python.contains("inf") || python.contains("nan") {
                continue;
            }
            let bits: u64 = bits.parse().expect("u64");
            let read = parse(python).map(f64::to_bits);
            assert_eq!(read, Some(bits), "{python}");
        }
    }
}
