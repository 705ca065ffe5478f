"""The inbox's schema: an object that never stored anything gets the current schema at once
(one statement list), and one an older release created migrates step by step. Both must end
with the same tables and columns; this checks it with SQLite itself, reading the statements
from edge-worker/src/inbox/store.rs."""

import pathlib
import re
import sqlite3

STORE = pathlib.Path(__file__).resolve().parent.parent / "edge-worker" / "src" / "inbox" / "store.rs"


def constant(name):
    source = STORE.read_text()
    match = re.search(rf'const {name}: &str = "(.*?)";', source, re.S)
    assert match, name
    return match.group(1)


def migrations():
    source = STORE.read_text()
    block = re.search(r'const MIGRATIONS: &\[&str\] = &\[(.*?)\];', source, re.S).group(1)
    return re.findall(r'"(.*?)"', block, re.S)


def columns(connection):
    tables = [row[0] for row in connection.execute("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")]
    return {table: [(row[1], row[2], row[3], row[4]) for row in connection.execute(f"PRAGMA table_info({table})")]
            for table in tables if table != "sqlite_sequence"}


def indexes(connection):
    return sorted(row[0] for row in connection.execute("SELECT name FROM sqlite_master WHERE type = 'index' AND sql IS NOT NULL"))


def test_a_fresh_inbox_and_a_migrated_one_have_the_same_schema():
    fresh = sqlite3.connect(":memory:")
    fresh.executescript(constant("SCHEMA_CURRENT"))
    migrated = sqlite3.connect(":memory:")
    migrated.executescript(constant("SCHEMA_V1"))
    assert migrations(), "the migrations were read"
    for migration in migrations():
        migrated.executescript(migration)
    assert columns(fresh) == columns(migrated)
    assert indexes(fresh) == indexes(migrated)
