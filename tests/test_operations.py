"""What operators see and do around delivery, through the real worker under `wrangler dev`:
one structured log line per event transition, with no identity data in any of them."""

import uuid

import didit
from harness import ADMIN_TOKEN, base_config
from test_nothing_lost import accepted, send_payload, wait_until


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
    attempts = events_of(edge, "attempt", event)
    assert [a["status"] for a in attempts[:2]] == [503, 503]
    assert all(a["origin"] == "test-origin" and a["consumer"] == "default" for a in attempts)
    assert all(isinstance(a["latency_ms"], int) and 0 <= a["latency_ms"] < 2000 for a in attempts)
    assert attempts[-1]["status"] == 204 and attempts[-1]["error"] is None
    retries = events_of(edge, "retry_scheduled", event)
    assert [r["failures"] for r in retries] == list(range(1, len(attempts)))
    [done] = events_of(edge, "delivered", event)
    assert (done["origin"], done["failures"]) == ("test-origin", len(attempts) - 1)

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
