//! Writing `Node`s in the canonical form: compact, object keys sorted by code point with the
//! last of duplicate keys kept, and strings escaped as Python's `json.dumps` escapes them.
//! Numbers are left to `number`.

use alloc::borrow::Cow;
use alloc::string::String;
use alloc::vec::Vec;

use super::number::write_number;
use super::{Node, NonAscii};

/// Appends `node` in the canonical form.
pub(super) fn write_node(node: &Node<'_>, non_ascii: NonAscii, out: &mut String) {
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
            crate::sorted::sort_by(&mut sorted, |a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
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
