//! How answers print: as the API's JSON, or as cells in left-aligned tables.

use std::fmt::Display;

use didit_edge_core::time::to_rfc3339;
use serde::Serialize;
use serde_json::Value;

/// An answer as the API's JSON, on one line.
pub(super) fn print_json(view: &impl Serialize) {
    // Through a `Value`, so keys print in the order they always have (sorted).
    match serde_json::to_value(view) {
        Ok(value) => println!("{value}"),
        Err(error) => eprintln!("the answer could not be printed as JSON: {error}"),
    }
}

/// A field as a table cell: `-` for nothing.
pub(super) fn cell(value: Option<impl Display>) -> String {
    value.map_or_else(|| "-".into(), |value| value.to_string())
}

/// A value's name on the wire (`sweep_done`), as a cell.
pub(super) fn wire_name(value: &impl Serialize) -> String {
    match serde_json::to_value(value) {
        Ok(Value::String(name)) => name,
        Ok(other) => other.to_string(),
        Err(_) => "-".into(),
    }
}

/// Left-aligned columns two spaces apart, headers first.
pub(super) fn table(headers: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let line = |cells: Vec<&str>| {
        let mut out = String::new();
        for (index, (cell, width)) in cells.iter().zip(&widths).enumerate() {
            if index + 1 == cells.len() {
                out.push_str(cell);
            } else {
                out.push_str(&format!("{cell:<width$}  "));
            }
        }
        out.trim_end().to_owned()
    };
    let mut out = vec![line(headers.to_vec())];
    out.extend(
        rows.iter()
            .map(|row| line(row.iter().map(String::as_str).collect())),
    );
    out.join("\n")
}

/// A moment in Unix ms as RFC 3339.
pub(super) fn ms_time(ms: i64) -> String {
    to_rfc3339(ms.div_euclid(1000))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_align_columns() {
        let rows = vec![
            vec!["a".to_owned(), "long value".to_owned(), "x".to_owned()],
            vec!["bbbb".to_owned(), "v".to_owned(), "y".to_owned()],
        ];
        assert_eq!(
            table(&["H1", "H2", "H3"], &rows),
            "H1    H2          H3\na     long value  x\nbbbb  v           y"
        );
    }
}
