"""The inbox's schema: an object that never stored anything gets the current schema at once
(one statement list), and creates its later tables when it first writes one; one an older
release created migrates step by step. Both must end with the same tables and columns, and
migration 4 must carry every event's copies and the subject's name into the event rows; this
checks it with SQLite itself, reading the statements from edge-worker/src/inbox/store.rs."""

import json
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


# ATTEMPTS_TABLE is what an object of an older release has (this release reads it and empties it
# as events are forgotten, and never creates it): a fresh object that had it would match a
# migrated one, so the code that reads it sees the same shape either way.
LATER_TABLES = ("META_TABLE", "REFUSALS_TABLE", "ATTEMPTS_TABLE", "ALIASES_TABLE")


def test_a_fresh_inbox_and_a_migrated_one_have_the_same_schema():
    fresh = sqlite3.connect(":memory:")
    fresh.executescript(constant("SCHEMA_CURRENT"))
    assert [t for (t,) in fresh.execute("SELECT name FROM sqlite_master WHERE type = 'table'")] == ["events"], \
        "a fresh object creates one table"
    for later in LATER_TABLES:
        fresh.executescript(constant(later))
    migrated = sqlite3.connect(":memory:")
    migrated.executescript(constant("SCHEMA_V1"))
    assert migrations(), "the migrations were read"
    for migration in migrations():
        migrated.executescript(migration)
    assert columns(fresh) == columns(migrated)
    assert indexes(fresh) == indexes(migrated)


def test_migration_4_moves_copies_and_the_subject_into_the_event_rows():
    db = sqlite3.connect(":memory:")
    db.executescript(constant("SCHEMA_V1"))
    *before, fourth = migrations()
    for migration in before:
        db.executescript(migration)
    db.executescript("""
        INSERT INTO meta VALUES ('subject', 'session:s1'), ('schema_version', '3');
        INSERT INTO events (seq, id, received_at_ms, webhook_type, risk_level, created_at, cloud_event)
            VALUES (1, 'evt_a', 10, 'status.updated', 'low', 5, '{"p":1}'),
                   (2, 'evt_b', 11, 'status.updated', 'high', 6, NULL);
        INSERT INTO deliveries (event_seq, consumer, state, failures, delivered_at_ms, origin)
            VALUES (1, 'default', 'delivered', 0, 20, 'aws');
        INSERT INTO deliveries (event_seq, consumer, state, failures, next_attempt_at_ms, index_sync)
            VALUES (1, 'crm', 'pending', 2, 30, 'put');
    """)
    db.executescript(fourth)
    rows = db.execute("SELECT seq, id, subject, copies, cloud_event FROM events ORDER BY seq").fetchall()
    assert [(seq, id_, subject, payload) for seq, id_, subject, _, payload in rows] == \
        [(1, "evt_a", "session:s1", '{"p":1}'), (2, "evt_b", "session:s1", None)]
    copies = {c["consumer"]: c for c in json.loads(rows[0][3])}
    assert copies == {
        "default": {"consumer": "default", "state": "delivered", "failures": 0, "next_attempt_at_ms": None,
                    "delivered_at_ms": 20, "dead_at_ms": None, "dead_reason": None, "origin": "aws",
                    "index_sync": None},
        "crm": {"consumer": "crm", "state": "pending", "failures": 2, "next_attempt_at_ms": 30,
                "delivered_at_ms": None, "dead_at_ms": None, "dead_reason": None, "origin": None,
                "index_sync": "put"},
    }
    assert json.loads(rows[1][3]) == []
    tables = {t for (t,) in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert "deliveries" not in tables
    assert db.execute("SELECT COUNT(*) FROM meta WHERE key = 'subject'").fetchone() == (0,)
