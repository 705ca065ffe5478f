"""Strict storage, through the real worker under `wrangler dev`: a stored value the inbox does not
know is never read as some default. A dead letter whose state is corrupted in workerd's SQLite
(while the worker is stopped) is not resent, not replayable, and its row is left as it is; a
resend of its event is still a duplicate; the log and one alert say which row is unreadable.
The same restart also brings an inbox of the previous schema up to date (its dead columns go)."""

import json
import pathlib
import sqlite3
import time
import uuid

import didit
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


def copy_row(path, seq):
    connection = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5)
    try:
        return connection.execute(
            "SELECT event_seq, consumer, state, failures, next_attempt_at_ms, delivered_at_ms, dead_at_ms, "
            "dead_reason, origin, index_sync FROM deliveries WHERE event_seq = ?", (seq,)).fetchall()
    finally:
        connection.close()


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

    # Stopped, the dead letter's state is corrupted in workerd's own SQLite file; and the inbox
    # is put back to the previous schema version, with the columns it dropped.
    edge.stop()
    path, seq = inbox_file(edge.persist_dir, event)
    connection = sqlite3.connect(path, timeout=5)
    with connection:
        connection.execute("UPDATE deliveries SET state = 'deadd' WHERE event_seq = ?", (seq,))
        for table, dropped in DEAD_COLUMNS.items():
            for column in dropped:
                connection.execute(f"ALTER TABLE {table} ADD COLUMN {column} INTEGER")
        connection.execute("UPDATE meta SET value = '2' WHERE key = 'schema_version'")
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
    assert line == {"event": "storage_unreadable", "table": "deliveries", "column": "state",
                    "row": f"event_seq={seq} consumer=default", "expected": "copy_state", "text": "deadd",
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

    # The previous schema was brought up to date under workerd: the dead columns are gone.
    for table, dropped in DEAD_COLUMNS.items():
        assert not set(dropped) & set(columns(path, table)), table

    everything = "\n".join(edge.log_lines()) + repr([r["event"] for r in receiver.received])
    assert session not in everything and person not in everything, "no identity data in logs or alerts"
