//! Reading a body into `Node`s without losing what the canonical form needs: each number's
//! text as written, every member of an object in order (duplicates included, so the writer can
//! keep the last as Python does), and strings with their escapes decoded.
//!
//! Invalid JSON, nesting past [`MAX_DEPTH`] and lone surrogate escapes are refused, the first
//! and the last with the offset where reading stopped.

use alloc::borrow::Cow;
use alloc::string::String;
use alloc::vec::Vec;

use super::{CanonicalError, Node, MAX_DEPTH};

/// Parses `body`, which must be one JSON value with optional surrounding whitespace.
pub(super) fn document(body: &[u8]) -> Result<Node<'_>, CanonicalError> {
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
    Ok(root)
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
