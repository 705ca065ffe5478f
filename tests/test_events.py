"""Every event type and payload version through the running worker: each CloudEvent is
validated by the receiving origin against schemas/didit-edge-event.schema.json and checked
against the expectations written by hand in tests/fixtures/generate_events.py; consumers get
only the events their filters take."""

import json
import pathlib
import shutil
import time

import pytest

import didit
from harness import DIDIT_SECRET, SIGNING_SECRET, WranglerDev, base_config, free_port
from origin_server import Origin

ROOT = pathlib.Path(__file__).resolve().parent.parent
SCHEMA = json.loads((ROOT / "schemas" / "didit-edge-event.schema.json").read_text())
FIXTURES = json.loads((ROOT / "tests" / "fixtures" / "events.json").read_text())
CASES = FIXTURES["cases"]


@pytest.fixture(scope="module")
def routed():
    """One edge with three consumers: everything, high risk only (fraud), entities only (crm)."""
    origins = {name: Origin(free_port(), SIGNING_SECRET, schema=SCHEMA).start() for name in ("main", "fraud", "crm")}
    config = base_config(origins["main"].url, MAX_BODY_BYTES="1048576", ORIGINS=json.dumps([
        {"name": "main", "url": origins["main"].url},
        {"name": "fraud", "url": origins["fraud"].url, "consumer": "fraud", "risk_levels": ["high"]},
        {"name": "crm", "url": origins["crm"].url, "consumer": "crm", "event_types": ["user.*", "business.*"]},
    ]))
    edge = WranglerDev("events", config)
    try:
        edge.start()
        now = int(time.time())
        sent = {}
        for index, case in enumerate(CASES):
            # Distinct timestamps: several fixtures share a subject, type and status. Each newer
            # than the last, as Didit would send them: an older status after a newer one would
            # be superseded, never delivered.
            payload = dict(case["payload"], timestamp=now - len(CASES) + index)
            body = didit.encode(payload)
            headers = didit.signed_headers(body, payload, DIDIT_SECRET, kinds=("raw", "v2"))
            if case["test_header"]:
                headers["X-Didit-Test-Webhook"] = "true"
            status, reply = edge.post_webhook(body, headers)
            assert (status, reply.get("status")) == (200, "accepted"), (case["name"], reply)
            sent[reply["id"]] = (case, payload)
        assert origins["main"].wait_for(lambda o: len(o.deliveries(verified_only=False)) >= len(CASES), timeout=60)
        time.sleep(2)  # let the other consumers finish too
        yield {"origins": origins, "sent": sent}
    finally:
        # Also when set-up fails half-way: nothing started here may outlive the tests.
        edge.stop()
        for origin in origins.values():
            origin.stop()
        shutil.rmtree(edge.persist_dir, ignore_errors=True)


def received(origin):
    return {d["event"]["id"]: d for d in origin.deliveries(verified_only=False) if d["event"]}


def test_every_event_is_valid_against_the_schema(routed):
    for name, origin in routed["origins"].items():
        for event_id, delivery in received(origin).items():
            assert delivery["verified"], f"{name}: {event_id} failed Standard Webhooks verification"
            assert delivery["schema_errors"] == [], f"{name}: {event_id}: {delivery['schema_errors']}"


@pytest.mark.parametrize("case", CASES, ids=[c["name"] for c in CASES])
def test_each_event_type_and_version_normalizes_as_expected(routed, case):
    [(event_id, payload)] = [(i, p) for i, (c, p) in routed["sent"].items() if c["name"] == case["name"]]
    delivery = received(routed["origins"]["main"]).get(event_id)
    assert delivery is not None, f"{case['name']} was not delivered to the main consumer"
    event, expected = delivery["event"], case["expected"]
    data = event["data"]
    assert event["type"] == "me.didit." + payload["webhook_type"]
    assert [data["subject"]["kind"], data["subject"]["id"]] == expected["subject"]
    assert data["status_code"] == expected["status_code"]
    if "previous_status_code" in expected:
        assert data["previous_status_code"] == expected["previous_status_code"]
    assert data["payload_version"] == expected["payload_version"]
    assert data["risk"]["level"] == expected["risk_level"]
    assert [[s["code"], s["source"]] for s in data["risk"]["signals"]] == expected["signals"]
    features = None if data["decision"] is None else [[f["feature"], f["status"]["code"]] for f in data["decision"]["features"]]
    assert features == expected["features"]
    assert data["test"] == expected.get("test", False)
    assert data["payload"] == payload, "the original payload must arrive untouched"


def test_consumers_get_only_what_their_filters_take(routed):
    sent = routed["sent"]
    main, fraud, crm = (set(received(routed["origins"][n])) for n in ("main", "fraud", "crm"))
    high = {i for i, (c, _) in sent.items() if c["expected"]["risk_level"] == "high"}
    entities = {i for i, (_, p) in sent.items() if p["webhook_type"].split(".")[0] in ("user", "business")}
    assert main == set(sent)
    assert fraud == high and len(high) >= 4
    assert crm == entities and len(entities) == 4


def test_risk_rules_from_configuration_replace_the_defaults(make_edge, make_origin):
    origin = make_origin()
    rules = [{"code": "sandbox_session", "level": "medium", "when": {"event_status": ["approved"]}}]
    edge = make_edge("custom-rules", base_config(origin.url, RISK_RULES=json.dumps(rules)))
    payload = didit.session_payload(environment="sandbox")
    body = didit.encode(payload)
    assert edge.post_webhook(body, didit.signed_headers(body, payload, DIDIT_SECRET))[0] == 200
    assert origin.wait_for(lambda o: len(o.deliveries()) == 1, timeout=30)
    risk = origin.deliveries()[0]["event"]["data"]["risk"]
    assert risk == {"level": "medium", "signals": [{"code": "sandbox_session", "source": "event"}]}
