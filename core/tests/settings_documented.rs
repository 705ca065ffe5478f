//! Every setting the receiver reads (`core::config::names`) has a row in the configuration
//! table of `docs/configuration.md`, so a new setting cannot ship undocumented.

use std::path::Path;

#[test]
fn every_setting_has_a_row_in_the_configuration_table() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let names = std::fs::read_to_string(root.join("core/src/config/names.rs")).expect("names.rs");
    let table =
        std::fs::read_to_string(root.join("docs/configuration.md")).expect("docs/configuration.md");
    let settings: Vec<&str> = names
        .lines()
        .filter_map(|line| line.trim().strip_prefix("pub const "))
        .filter_map(|rest| rest.split('"').nth(1))
        .collect();
    assert!(settings.len() >= 20, "read {} settings", settings.len());
    let missing: Vec<&&str> = settings
        .iter()
        .filter(|name| !table.contains(&format!("| `{name}` |")))
        .collect();
    assert!(
        missing.is_empty(),
        "not in docs/configuration.md's configuration table: {missing:?}"
    );
}

/// Every key an `ORIGINS` entry takes (the fields of `core::origin::Origin`) is named in the
/// `ORIGINS` row of the configuration table, and every format in docs/origins.md.
#[test]
fn every_origin_key_is_documented() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let source = std::fs::read_to_string(root.join("core/src/origin.rs")).expect("origin.rs");
    let table =
        std::fs::read_to_string(root.join("docs/configuration.md")).expect("docs/configuration.md");
    let row = table
        .lines()
        .find(|line| line.starts_with("| `ORIGINS` |"))
        .expect("an ORIGINS row");
    let body = source
        .split("pub struct Origin {")
        .nth(1)
        .and_then(|rest| rest.split("\n}").next())
        .expect("struct Origin");
    let keys: Vec<&str> = body
        .lines()
        .filter_map(|line| line.trim().strip_prefix("pub "))
        .filter_map(|rest| rest.split(':').next())
        .collect();
    assert!(keys.len() >= 15, "read {keys:?}");
    let missing: Vec<&&str> = keys
        .iter()
        .filter(|key| !row.contains(&format!("`{key}`")))
        .collect();
    assert!(missing.is_empty(), "not in the ORIGINS row: {missing:?}");
    let origins = std::fs::read_to_string(root.join("docs/origins.md")).expect("docs/origins.md");
    for format in ["\"format\": \"cloudevents\"", "\"format\": \"didit\""] {
        assert!(origins.contains(format), "docs/origins.md: {format}");
    }
}
