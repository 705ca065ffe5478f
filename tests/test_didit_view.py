"""Didit's view beside the edge's (`GET /admin/didit/destinations`, `POST /admin/didit/deliveries`),
through the real worker under `wrangler dev` and a fake Didit on 127.0.0.1 (`fake_didit_api.py`)
that sends its webhooks to the worker as Didit does and lists each attempt with the status the
worker really answered: a first try refused (signed with a wrong secret: 401), its retry
accepted, both read back beside the lookup's timeline; the destinations' health; a key without
the scope, a rate limit and an unreachable API as stable codes; no key, no calls."""

import json
import os
import subprocess
import uuid

import pytest

import didit
from fake_didit_api import FakeDiditApi
from harness import ADMIN_TOKEN, DIDIT_SECRET, ROOT, base_config, free_port

API_KEY = "didit-api-key-for-tests"
READ_TOKEN = "test-read-only-token-0123456789"


@pytest.fixture
def fake_api():
    api = FakeDiditApi(free_port(), API_KEY).start()
    yield api
    api.stop()


def attempts(edge, session_id, token=ADMIN_TOKEN):
    return edge.admin_json("POST", "/admin/didit/deliveries",
                           {"subject_kind": "session", "subject_id": session_id}, token=token)


def cli(workdir, edge, *args):
    """`didit-edge admin …` against the worker (built by `cargo build -p didit-edge-cli`)."""
    env = {k: v for k, v in os.environ.items() if k not in ("DIDIT_EDGE_URL", "ADMIN_TOKEN")}
    env.update(ADMIN_TOKEN=ADMIN_TOKEN, NO_PROXY="127.0.0.1,localhost")
    return subprocess.run([str(ROOT / "target" / "debug" / "didit-edge"), "admin", "--url", edge.url, *args],
                          cwd=workdir, env=env, capture_output=True, text=True, timeout=120)


def test_didits_attempts_and_health_beside_the_edges_timeline(make_edge, make_origin, fake_api, tmp_path):
    origin = make_origin()
    edge = make_edge("didit-view", base_config(
        origin.url, ADMIN_TOKEN=ADMIN_TOKEN, ADMIN_READ_TOKEN=READ_TOKEN, DIDIT_API_KEY=API_KEY,
        DIDIT_API_BASE_URL=fake_api.base_url))
    ours = fake_api.add_destination(f"{edge.url}/webhooks/didit")
    elsewhere = fake_api.add_destination("https://other.example/webhooks/didit", label="other")
    fake_api.max_page = 1  # every attempt on a page of its own: `next` is followed

    payload = didit.session_payload()
    session = payload["session_id"]
    assert fake_api.send_webhook(ours, payload, "not-the-secret") == 401
    assert fake_api.send_webhook(ours, payload, DIDIT_SECRET) == 200
    other_session = didit.session_payload()
    assert fake_api.send_webhook(ours, other_session, DIDIT_SECRET) == 200
    assert fake_api.send_webhook(elsewhere, didit.session_payload(), DIDIT_SECRET) is None

    status, found = attempts(edge, session, token=READ_TOKEN)
    assert status == 200, found
    assert (found["enabled"], found["destinations"], found["days_from"]) == (True, [ours], "edge_timeline")
    assert found["complete"] is True and found["budget_reached"] is False
    assert found["pages_read"] == 3, "three attempts on our destination, one a page"
    recorded = fake_api.attempts_of(session)
    assert [(a["response_status"], a["webhook_type"]) for a in found["attempts"]] == \
        [(401, "status.updated"), (200, "status.updated")]
    assert [a["uuid"] for a in found["attempts"]] == [a["uuid"] for a in recorded]
    assert [a["response_time_ms"] for a in found["attempts"]] == [a["response_time_ms"] for a in recorded]
    assert all(a["destination"] == ours for a in found["attempts"])
    assert "request_url" not in str(found) and other_session["session_id"] not in str(found)
    # Beside the edge's timeline: the refused try came before the event was received, the
    # accepted one is the receipt.
    status, lookup = edge.admin_json("POST", "/admin/lookup", {"subject_kind": "session", "subject_id": session})
    assert status == 200, lookup
    received_ms = lookup["events"][0]["received"]["at_ms"]
    refused, accepted = found["attempts"]
    assert refused["at_ms"] < accepted["at_ms"] <= received_ms
    assert received_ms - accepted["at_ms"] < 5_000

    # A session the edge holds nothing of (every try refused): the last two days are read.
    stranger = didit.session_payload()
    assert fake_api.send_webhook(ours, stranger, "not-the-secret") == 401
    status, found = attempts(edge, stranger["session_id"])
    assert status == 200, found
    assert found["days_from"] == "recent_days"
    assert [a["response_status"] for a in found["attempts"]] == [401]

    # The destinations' health as Didit reports it; ours is marked as this edge's.
    status, listed = edge.admin("GET", "/admin/didit/destinations", token=READ_TOKEN)
    assert status == 200, listed
    assert listed["chosen_by"] == "same_host"
    by_id = {d["uuid"]: d for d in listed["destinations"]}
    assert [d["uuid"] for d in listed["destinations"]] == [ours, elsewhere]
    assert (by_id[ours]["this_edge"], by_id[elsewhere]["this_edge"]) == (True, False)
    assert (by_id[ours]["deliveries_count"], by_id[ours]["failed_deliveries_count"]) == (4, 2)
    assert by_id[elsewhere]["error_rate_percentage"] == 100.0
    for destination in fake_api.destinations:
        didits = fake_api.destination_row(destination)
        shown = by_id[destination["uuid"]]
        for field in ("label", "url", "enabled", "webhook_version", "subscribed_events", "deliveries_count",
                      "failed_deliveries_count", "average_response_time_ms", "error_rate_percentage",
                      "last_delivery_at", "health_status"):
            assert shown[field] == didits[field], (field, shown, didits)

    # The CLI prints the same.
    printed = cli(tmp_path, edge, "didit-attempts", session)
    assert printed.returncode == 0, printed.stderr
    assert "Didit's attempts for session" in printed.stdout
    rows = [line.split() for line in printed.stdout.splitlines() if line[:4].isdigit()]
    assert [row[1] for row in rows] == ["401", "200"], printed.stdout
    as_json = cli(tmp_path, edge, "--json", "didit-attempts", session)
    assert [a["response_status"] for a in json.loads(as_json.stdout)["attempts"]] == [401, 200]
    listed_by_cli = cli(tmp_path, edge, "didit-destinations")
    assert listed_by_cli.returncode == 0, listed_by_cli.stderr
    [marked] = [line for line in listed_by_cli.stdout.splitlines() if line.startswith("*  ")]
    assert ours in marked and elsewhere not in marked
    # Only the list is read: a single destination's answer carries its signing secret.
    read = {r[1] for r in fake_api.requests_for("/v3/webhook/destinations/")}
    assert read and all(path == "/v3/webhook/destinations/" or path.endswith("/deliveries/")
                        for path in read), read

    # A key without the scope, a rate limit, an unreachable API: stable codes, never a 401.
    fake_api.plan_fault("/v3/webhook/", 0, 403, {})
    refused_by_cli = cli(tmp_path, edge, "didit-attempts", session)
    assert refused_by_cli.returncode != 0 and "didit_key_not_allowed" in refused_by_cli.stderr, refused_by_cli
    fake_api.plan_fault("/v3/webhook/", 0, 403, {})
    status, refused = attempts(edge, session)
    assert (status, refused["error"]["code"]) == (403, "didit_key_not_allowed")
    assert "webhooks: read" in refused["error"]["message"]
    fake_api.plan_fault("/v3/webhook/destinations/", 0, 403, {})
    status, refused = edge.admin("GET", "/admin/didit/destinations")
    assert (status, refused["error"]["code"]) == (403, "didit_key_not_allowed")
    fake_api.plan_fault(f"/v3/webhook/destinations/{ours}/deliveries/", 1, 429, {"Retry-After": "30"})
    status, headers, raw = edge.request(
        "POST", "/admin/didit/deliveries",
        body=b'{"subject_kind":"session","subject_id":"%s"}' % session.encode(),
        headers={"Authorization": f"Bearer {ADMIN_TOKEN}", "Content-Type": "application/json"})
    assert status == 429, raw
    assert b"didit_rate_limited" in raw and {k.lower(): v for k, v in headers.items()}["retry-after"] == "30"
    fake_api.stop()
    status, refused = edge.admin("GET", "/admin/didit/destinations")
    assert (status, refused["error"]["code"]) == (502, "didit_unreachable")
    assert API_KEY not in "\n".join(edge.log_lines())


def test_a_configured_destination_is_read_whatever_the_host(make_edge, make_origin, fake_api):
    origin = make_origin()
    # The destination's URL names another host (a custom domain, say): DIDIT_DESTINATION picks it.
    chosen = fake_api.add_destination("https://edge.example.com/webhooks/didit", label="prod")
    edge = make_edge("didit-view-set", base_config(
        origin.url, ADMIN_TOKEN=ADMIN_TOKEN, DIDIT_API_KEY=API_KEY, DIDIT_API_BASE_URL=fake_api.base_url,
        DIDIT_DESTINATION=chosen))
    # Didit posts to the custom domain; here that is the worker itself.
    fake_api.destinations[0]["url"] = f"{edge.url}/webhooks/didit"
    payload = didit.session_payload()
    assert fake_api.send_webhook(chosen, payload, DIDIT_SECRET) == 200
    status, found = attempts(edge, payload["session_id"])
    assert status == 200, found
    assert found["destinations"] == [chosen]
    assert [a["response_status"] for a in found["attempts"]] == [200]
    status, listed = edge.admin("GET", "/admin/didit/destinations")
    assert (listed["chosen_by"], listed["destinations"][0]["this_edge"]) == ("setting", True)


def test_without_an_api_key_didits_view_is_off(make_edge, make_origin, fake_api):
    origin = make_origin()
    edge = make_edge("didit-view-off", base_config(origin.url, ADMIN_TOKEN=ADMIN_TOKEN,
                                                   DIDIT_API_BASE_URL=fake_api.base_url))
    assert edge.admin("GET", "/admin/didit/destinations") == (200, {"enabled": False})
    assert attempts(edge, str(uuid.uuid4())) == (200, {"enabled": False})
    status, refused = edge.admin_json("POST", "/admin/didit/deliveries", {"subject_kind": "user", "subject_id": "u"})
    assert (status, refused["error"]["code"]) == (400, "invalid_subject")
    status, refused = edge.admin("GET", "/admin/didit/destinations", token=None)
    assert (status, refused["error"]["code"]) == (401, "unauthorized")
    assert fake_api.requests == [], "nothing is asked of Didit without a key"
