//! Didit's canonical JSON, the message behind `X-Signature-V2`.
//!
//! Didit signs the *parsed* body re-serialized the way Python's
//! `json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=…)` writes it, after
//! turning every float with a whole value into an integer. Reproducing that byte for byte is the
//! whole job, so this module has its own small parser: a general JSON library would round
//! numbers through `f64` (losing big integers and changing `97.0`), merge or reject duplicate
//! keys differently, and order keys by its own rules.
//!
//! What Python does, and so what this does:
//! - objects: keys sorted by code point (byte order of UTF-8 is the same order); a key that
//!   appears twice keeps its last value, as `json.loads` does;
//! - integers (no `.`, `e`, `E`): Python ints have no size limit, so the digits are kept as
//!   written, `-0` becoming `0`;
//! - other numbers are parsed to the nearest `f64`; a whole, finite value is written as the exact
//!   integer of that `f64` (`97.0` → `97`, `1e20` → `100000000000000000000`); anything else in
//!   Python's `repr` (shortest round-trip digits, exponent form below `1e-4`: `1e-05`);
//! - strings: `"` `\` and control characters escaped as Python does; other non-ASCII either
//!   escaped as `\uXXXX` (surrogate pairs above the BMP, lowercase hex) or left as UTF-8.

use alloc::borrow::Cow;
use alloc::string::String;
use alloc::vec::Vec;
use core::fmt::{self, Write as _};

/// Nesting deeper than this is refused rather than risking the stack; Didit payloads are a
/// handful of levels deep and serde_json stops at the same depth.
pub const MAX_DEPTH: usize = 128;

/// How non-ASCII text is written.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum NonAscii {
    /// `\uXXXX` escapes, as `ensure_ascii=True` writes (Didit's current documentation).
    Escaped,
    /// Raw UTF-8, as `ensure_ascii=False` writes (Didit's sample code).
    Utf8,
}

/// Why a body has no canonical form.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum CanonicalError {
    /// The body is not JSON; the byte offset is where parsing stopped.
    Syntax {
        /// Offset into the body of the first byte that could not be parsed.
        offset: usize,
    },
    /// The body nests arrays and objects deeper than [`MAX_DEPTH`].
    TooDeep,
    /// A string holds a `\u` escape of a lone surrogate, which has no UTF-8 form.
    LoneSurrogate {
        /// Offset into the body of the escape.
        offset: usize,
    },
}

impl fmt::Display for CanonicalError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Syntax { offset } => write!(f, "invalid JSON at byte {offset}"),
            Self::TooDeep => write!(f, "JSON nests deeper than {MAX_DEPTH} levels"),
            Self::LoneSurrogate { offset } => {
                write!(f, "lone UTF-16 surrogate escape at byte {offset}")
            }
        }
    }
}

impl core::error::Error for CanonicalError {}

/// A parsed JSON value that still holds numbers as written.
#[derive(Debug)]
enum Node<'a> {
    Null,
    Bool(bool),
    Number(&'a str),
    String(Cow<'a, str>),
    Array(Vec<Self>),
    Object(Vec<(Cow<'a, str>, Self)>),
}

/// A body parsed once and ready to be written in either canonical form.
#[derive(Debug)]
pub struct CanonicalJson<'a> {
    root: Node<'a>,
    /// The body's length: the canonical form is about as long, so its buffer is sized once.
    body_len: usize,
}

impl<'a> CanonicalJson<'a> {
    /// Parses `body`, which must be one JSON value with optional surrounding whitespace.
    pub fn parse(body: &'a [u8]) -> Result<Self, CanonicalError> {
        let mut parser = Parser {
            input: body,
            pos: 0,
        };
        parser.skip_whitespace();
        let root = parser.value(0)?;
        parser.skip_whitespace();
        if parser.pos != body.len() {
            return Err(CanonicalError::Syntax { offset: parser.pos });
        }
        Ok(Self {
            root,
            body_len: body.len(),
        })
    }

    /// Drops every member named `key` from the top-level object; other values are untouched.
    /// Event identity uses it to leave out the one field Didit may change between attempts.
    pub fn remove_top_level(&mut self, key: &str) {
        if let Node::Object(members) = &mut self.root {
            members.retain(|(name, _)| name != key);
        }
    }

    /// Writes the canonical form.
    pub fn to_string(&self, non_ascii: NonAscii) -> String {
        let mut out = String::with_capacity(self.body_len);
        write_node(&self.root, non_ascii, &mut out);
        out
    }
}

struct Parser<'a> {
    input: &'a [u8],
    pos: usize,
}

impl<'a> Parser<'a> {
    fn syntax(&self) -> CanonicalError {
        CanonicalError::Syntax { offset: self.pos }
    }

    /// The input between two offsets as text; invalid UTF-8 is a syntax error at its first bad byte.
    fn text(&self, start: usize, end: usize) -> Result<&'a str, CanonicalError> {
        let bytes = self.input.get(start..end).ok_or(self.syntax())?;
        core::str::from_utf8(bytes).map_err(|e| CanonicalError::Syntax {
            offset: start + e.valid_up_to(),
        })
    }

    fn peek(&self) -> Option<u8> {
        self.input.get(self.pos).copied()
    }

    /// Moves past bytes that are plain string content (not `"`, `\\` or a control character).
    fn skip_plain_string_bytes(&mut self) {
        let rest = self.input.get(self.pos..).unwrap_or_default();
        self.pos += rest
            .iter()
            .position(|&b| b == b'"' || b == b'\\' || b < 0x20)
            .unwrap_or(rest.len());
    }

    fn skip_whitespace(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t' | b'\n' | b'\r')) {
            self.pos += 1;
        }
    }

    fn expect_literal(&mut self, literal: &[u8]) -> Result<(), CanonicalError> {
        if self.input.get(self.pos..self.pos + literal.len()) == Some(literal) {
            self.pos += literal.len();
            Ok(())
        } else {
            Err(self.syntax())
        }
    }

    fn value(&mut self, depth: usize) -> Result<Node<'a>, CanonicalError> {
        match self.peek() {
            Some(b'n') => self.expect_literal(b"null").map(|()| Node::Null),
            Some(b't') => self.expect_literal(b"true").map(|()| Node::Bool(true)),
            Some(b'f') => self.expect_literal(b"false").map(|()| Node::Bool(false)),
            Some(b'"') => self.string().map(Node::String),
            Some(b'[') => self.array(depth + 1),
            Some(b'{') => self.object(depth + 1),
            Some(b'-' | b'0'..=b'9') => self.number().map(Node::Number),
            _ => Err(self.syntax()),
        }
    }

    fn array(&mut self, depth: usize) -> Result<Node<'a>, CanonicalError> {
        if depth > MAX_DEPTH {
            return Err(CanonicalError::TooDeep);
        }
        self.pos += 1;
        let mut items = Vec::new();
        self.skip_whitespace();
        if self.peek() == Some(b']') {
            self.pos += 1;
            return Ok(Node::Array(items));
        }
        loop {
            self.skip_whitespace();
            items.push(self.value(depth)?);
            self.skip_whitespace();
            match self.peek() {
                Some(b',') => self.pos += 1,
                Some(b']') => {
                    self.pos += 1;
                    return Ok(Node::Array(items));
                }
                _ => return Err(self.syntax()),
            }
        }
    }

    fn object(&mut self, depth: usize) -> Result<Node<'a>, CanonicalError> {
        if depth > MAX_DEPTH {
            return Err(CanonicalError::TooDeep);
        }
        self.pos += 1;
        let mut members = Vec::new();
        self.skip_whitespace();
        if self.peek() == Some(b'}') {
            self.pos += 1;
            return Ok(Node::Object(members));
        }
        loop {
            self.skip_whitespace();
            if self.peek() != Some(b'"') {
                return Err(self.syntax());
            }
            let key = self.string()?;
            self.skip_whitespace();
            if self.peek() != Some(b':') {
                return Err(self.syntax());
            }
            self.pos += 1;
            self.skip_whitespace();
            let value = self.value(depth)?;
            members.push((key, value));
            self.skip_whitespace();
            match self.peek() {
                Some(b',') => self.pos += 1,
                Some(b'}') => {
                    self.pos += 1;
                    return Ok(Node::Object(members));
                }
                _ => return Err(self.syntax()),
            }
        }
    }

    /// Validates the RFC 8259 number grammar and returns the number's text.
    fn number(&mut self) -> Result<&'a str, CanonicalError> {
        let start = self.pos;
        if self.peek() == Some(b'-') {
            self.pos += 1;
        }
        match self.peek() {
            Some(b'0') => self.pos += 1,
            Some(b'1'..=b'9') => self.skip_digits(),
            _ => return Err(self.syntax()),
        }
        if self.peek() == Some(b'.') {
            self.pos += 1;
            self.require_digits()?;
        }
        if matches!(self.peek(), Some(b'e' | b'E')) {
            self.pos += 1;
            if matches!(self.peek(), Some(b'+' | b'-')) {
                self.pos += 1;
            }
            self.require_digits()?;
        }
        // Only ASCII digits, signs, `.` and exponent letters were consumed.
        self.text(start, self.pos)
    }

    fn skip_digits(&mut self) {
        while matches!(self.peek(), Some(b'0'..=b'9')) {
            self.pos += 1;
        }
    }

    fn require_digits(&mut self) -> Result<(), CanonicalError> {
        if !matches!(self.peek(), Some(b'0'..=b'9')) {
            return Err(self.syntax());
        }
        self.skip_digits();
        Ok(())
    }

    /// Parses a string, borrowing it when it holds no escapes.
    fn string(&mut self) -> Result<Cow<'a, str>, CanonicalError> {
        self.pos += 1;
        let start = self.pos;
        // Fast path: no escapes, so the text can be borrowed.
        self.skip_plain_string_bytes();
        match self.peek() {
            Some(b'"') => {
                let text = self.text(start, self.pos)?;
                self.pos += 1;
                return Ok(Cow::Borrowed(text));
            }
            Some(b'\\') => {}
            _ => return Err(self.syntax()),
        }
        let mut owned = String::from(self.text(start, self.pos)?);
        loop {
            let run_start = self.pos;
            self.skip_plain_string_bytes();
            owned.push_str(self.text(run_start, self.pos)?);
            match self.peek() {
                Some(b'"') => {
                    self.pos += 1;
                    return Ok(Cow::Owned(owned));
                }
                Some(b'\\') => {
                    self.pos += 1;
                    self.escape(&mut owned)?;
                }
                _ => return Err(self.syntax()),
            }
        }
    }

    fn escape(&mut self, out: &mut String) -> Result<(), CanonicalError> {
        let escape_start = self.pos - 1;
        let byte = self.peek().ok_or(self.syntax())?;
        self.pos += 1;
        let decoded = match byte {
            b'"' => '"',
            b'\\' => '\\',
            b'/' => '/',
            b'b' => '\u{8}',
            b'f' => '\u{c}',
            b'n' => '\n',
            b'r' => '\r',
            b't' => '\t',
            b'u' => {
                let first = self.hex4()?;
                let code = match first {
                    0xD800..=0xDBFF => {
                        if self.input.get(self.pos..self.pos + 2) != Some(b"\\u") {
                            return Err(CanonicalError::LoneSurrogate {
                                offset: escape_start,
                            });
                        }
                        self.pos += 2;
                        let second = self.hex4()?;
                        if !(0xDC00..=0xDFFF).contains(&second) {
                            return Err(CanonicalError::LoneSurrogate {
                                offset: escape_start,
                            });
                        }
                        0x10000 + ((first - 0xD800) << 10) + (second - 0xDC00)
                    }
                    0xDC00..=0xDFFF => {
                        return Err(CanonicalError::LoneSurrogate {
                            offset: escape_start,
                        })
                    }
                    other => other,
                };
                char::from_u32(code).ok_or(CanonicalError::LoneSurrogate {
                    offset: escape_start,
                })?
            }
            _ => {
                return Err(CanonicalError::Syntax {
                    offset: escape_start,
                })
            }
        };
        out.push(decoded);
        Ok(())
    }

    fn hex4(&mut self) -> Result<u32, CanonicalError> {
        let digits = self
            .input
            .get(self.pos..self.pos + 4)
            .ok_or(self.syntax())?;
        let mut value = 0u32;
        for &digit in digits {
            let nibble = (digit as char).to_digit(16).ok_or(self.syntax())?;
            value = (value << 4) | nibble;
        }
        self.pos += 4;
        Ok(value)
    }
}

fn write_node(node: &Node<'_>, non_ascii: NonAscii, out: &mut String) {
    match node {
        Node::Null => out.push_str("null"),
        Node::Bool(true) => out.push_str("true"),
        Node::Bool(false) => out.push_str("false"),
        Node::Number(text) => write_number(text, out),
        Node::String(text) => write_string(text, non_ascii, out),
        Node::Array(items) => {
            out.push('[');
            for (index, item) in items.iter().enumerate() {
                if index > 0 {
                    out.push(',');
                }
                write_node(item, non_ascii, out);
            }
            out.push(']');
        }
        Node::Object(members) => {
            let mut sorted: Vec<&(Cow<'_, str>, Node<'_>)> = members.iter().collect();
            // Stable, so among equal keys the last one written stays last.
            sorted.sort_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
            out.push('{');
            let mut first = true;
            for (index, (key, value)) in sorted.iter().map(|m| (&m.0, &m.1)).enumerate() {
                let shadowed = sorted.get(index + 1).is_some_and(|next| next.0 == *key);
                if shadowed {
                    continue;
                }
                if !first {
                    out.push(',');
                }
                first = false;
                write_string(key, non_ascii, out);
                out.push(':');
                write_node(value, non_ascii, out);
            }
            out.push('}');
        }
    }
}

/// Writes a string literal. Text that needs no escape is copied in runs, not char by char:
/// the canonical form is built for every delivery (the event id digests it), and most of a
/// large body is plain string content.
fn write_string(text: &str, non_ascii: NonAscii, out: &mut String) {
    out.push('"');
    let bytes = text.as_bytes();
    let mut run_start = 0;
    let mut index = 0;
    while let Some(&byte) = bytes.get(index) {
        let plain = match byte {
            b'"' | b'\\' | 0x00..=0x1f => false,
            // Python's ASCII mode escapes everything outside ' '..='~', DEL included; in UTF-8
            // mode a multi-byte character is copied whole, continuation bytes included.
            0x7f..=0xff => non_ascii == NonAscii::Utf8,
            _ => true,
        };
        if plain {
            index += 1;
            continue;
        }
        // `index` is a character boundary: an ASCII byte, or the first byte of a character
        // (escaped characters are stepped over whole).
        out.push_str(text.get(run_start..index).unwrap_or_default());
        index += match byte {
            b'"' => push(out, "\\\""),
            b'\\' => push(out, "\\\\"),
            b'\n' => push(out, "\\n"),
            b'\r' => push(out, "\\r"),
            b'\t' => push(out, "\\t"),
            0x08 => push(out, "\\b"),
            0x0c => push(out, "\\f"),
            0x00..=0x1f => {
                push_u_escape(u32::from(byte), out);
                1
            }
            _ => match text.get(index..).and_then(|rest| rest.chars().next()) {
                Some(ch) => {
                    let mut units = [0u16; 2];
                    for unit in ch.encode_utf16(&mut units) {
                        push_u_escape(u32::from(*unit), out);
                    }
                    ch.len_utf8()
                }
                None => 1,
            },
        };
        run_start = index;
    }
    out.push_str(text.get(run_start..).unwrap_or_default());
    out.push('"');
}

/// Appends `escape` (standing for one input byte) and returns 1, the bytes it consumed.
fn push(out: &mut String, escape: &str) -> usize {
    out.push_str(escape);
    1
}

fn push_u_escape(unit: u32, out: &mut String) {
    out.push_str("\\u");
    for shift in [12, 8, 4, 0] {
        out.push(char::from_digit((unit >> shift) & 0xf, 16).unwrap_or('0'));
    }
}

/// Writes a number as Python would after Didit's whole-float-to-int step.
fn write_number(text: &str, out: &mut String) {
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

#[cfg(test)]
mod tests {
    use super::*;
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    fn canon(input: &str, mode: NonAscii) -> String {
        match CanonicalJson::parse(input.as_bytes()) {
            Ok(json) => json.to_string(mode),
            Err(error) => panic!("{input:?} did not parse: {error}"),
        }
    }

    #[test]
    fn sorts_keys_recursively_and_compacts() {
        assert_eq!(
            canon(
                r#" { "b" : [ 1 , {"z":1,"a":2} ], "a" : null } "#,
                NonAscii::Escaped
            ),
            r#"{"a":null,"b":[1,{"a":2,"z":1}]}"#
        );
    }

    #[test]
    fn duplicate_keys_keep_the_last_value() {
        assert_eq!(
            canon(r#"{"a":1,"b":2,"a":3}"#, NonAscii::Utf8),
            r#"{"a":3,"b":2}"#
        );
    }

    #[test]
    fn numbers_follow_python() {
        let cases = [
            ("97.0", "97"),
            ("-0", "0"),
            ("-0.0", "0"),
            ("1e2", "100"),
            ("1E20", "100000000000000000000"),
            ("1e300", "1000000000000000052504760255204420248704468581108159154915854115511802457988908195786371375080447864043704443832883878176942523235360430575644792184786706982848387200926575803737830233794788090059368953234970799945081119038967640880074652742780142494579258788820056842838115669472196386865459400540160"),
            ("123456789012345678901234567890", "123456789012345678901234567890"),
            ("0.1", "0.1"),
            ("-189.99241999999998", "-189.99241999999998"),
            ("0.0001", "0.0001"),
            ("0.00001", "1e-05"),
            ("1.5e-7", "1.5e-07"),
            ("2.5E-100", "2.5e-100"),
            ("1e400", "Infinity"),
            ("-1e400", "-Infinity"),
            ("12.50", "12.5"),
        ];
        for (input, expected) in cases {
            assert_eq!(canon(input, NonAscii::Escaped), expected, "input {input}");
        }
    }

    #[test]
    fn strings_escape_like_python() {
        let input = "\"Jos\u{e9} \u{1F600} \\u00e9 \\\" \\\\ \\/ \\n\\t\\u0001\u{7f}\"";
        assert_eq!(
            canon(input, NonAscii::Escaped),
            "\"Jos\\u00e9 \\ud83d\\ude00 \\u00e9 \\\" \\\\ / \\n\\t\\u0001\\u007f\""
        );
        assert_eq!(
            canon(input, NonAscii::Utf8),
            "\"Jos\u{e9} \u{1F600} \u{e9} \\\" \\\\ / \\n\\t\\u0001\u{7f}\""
        );
    }

    #[test]
    fn keys_sort_by_code_point_after_unescaping() {
        assert_eq!(
            canon(
                r#"{"\u00e9":1,"z":2,"10":3,"9":4,"😀":5,"ﬀ":6}"#,
                NonAscii::Utf8
            ),
            "{\"10\":3,\"9\":4,\"z\":2,\"\u{e9}\":1,\"\u{fb00}\":6,\"\u{1F600}\":5}"
        );
    }

    #[test]
    fn rejects_what_is_not_json() {
        for input in [
            "",
            "{",
            "{\"a\"}",
            "[1,]",
            "01",
            "1.",
            "-",
            "\"\u{1}\"",
            "{\"a\":1}x",
            "NaN",
            "\"\\x\"",
            "[1 2]",
            "tru",
        ] {
            assert!(
                CanonicalJson::parse(input.as_bytes()).is_err(),
                "accepted {input:?}"
            );
        }
        assert_eq!(
            CanonicalJson::parse(br#""\ud800""#).err(),
            Some(CanonicalError::LoneSurrogate { offset: 1 })
        );
        assert!(CanonicalJson::parse(b"\"\xff\"").is_err());
    }

    #[test]
    fn refuses_deep_nesting_without_overflowing() {
        let deep = "[".repeat(MAX_DEPTH + 1) + &"]".repeat(MAX_DEPTH + 1);
        assert_eq!(
            CanonicalJson::parse(deep.as_bytes()).err(),
            Some(CanonicalError::TooDeep)
        );
        let fine = "[".repeat(MAX_DEPTH) + &"]".repeat(MAX_DEPTH);
        assert!(CanonicalJson::parse(fine.as_bytes()).is_ok());
    }
}
