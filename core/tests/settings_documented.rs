//! Every setting the receiver reads (`core::config::names`) has a row in the README's
//! configuration table, so a new setting cannot ship undocumented.

use std::path::Path;

#[test]
fn every_setting_has_a_row_in_the_readme() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let names = std::fs::read_to_string(root.join("core/src/config/names.rs")).expect("names.rs");
    let readme = std::fs::read_to_string(root.join("README.md")).expect("README.md");
    let settings: Vec<&str> = names
        .lines()
        .filter_map(|line| line.trim().strip_prefix("pub const "))
        .filter_map(|rest| rest.split('"').nth(1))
        .collect();
    assert!(settings.len() >= 20, "read {} settings", settings.len());
    let missing: Vec<&&str> = settings
        .iter()
        .filter(|name| !readme.contains(&format!("| `{name}` |")))
        .collect();
    assert!(
        missing.is_empty(),
        "not in README's configuration table: {missing:?}"
    );
}
