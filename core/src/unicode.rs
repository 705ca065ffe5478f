//! Unicode lower-casing of one `char`, the same as `char::to_lowercase`, from a table of runs.
//!
//! `char::to_lowercase` looks a character up in the standard library's table of every mapped
//! character (1,400 pairs of `u32`, 11 KB of the upload that gzip barely shrinks), and the
//! status code of a Didit status (`normalize::status_code`) was its only use. Most mappings
//! come in runs (`A`–`Z` → `a`–`z`, or every other character, as in Latin Extended-A), so the
//! same mapping fits in [`RUNS`]: 185 runs of 8 bytes. The test below rebuilds the runs from
//! `char::to_lowercase` and checks every character against it, so a toolchain whose Unicode
//! version changes a mapping fails there (and prints the table to paste in).

use alloc::string::String;

/// The mapped characters in runs, sorted by their first character. Each is
/// `(first << 8 | count << 1 | stride - 1, delta)`: `count` characters from `first`, one in
/// every `stride` (1 or 2), each lower-cased by adding `delta` to its code point. Generated
/// from `char::to_lowercase` (see the test); U+0130, which lower-cases to two characters, is
/// not here but in [`push_lowercase`].
#[rustfmt::skip]
const RUNS: [(u32, i32); 185] = [
    (0x00004134, 32), (0x0000c02e, 32), (0x0000d80e, 32), (0x00010031, 1),
    (0x00013207, 1), (0x00013911, 1), (0x00014a2f, 1), (0x00017802, -121),
    (0x00017907, 1), (0x00018102, 210), (0x00018205, 1), (0x00018602, 206),
    (0x00018702, 1), (0x00018904, 205), (0x00018b02, 1), (0x00018e02, 79),
    (0x00018f02, 202), (0x00019002, 203), (0x00019102, 1), (0x00019302, 205),
    (0x00019402, 207), (0x00019602, 211), (0x00019702, 209), (0x00019802, 1),
    (0x00019c02, 211), (0x00019d02, 213), (0x00019f02, 214), (0x0001a007, 1),
    (0x0001a602, 218), (0x0001a702, 1), (0x0001a902, 218), (0x0001ac02, 1),
    (0x0001ae02, 218), (0x0001af02, 1), (0x0001b104, 217), (0x0001b305, 1),
    (0x0001b702, 219), (0x0001b802, 1), (0x0001bc02, 1), (0x0001c402, 2),
    (0x0001c502, 1), (0x0001c702, 2), (0x0001c802, 1), (0x0001ca02, 2),
    (0x0001cb13, 1), (0x0001de13, 1), (0x0001f102, 2), (0x0001f205, 1),
    (0x0001f602, -97), (0x0001f702, -56), (0x0001f829, 1), (0x00022002, -130),
    (0x00022213, 1), (0x00023a02, 10795), (0x00023b02, 1), (0x00023d02, -163),
    (0x00023e02, 10792), (0x00024102, 1), (0x00024302, -195), (0x00024402, 69),
    (0x00024502, 71), (0x0002460b, 1), (0x00037005, 1), (0x00037602, 1),
    (0x00037f02, 116), (0x00038602, 38), (0x00038806, 37), (0x00038c02, 64),
    (0x00038e04, 63), (0x00039122, 32), (0x0003a312, 32), (0x0003cf02, 8),
    (0x0003d819, 1), (0x0003f402, -60), (0x0003f702, 1), (0x0003f902, -7),
    (0x0003fa02, 1), (0x0003fd06, -130), (0x00040020, 80), (0x00041040, 32),
    (0x00046023, 1), (0x00048a37, 1), (0x0004c002, 15), (0x0004c10f, 1),
    (0x0004d061, 1), (0x0005314c, 48), (0x0010a04c, 7264), (0x0010c702, 7264),
    (0x0010cd02, 7264), (0x0013a0a0, 38864), (0x0013f00c, 8), (0x001c8902, 1),
    (0x001c9056, -3008), (0x001cbd06, -3008), (0x001e0097, 1), (0x001e9e02, -7615),
    (0x001ea061, 1), (0x001f0810, -8), (0x001f180c, -8), (0x001f2810, -8),
    (0x001f3810, -8), (0x001f480c, -8), (0x001f5909, -8), (0x001f6810, -8),
    (0x001f8810, -8), (0x001f9810, -8), (0x001fa810, -8), (0x001fb804, -8),
    (0x001fba04, -74), (0x001fbc02, -9), (0x001fc808, -86), (0x001fcc02, -9),
    (0x001fd804, -8), (0x001fda04, -100), (0x001fe804, -8), (0x001fea04, -112),
    (0x001fec02, -7), (0x001ff804, -128), (0x001ffa04, -126), (0x001ffc02, -9),
    (0x00212602, -7517), (0x00212a02, -8383), (0x00212b02, -8262), (0x00213202, 28),
    (0x00216020, 16), (0x00218302, 1), (0x0024b634, 26), (0x002c0060, 48),
    (0x002c6002, 1), (0x002c6202, -10743), (0x002c6302, -3814), (0x002c6402, -10727),
    (0x002c6707, 1), (0x002c6d02, -10780), (0x002c6e02, -10749), (0x002c6f02, -10783),
    (0x002c7002, -10782), (0x002c7202, 1), (0x002c7502, 1), (0x002c7e04, -10815),
    (0x002c8065, 1), (0x002ceb05, 1), (0x002cf202, 1), (0x00a6402f, 1),
    (0x00a6801d, 1), (0x00a7220f, 1), (0x00a7323f, 1), (0x00a77905, 1),
    (0x00a77d02, -35332), (0x00a77e0b, 1), (0x00a78b02, 1), (0x00a78d02, -42280),
    (0x00a79005, 1), (0x00a79615, 1), (0x00a7aa02, -42308), (0x00a7ab02, -42319),
    (0x00a7ac02, -42315), (0x00a7ad02, -42305), (0x00a7ae02, -42308), (0x00a7b002, -42258),
    (0x00a7b102, -42282), (0x00a7b202, -42261), (0x00a7b302, 928), (0x00a7b411, 1),
    (0x00a7c402, -48), (0x00a7c502, -42307), (0x00a7c602, -35384), (0x00a7c705, 1),
    (0x00a7cb02, -42343), (0x00a7cc11, 1), (0x00a7dc02, -42561), (0x00a7f502, 1),
    (0x00ff2134, 32), (0x01040050, 40), (0x0104b048, 40), (0x01057016, 39),
    (0x01057c1e, 39), (0x01058c0e, 39), (0x01059404, 39), (0x010c8066, 64),
    (0x010d502c, 32), (0x0118a040, 32), (0x016e4040, 32), (0x016ea032, 27),
    (0x01e90044, 34),
];

/// `İ` (U+0130), the one character whose lower case is two: `i` and a combining dot above.
const CAPITAL_I_WITH_DOT: char = '\u{130}';

/// Appends the lower case of `c` to `out`: what `out.extend(c.to_lowercase())` appends.
pub(crate) fn push_lowercase(c: char, out: &mut String) {
    if c == CAPITAL_I_WITH_DOT {
        out.push_str("i\u{307}");
        return;
    }
    out.push(lowercase(c));
}

/// The lower case of `c` when it is one character (every `c` but U+0130).
fn lowercase(c: char) -> char {
    let code = u32::from(c);
    let after = RUNS.partition_point(|&(packed, _)| packed >> 8 <= code);
    let Some(&(packed, delta)) = after.checked_sub(1).and_then(|at| RUNS.get(at)) else {
        return c;
    };
    let (first, count, stride) = (packed >> 8, (packed >> 1) & 0x7f, (packed & 1) + 1);
    let offset = code - first;
    if offset % stride != 0 || offset / stride >= count {
        return c;
    }
    code.checked_add_signed(delta)
        .and_then(char::from_u32)
        .unwrap_or(c)
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::format;
    use alloc::vec::Vec;
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    /// The runs as built from `char::to_lowercase`: each mapped character (to one character)
    /// with its delta, joined greedily into the longest run of stride 1 or 2.
    fn runs_of_std() -> Vec<(u32, i32)> {
        let mapped: Vec<(u32, i32)> = (0..=u32::from(char::MAX))
            .filter_map(char::from_u32)
            .filter_map(|c| {
                let mut lower = c.to_lowercase();
                let one = lower.next()?;
                (lower.next().is_none() && one != c)
                    .then(|| (u32::from(c), u32::from(one) as i32 - u32::from(c) as i32))
            })
            .collect();
        let mut runs = Vec::new();
        let mut at = 0;
        while let Some(&(first, delta)) = mapped.get(at) {
            let (count, stride) = [1u32, 2]
                .into_iter()
                .map(|stride| {
                    let same =
                        |n: usize| mapped.get(at + n) == Some(&(first + stride * n as u32, delta));
                    ((1..).take_while(|&n| same(n)).count() + 1, stride)
                })
                .max_by_key(|&(count, stride)| (count, core::cmp::Reverse(stride)))
                .unwrap_or((1, 1));
            runs.push(((first << 8) | ((count as u32) << 1) | (stride - 1), delta));
            at += count;
        }
        runs
    }

    #[test]
    fn the_runs_are_the_standard_librarys_mapping() {
        let runs = runs_of_std();
        let table: Vec<_> = runs
            .iter()
            .map(|(packed, delta)| format!("(0x{packed:08x}, {delta}),"))
            .collect();
        assert_eq!(
            RUNS.as_slice(),
            runs.as_slice(),
            "RUNS should be:\n{}",
            table.join(" ")
        );
    }

    #[test]
    fn every_character_lower_cases_as_char_to_lowercase_does() {
        for c in (0..=u32::from(char::MAX)).filter_map(char::from_u32) {
            let mut ours = String::new();
            push_lowercase(c, &mut ours);
            let std: String = c.to_lowercase().collect();
            assert_eq!(ours, std, "U+{:04X}", u32::from(c));
        }
    }
}
