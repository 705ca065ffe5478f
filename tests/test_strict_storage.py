"""Strict storage, through the real worker under `wrangler dev`: a stored value the inbox does not
know is never read as some default. A dead letter whose state is corrupted in workerd's SQLite
(while the worker is stopped) is not resent, not replayable, and its row is left as it is; a
resend of its event is still a duplicate; the log and one alert say which row is unreadable.
The same restart also brings an inbox of an older schema up to date under workerd: its dead
columns go (migration 3), and its `deliveries` rows, the corrupted one included, become its
events' lists of copies (migration 4)."""

import json
import pathlib
import sqlite3
import time
import uuid

import didit
import test_schema
from harness import ADMIN_TOKEN, base_config
from test_nothing_lost import accepted, dead_letters, send_payload, wait_until
from test_operations import ALERTS_SECRET, alerts_of

DEAD_COLUMNS = {"events": ["payload_expires_at_ms", "forget_at_ms"], "deliveries": ["last_error"],
                "refusals": ["at_ms"]}


def inbox_file(persist_dir, event_id):
    """The Inbox object's SQLite file that holds `event_id`, and the event's seq there."""
    for path in (pathlib.Path(persist_dir) / "v3" / "do").glob("*-Inbox/*.sqlite"):
        connection = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5)
        try:
            row = connection.execute("SELECT seq FROM events WHERE id = ?", (event_id,)).fetchone()
        except sqlite3.OperationalError:
            row = None
        finally:
            connection.close()
        if row:
            return path, row[0]
    raise AssertionError(f"no inbox holds {event_id}")


COPY_FIELDS = ("consumer", "state", "failures", "next_attempt_at_ms", "delivered_at_ms", "dead_at_ms",
               "dead_reason", "origin", "index_sync")


def copy_row(path, seq):
    """The event's copies as stored, whichever schema the object is at: rows of `deliveries`
    (before migration 4) or entries of `events.copies` (after), as the same tuples."""
    connection = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5)
    try:
        tables = {t for (t,) in connection.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        if "deliveries" in tables:
            return connection.execute(
                f"SELECT event_seq, {', '.join(COPY_FIELDS)} FROM deliveries WHERE event_seq = ?", (seq,)).fetchall()
        [copies] = connection.execute("SELECT copies FROM events WHERE seq = ?", (seq,)).fetchone()
        return [(seq, *(entry[field] for field in COPY_FIELDS)) for entry in json.loads(copies)]
    finally:
        connection.close()


def back_to_schema_2(connection):
    """Puts an inbox this release created back the way release 2 of the schema kept it: the
    first schema with migrations 1 and 2, its events and copies moved back into `events` and
    `deliveries`, the subject into `meta`, and the columns migration 3 dropped."""
    connection.execute("ALTER TABLE events RENAME TO events_now")
    statements = test_schema.constant("SCHEMA_V1") + ";".join(test_schema.migrations()[:3])
    for statement in filter(str.strip, statements.split(";")):
        try:
            connection.execute(statement)
        except sqlite3.OperationalError as error:
            # Later tables this release created as they are now (with `location`, without `at_ms`).
            assert "duplicate column" in str(error) or "no such column" in str(error), error
    columns_now = "seq, id, alias, received_at_ms, webhook_type, risk_level, created_at, cloud_event, status, " \
                  "id_version, classified, body, verified, test"
    connection.execute(f"INSERT INTO events ({columns_now}) SELECT {columns_now} FROM events_now")
    connection.execute(
        f"INSERT INTO deliveries (event_seq, {', '.join(COPY_FIELDS)}) SELECT e.seq, "
        + ", ".join(f"json_extract(c.value, '$.{field}')" for field in COPY_FIELDS)
        + " FROM events_now e, json_each(e.copies) c")
    connection.execute("INSERT OR REPLACE INTO meta (key, value) "
                       "SELECT 'subject', subject FROM events_now WHERE subject IS NOT NULL LIMIT 1")
    connection.execute("DROP TABLE events_now")
    for table, dropped in DEAD_COLUMNS.items():
        for column in dropped:
            connection.execute(f"ALTER TABLE {table} ADD COLUMN {column} INTEGER")
    connection.execute("INSERT OR REPLACE INTO meta (key, value) VALUES ('schema_version', '2')")


def columns(path, table):
    connection = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5)
    try:
        return [row[1] for row in connection.execute(f"PRAGMA table_info({table})")]
    finally:
        connection.close()


def test_a_corrupted_dead_letter_is_left_alone_not_resent_and_its_event_stays_a_duplicate(make_edge, make_origin):
    origin, receiver = make_origin(), make_origin(secret=ALERTS_SECRET)
    origin.status = 500
    edge = make_edge("strict-storage", base_config(origin.url, ADMIN_TOKEN=ADMIN_TOKEN, RETRY_SCHEDULE="1x2",
                                                   ALERTS_URL=receiver.url, ALERTS_SIGNING_SECRET=ALERTS_SECRET))
    session, person = str(uuid.uuid4()), f"person-{uuid.uuid4()}"
    payload = didit.session_payload(session_id=session, vendor_data=person)
    event = accepted(edge, payload)
    assert wait_until(lambda: [d["id"] for d in dead_letters(edge)] == [event], timeout=30)
    assert receiver.wait_for(lambda r: alerts_of(r, "didit-edge.dead_letter.created"), timeout=30)
    tried = len(origin.received)
    assert tried == 3, "the first attempt and the schedule's two retries"

    # Stopped, the inbox is put back to an older schema (2), and the dead letter's state is
    # corrupted in workerd's own SQLite file.
    edge.stop()
    path, seq = inbox_file(edge.persist_dir, event)
    connection = sqlite3.connect(path, timeout=5)
    with connection:
        back_to_schema_2(connection)
        connection.execute("UPDATE deliveries SET state = 'deadd' WHERE event_seq = ?", (seq,))
    connection.close()
    corrupted = copy_row(path, seq)
    assert len(corrupted) == 1 and "deadd" in corrupted[0]

    origin.status = 204
    edge.start()
    # Didit resends the event: still a duplicate (the inbox loads, finds the row unreadable).
    status, reply = send_payload(edge, payload)
    assert (status, reply["status"], reply["id"]) == (200, "duplicate", event)
    # An operator's replay finds nothing it may resend.
    status, reply = edge.admin("POST", f"/admin/dead-letters/{event}/replay")
    assert (status, reply["error"]["code"]) == (404, "dead_letter_not_found")

    # The log names table, column, row and text; one alert says the same.
    assert wait_until(lambda: edge.log_events("storage_unreadable"), timeout=10)
    [line] = edge.log_events("storage_unreadable")
    assert line == {"event": "storage_unreadable", "table": "events.copies", "column": "state",
                    "row": f"seq={seq} consumer=default", "expected": "copy_state", "text": "deadd",
                    "event_id": event, "subject_kind": "session"}
    assert receiver.wait_for(lambda r: alerts_of(r, "didit-edge.storage.unreadable"), timeout=30)
    [alert] = alerts_of(receiver, "didit-edge.storage.unreadable")
    assert alert["event"]["data"] == {key: line[key] for key in
                                      ("table", "column", "row", "expected", "text", "event_id", "subject_kind")}

    # A later event of the subject makes the inbox run again: the corrupted copy's consumer is
    # held (what the row held may have been pending), and the alert is not repeated.
    later = accepted(edge, didit.session_payload(session_id=session, vendor_data=person, status="Declined",
                                                 timestamp=int(time.time()) + 1))
    time.sleep(6)
    assert len(origin.received) == tried, "nothing was resent, and nothing overtook the held copy"
    assert later not in origin.delivered_ids()
    assert len(alerts_of(receiver, "didit-edge.storage.unreadable")) == 1
    assert copy_row(path, seq) == corrupted, "the row is left as it is"

    # Nor after a restart: the inbox loads again and logs the row again, but the alert was raised.
    edge.stop()
    edge.start()
    status, reply = send_payload(edge, payload)
    assert (status, reply["status"]) == (200, "duplicate")
    assert wait_until(lambda: edge.log_events("storage_unreadable"), timeout=10)
    time.sleep(6)
    assert len(alerts_of(receiver, "didit-edge.storage.unreadable")) == 1
    assert len(origin.received) == tried
    assert copy_row(path, seq) == corrupted

    # The older schema was brought up to date under workerd: the dead columns are gone, and so
    # is `deliveries`, whose rows are the events' lists of copies now.
    for table, dropped in DEAD_COLUMNS.items():
        assert not set(dropped) & set(columns(path, table)), table
    assert columns(path, "deliveries") == []
    assert "copies" in columns(path, "events") and "subject" in columns(path, "events")

    everything = "\n".join(edge.log_lines()) + repr([r["event"] for r in receiver.received])
    assert session not in everything and person not in everything, "no identity data in logs or alerts"
