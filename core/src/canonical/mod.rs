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
//!
//! Reading (`parse`) and writing (`write`, with `number` for numbers) meet only at `Node`, the
//! parsed value that still holds each number's text as written.

mod float;
mod number;
mod parse;
mod write;

use alloc::borrow::Cow;
use alloc::string::String;
use alloc::vec::Vec;
use core::fmt;

/// Nesting deeper than this is refused rather than risking the stack; Didit payloads are a
/// handful of levels deep and serde_json stops at the same depth.
pub const MAX_DEPTH: usize = 128;

/// How non-ASCII text is written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NonAscii {
    /// `\uXXXX` escapes, as `ensure_ascii=True` writes (Didit's current documentation).
    Escaped,
    /// Raw UTF-8, as `ensure_ascii=False` writes (Didit's sample code).
    Utf8,
}

crate::named::by_name!(NonAscii {
    Escaped = "Escaped",
    Utf8 = "Utf8",
});

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
        Ok(Self {
            root: parse::document(body)?,
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

    /// Sets the top-level member `key` to the integer written `digits` (which must be a JSON
    /// integer), replacing every member of that name or adding one. The drop-in format uses it
    /// to date each attempt; `false` when the body is not an object (nothing is changed).
    pub fn set_top_level_integer(&mut self, key: &'a str, digits: &'a str) -> bool {
        self.set_top_level(key, Node::Number(digits))
    }

    /// Sets the top-level member `key` to the string `text`, as
    /// [`Self::set_top_level_integer`] does.
    pub fn set_top_level_string(&mut self, key: &'a str, text: String) -> bool {
        self.set_top_level(key, Node::String(Cow::Owned(text)))
    }

    /// The string at `path` (member names from the top; the last of duplicate keys, as
    /// Python reads them), if there is one. The drop-in format reads the stored CloudEvent
    /// with this parser, already in the upload, rather than with a serde model of its own.
    pub fn string_at(&self, path: &[&str]) -> Option<&str> {
        match node_at(&self.root, path)? {
            Node::String(text) => Some(text),
            _ => None,
        }
    }

    /// Makes the value at `path` the whole document; `false` (nothing changed) when there is
    /// none.
    pub fn descend(&mut self, path: &[&str]) -> bool {
        if node_at(&self.root, path).is_none() {
            return false;
        }
        for key in path {
            let root = core::mem::replace(&mut self.root, Node::Null);
            if let Node::Object(mut members) = root {
                if let Some(index) = members.iter().rposition(|(name, _)| name == key) {
                    self.root = members.swap_remove(index).1;
                }
            }
        }
        true
    }

    fn set_top_level(&mut self, key: &'a str, value: Node<'a>) -> bool {
        self.remove_top_level(key);
        let Node::Object(members) = &mut self.root else {
            return false;
        };
        members.push((Cow::Borrowed(key), value));
        true
    }

    /// Writes the canonical form.
    pub fn to_string(&self, non_ascii: NonAscii) -> String {
        let mut out = String::with_capacity(self.body_len);
        write::write_node(&self.root, non_ascii, &mut out);
        out
    }
}

/// The value at `path`: the last member of each name, as `json.loads` keeps.
fn node_at<'n, 'a>(root: &'n Node<'a>, path: &[&str]) -> Option<&'n Node<'a>> {
    let mut node = root;
    for key in path {
        let Node::Object(members) = node else {
            return None;
        };
        let index = members.iter().rposition(|(name, _)| name == key)?;
        node = &members.get(index)?.1;
    }
    Some(node)
}

#[cfg(test)]
mod tests;
