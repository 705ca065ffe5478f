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
