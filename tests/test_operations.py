"""What operators see and do around delivery, through the real worker under `wrangler dev`:
one structured log line per event transition, with no identity data in any of them; the trace
context origins receive; the erasure of one subject's data."""

import json
import pathlib
import sqlite3
import time
import uuid

import didit
import stream_tokens
from harness import ADMIN_TOKEN, base_config
from test_nothing_lost import accepted, dead_letters, send_payload, user_event, wait_until


def stored_cells_containing(persist_dir, needle):
    """Every stored value, in every Durable Object's SQLite, that contains `needle`: what the
    objects still hold, read table by table (what no API shows)."""
    found = []
    for path in (pathlib.Path(persist_dir) / "v3" / "do").glob("*/*.sqlite"):
        connection = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5)
        try:
            tables = [row[0] for row in connection.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
            for table in tables:
                # Not the objects' own: the platform's, and miniflare's record of each object's name
                # (on Cloudflare an object is found by a digest of its name).
                if table.startswith(("_cf", "sqlite_", "__miniflare")):
                    continue
                for row in connection.execute(f'SELECT * FROM "{table}"'):
                    found += [(path.parent.name, table, cell) for cell in row
                              if isinstance(cell, str) and needle in cell]
        finally:
            connection.close()
    return found


def events_of(edge, kind, event_id):
    return [record for record in edge.log_events(kind) if record.get("event_id") == event_id]


def test_every_transition_of_an_event_is_one_json_log_line_without_identity_data(make_edge, make_origin):
    origin = make_origin()
    origin.status = 503
    edge = make_edge("transition-log", base_config(origin.url, ADMIN_TOKEN=ADMIN_TOKEN, RETRY_SCHEDULE="1x30"))
    session, person = str(uuid.uuid4()), f"person-{uuid.uuid4()}"
    payload = didit.session_payload(session_id=session, vendor_data=person)
    event = accepted(edge, payload)
    status, reply = send_payload(edge, payload)
    assert (status, reply["status"]) == (200, "duplicate")
    assert origin.wait_for(lambda o: len(o.received) >= 2, timeout=30)
    origin.status = 204
    assert origin.wait_for(lambda o: event in o.delivered_ids(), timeout=30)
    assert wait_until(lambda: events_of(edge, "delivered", event), timeout=10)

    assert events_of(edge, "accepted", event) == [
        {"event": "accepted", "event_id": event, "webhook_type": "status.updated", "classified": True,
         "subject_kind": "session"}
    ]
    assert events_of(edge, "duplicate", event) == [
        {"event": "duplicate", "event_id": event, "subject_kind": "session"}
    ]
    # Each failed request is an `attempt` line; the one that delivered is told by `delivered`.
    attempts = events_of(edge, "attempt", event)
    assert len(attempts) >= 2 and all(a["status"] == 503 and a["error"] == "server_error" for a in attempts)
    assert all(a["origin"] == "test-origin" and a["consumer"] == "default" for a in attempts)
    assert all(isinstance(a["latency_ms"], int) and 0 <= a["latency_ms"] < 2000 for a in attempts)
    retries = events_of(edge, "retry_scheduled", event)
    assert [r["failures"] for r in retries] == list(range(1, len(attempts) + 1))
    [done] = events_of(edge, "delivered", event)
    assert (done["origin"], done["failures"], done["status"]) == ("test-origin", len(attempts), 204)
    assert isinstance(done["latency_ms"], int) and 0 <= done["latency_ms"] < 2000

    log = "\n".join(edge.log_lines())
    assert session not in log and person not in log, "subject ids and vendor_data are identity data"


def test_the_forwarded_event_carries_a_traceparent_started_at_the_edge(make_edge, make_origin):
    origin = make_origin()
    origin.status = 503
    edge = make_edge("traceparent", base_config(origin.url))
    event = accepted(edge, didit.session_payload())
    assert origin.wait_for(lambda o: len(o.received) >= 2, timeout=30)
    origin.status = 204
    assert origin.wait_for(lambda o: event in o.delivered_ids(), timeout=30)
    tried = [r for r in origin.received if r["headers"].get("webhook-id") == event]
    values = {r["headers"].get("traceparent") for r in tried} | {r["event"].get("traceparent") for r in tried}
    assert len(values) == 1, "one trace for every attempt, in the header and the body alike"
    [traceparent] = values
    version, trace_id, parent_id, flags = traceparent.split("-")
    assert (version, trace_id, flags) == ("00", event.removeprefix("evt_"), "01")
    assert len(parent_id) == 16 and int(parent_id, 16) != 0


def erase(edge, kind, subject_id, token=ADMIN_TOKEN):
    return edge.admin_json("POST", "/admin/erasures", {"subject_kind": kind, "subject_id": subject_id},
                           token=token)


def test_erasing_a_session_removes_its_data_and_keeps_only_what_deduplication_needs(make_edge, make_origin):
    origin = make_origin()
    origin.status = 500
    edge = make_edge("erase-session", base_config(origin.url, ADMIN_TOKEN=ADMIN_TOKEN, RETRY_SCHEDULE="1x1",
                                                  STREAM_TOKEN_SECRET=stream_tokens.STREAM_SECRET))
    session, person = f"sess-{uuid.uuid4()}", f"person/{uuid.uuid4()} é"
    now = int(time.time())
    review = didit.session_payload(session_id=session, status="In Review", timestamp=now - 20, vendor_data=person)
    first = accepted(edge, review)
    assert wait_until(lambda: [d["id"] for d in dead_letters(edge)] == [first], timeout=30)
    approved = didit.session_payload(session_id=session, status="Approved", timestamp=now - 10, vendor_data=person)
    second = accepted(edge, approved)  # held behind the dead letter
    other = accepted(edge, didit.session_payload(vendor_data=person))  # another session: untouched
    assert stored_cells_containing(edge.persist_dir, session), "the session's data is stored"

    status, reply = erase(edge, "session", session)
    assert status == 200, reply
    assert reply["subject_kind"] == "session"
    assert reply["erased"]["events"] == 2 and reply["erased"]["payloads"] == 2
    assert reply["erased"]["pending_deliveries"] == 1 and reply["erased"]["dead_letters"] == 1
    assert reply["erased"]["statuses"] >= 1, "its status in the stream's channels"
    assert session not in str(reply) and person not in str(reply), "the answer echoes no identity data"

    assert stored_cells_containing(edge.persist_dir, session) == []
    assert wait_until(lambda: dead_letters(edge) == [])
    origin.status = 204
    assert origin.wait_for(lambda o: other in o.delivered_ids(), timeout=30)
    time.sleep(2)
    assert first not in origin.delivered_ids() and second not in origin.delivered_ids()
    # Deduplication still knows them: Didit's retry of an erased event is not delivered again.
    status, reply = send_payload(edge, review)
    assert (status, reply["status"], reply["id"]) == (200, "duplicate", first)
    status, reply = edge.admin("POST", f"/admin/dead-letters/{first}/replay")
    assert (status, reply["error"]["code"]) == (404, "dead_letter_not_found")
    assert [r["event_id"] for r in edge.log_events("erased")] == [first, second]
    # The id rides in the body: no line of the log (wrangler's access log included) names it.
    assert session not in "\n".join(edge.log_lines())
    # What comes after the erasure is new data, and is delivered.
    later = accepted(edge, didit.session_payload(session_id=session, status="Declined", vendor_data=person))
    assert origin.wait_for(lambda o: later in o.delivered_ids(), timeout=30)


def test_erasing_a_user_removes_their_statuses_everywhere(make_edge, make_origin):
    origin = make_origin()
    edge = make_edge("erase-user", base_config(origin.url, ADMIN_TOKEN=ADMIN_TOKEN,
                                               STREAM_TOKEN_SECRET=stream_tokens.STREAM_SECRET))
    person = f"person-{uuid.uuid4()}"
    event = accepted(edge, user_event(person))
    session_event = accepted(edge, didit.session_payload(vendor_data=person))
    assert origin.wait_for(lambda o: {event, session_event} <= set(o.delivered_ids()), timeout=30)
    assert wait_until(lambda: any(t == "statuses" for _, t, _ in stored_cells_containing(edge.persist_dir, person)))

    status, reply = erase(edge, "user", person)
    assert status == 200, reply
    assert reply["subject_kind"] == "user" and reply["erased"]["events"] == 1
    # The user's own status, and the session's status routed to them, in the admin and user channels.
    assert reply["erased"]["statuses"] >= 3
    assert [cell for cell in stored_cells_containing(edge.persist_dir, person) if cell[1] == "statuses"] == []
    status, reply = send_payload(edge, user_event(person))
    assert status == 200


def test_an_erasure_needs_the_admin_token_and_names_a_subject(make_edge, make_origin):
    origin = make_origin()
    edge = make_edge("erase-refusals", base_config(origin.url, ADMIN_TOKEN=ADMIN_TOKEN))
    session = str(uuid.uuid4())
    accepted(edge, didit.session_payload(session_id=session))
    status, reply = erase(edge, "session", session, token="not-the-admin-token-at-all")
    assert (status, reply["error"]["code"]) == (401, "unauthorized")
    for kind, subject_id, code in [("person", session, "invalid_subject"), ("session", " ", "invalid_subject")]:
        status, reply = erase(edge, kind, subject_id)
        assert (status, reply["error"]["code"]) == (400, code), (kind, subject_id)
    auth = {"authorization": f"Bearer {ADMIN_TOKEN}"}
    for body, headers, code in [
        (b'{"subject_kind":"session"}', {"content-type": "application/json"}, (400, "invalid_subject")),
        (json.dumps({"subject_kind": "session", "subject_id": session, "also": 1}).encode(),
         {"content-type": "application/json"}, (400, "invalid_subject")),
        (json.dumps({"subject_kind": "session", "subject_id": session}).encode(), {"content-type": "text/plain"},
         (415, "unsupported_media_type")),
        (b"x" * (512 * 1024 + 1), {"content-type": "application/json"}, (413, "payload_too_large")),
    ]:
        status, _, raw = edge.request("POST", "/admin/erasures", body, headers={**auth, **headers})
        assert (status, json.loads(raw)["error"]["code"]) == code, (body[:40], headers)
    status, _, _ = edge.request("GET", "/admin/erasures")
    assert status == 405
    assert stored_cells_containing(edge.persist_dir, session), "nothing was erased by a refused call"


def alerts_of(receiver, alert_type):
    """The alerts of one type the receiver took (verified, answered 2xx)."""
    return [r for r in receiver.received if r["verified"] and 200 <= r["answered"] < 300
            and (r["event"] or {}).get("type") == alert_type]


ALERTS_SECRET = "whsec_YWxlcnRzLW9ubHktc2lnbmluZy1rZXktZm9yLXRlc3RzMDE="


def test_dead_letters_and_breaker_changes_raise_signed_alerts_that_are_retried(make_edge, make_origin):
    origin, receiver = make_origin(), make_origin(secret=ALERTS_SECRET)
    origin.status, receiver.status = 500, 503
    edge = make_edge("alerts", base_config(origin.url, ADMIN_TOKEN=ADMIN_TOKEN, RETRY_SCHEDULE="1x2",
                                           ALERTS_URL=receiver.url, ALERTS_SIGNING_SECRET=ALERTS_SECRET))
    session, person = str(uuid.uuid4()), f"person-{uuid.uuid4()}"
    event = accepted(edge, didit.session_payload(session_id=session, vendor_data=person))
    assert wait_until(lambda: [d["id"] for d in dead_letters(edge)] == [event], timeout=30)
    assert receiver.wait_for(lambda r: len(r.received) >= 1, timeout=30)
    receiver.status = 204  # the alert endpoint comes back: the outbox retries (after 5 s)
    assert receiver.wait_for(lambda r: alerts_of(r, "didit-edge.dead_letter.created")
                             and alerts_of(r, "didit-edge.origin.unhealthy"), timeout=40)
    [dead] = alerts_of(receiver, "didit-edge.dead_letter.created")
    assert dead["event"]["data"] == {"event_id": event, "consumer": "default", "reason": "retries_exhausted",
                                     "webhook_type": "status.updated", "subject_kind": "session"}
    assert dead["event"]["id"] == dead["headers"]["webhook-id"] and dead["event"]["id"].startswith("alr_")
    tried = [r for r in receiver.received if r["headers"].get("webhook-id") == dead["event"]["id"]]
    assert [r["answered"] for r in tried][-1] == 204 and len(tried) >= 2, "refused at first, then retried"
    [unhealthy] = alerts_of(receiver, "didit-edge.origin.unhealthy")
    assert unhealthy["event"]["data"]["origin"] == "test-origin" and unhealthy["answered"] == 204
    everything = json.dumps([r["event"] for r in receiver.received])
    assert session not in everything and person not in everything, "alerts carry no identity data"

    # The origin recovers: its breaker closes after successes, and that is told once.
    origin.status = 204
    later = [accepted(edge, didit.session_payload()) for _ in range(3)]
    assert origin.wait_for(lambda o: set(later) <= set(o.delivered_ids()), timeout=60)
    assert receiver.wait_for(lambda r: alerts_of(r, "didit-edge.origin.recovered"), timeout=30)
    assert len(alerts_of(receiver, "didit-edge.origin.unhealthy")) == 1, "a failed probe is not a new alert"


def test_a_broken_alerts_url_is_named_and_delivery_goes_on(make_edge, make_origin):
    origin = make_origin()
    edge = make_edge("alerts-broken", base_config(origin.url, ALERTS_URL="hooks.example.com/alerts",
                                                  ALERTS_SIGNING_SECRET=ALERTS_SECRET))
    status, _, raw = edge.request("GET", "/healthz")
    assert status == 200 and json.loads(raw)["invalid_settings"] == ["ALERTS_URL"]
    assert "hooks.example.com" not in raw.decode(), "a setting's value is never echoed"
    event = accepted(edge, didit.session_payload())
    assert origin.wait_for(lambda o: event in o.delivered_ids(), timeout=30)


def test_deliveries_from_outside_didit_source_ips_are_refused_unread(make_edge, make_origin):
    origin = make_origin()
    edge = make_edge("source-ips", base_config(origin.url, DIDIT_SOURCE_IPS="18.203.201.92"))
    status, reply = send_payload(edge, didit.session_payload())
    assert (status, reply["error"]["code"]) == (403, "forbidden_source")
    open_edge = make_edge("source-ips-local", base_config(origin.url, DIDIT_SOURCE_IPS="18.203.201.92,127.0.0.1,::1"))
    event = accepted(open_edge, didit.session_payload())
    assert origin.wait_for(lambda o: event in o.delivered_ids(), timeout=30)
    assert len(origin.received) == 1, "the refused delivery was neither stored nor forwarded"


def test_a_jurisdiction_is_asked_of_the_platform_and_a_broken_one_stores_nothing(make_edge, make_origin):
    origin = make_origin()
    # workerd (wrangler dev) does not implement jurisdictions: it refuses to create the object,
    # and the delivery is refused with a 503 rather than stored anywhere else. On Cloudflare the
    # same call creates the object in the EU (docs/deploy.md says how to check on staging).
    eu = make_edge("jurisdiction-eu", base_config(origin.url, DURABLE_OBJECT_JURISDICTION="eu"))
    status, reply = send_payload(eu, didit.session_payload())
    assert (status, reply["error"]["code"]) == (503, "storage_unavailable")
    assert wait_until(lambda: any("Jurisdiction restrictions are not implemented in workerd" in line
                                  for line in eu.log_lines()), timeout=10)
    assert stored_cells_containing(eu.persist_dir, "evt_") == []

    broken = make_edge("jurisdiction-broken", base_config(origin.url, DURABLE_OBJECT_JURISDICTION="mars"))
    status, reply = send_payload(broken, didit.session_payload())
    assert (status, reply["error"]["code"]) == (503, "configuration_error")
    assert "DURABLE_OBJECT_JURISDICTION" in reply["error"]["message"]
    status, _, raw = broken.request("GET", "/healthz")
    assert json.loads(raw)["invalid_settings"] == ["DURABLE_OBJECT_JURISDICTION"]
    assert stored_cells_containing(broken.persist_dir, "evt_") == []
    assert origin.received == []
