"""Reconciliation with Didit's API, through the real worker under `wrangler dev` with the cron
triggered (`/__scheduled`), against a fake Didit API on 127.0.0.1 (`fake_didit_api.py`) and a real
origin: results whose webhook never came are delivered once, as the same event as their webhook;
what the edge received is never fetched; an outage or a 429 delays and loses nothing; progress
survives a restart; without `DIDIT_API_KEY` nothing is called."""

import calendar
import json
import os
import pathlib
import re
import subprocess
import time
import uuid

import pytest

import didit
from fake_didit_api import FakeDiditApi
from harness import ADMIN_TOKEN, ROOT, WranglerDev, base_config, cells_containing, free_port
from test_nothing_lost import accepted, send_payload, wait_until

API_KEY = "didit-api-key-for-tests"


@pytest.fixture
def fake_api():
    api = FakeDiditApi(free_port(), API_KEY).start()
    yield api
    api.stop()


def reconciling(origin, api, **overrides):
    settings = {
        "ADMIN_TOKEN": ADMIN_TOKEN,
        "DIDIT_API_KEY": API_KEY,
        "DIDIT_API_BASE_URL": api.base_url,
        "RECONCILE_SETTLE_SECS": "0",
        "RECONCILE_INTERVAL_SECS": "10",
    }
    settings.update(overrides)
    return base_config(origin.url, **settings)


def status(edge):
    code, body = edge.admin("GET", "/admin/reconciliation")
    assert code == 200, body
    return body


def sweep(edge, after_checkpoint=None, timeout=60):
    """Fires the cron until a sweep that started after `after_checkpoint` has finished; returns
    the status then."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        edge.run_cron()
        now = status(edge)
        if now["checkpoint"] and now["sweep"] is None and now["checkpoint"] != after_checkpoint:
            return now
        time.sleep(1)
    raise AssertionError(f"no sweep finished in {timeout}s: {status(edge)}")


def totals(edge):
    """What every run so far did, from the worker's own log lines: (gaps found, events injected).
    Sweeps also start from the object's alarm, so no single run is the one a test triggered."""
    runs = [line["run"] for line in edge.log_events("reconcile_run")]
    return sum(r["gaps_found"] for r in runs), sum(r["events_injected"] for r in runs)


def events_about(origin, session_id):
    return [r["event"] for r in origin.deliveries()
            if 200 <= r["answered"] < 300 and r["event"]["data"]["subject"]["id"] == session_id]


def test_without_an_api_key_nothing_is_reconciled(make_edge, make_origin, fake_api):
    origin = make_origin()
    fake_api.add_session(str(uuid.uuid4()), "Approved")
    edge = make_edge("reconcile-off", base_config(origin.url, ADMIN_TOKEN=ADMIN_TOKEN,
                                                  DIDIT_API_BASE_URL=fake_api.base_url))
    edge.run_cron()
    edge.run_cron()
    assert status(edge) == {"enabled": False}
    time.sleep(1)
    assert fake_api.requests == [], "no call to Didit's API"
    objects = pathlib.Path(edge.persist_dir) / "v3" / "do"
    reconcilers = [p for p in objects.glob("*-Reconciler/*.sqlite") if p.name != "metadata.sqlite"]
    assert reconcilers == [], "not even the reconciler object is created"
    # A broken setting switches it off, named, and never reaches the API either.
    broken = make_edge("reconcile-broken", base_config(origin.url, ADMIN_TOKEN=ADMIN_TOKEN, DIDIT_API_KEY=API_KEY,
                                                       DIDIT_API_BASE_URL="not a url"))
    broken.run_cron()
    code, body = broken.admin("GET", "/admin/reconciliation")
    assert (code, body["error"]["code"]) == (503, "configuration_error"), body
    _, _, raw = broken.request("GET", "/healthz")
    assert "DIDIT_API_BASE_URL" in json.loads(raw)["invalid_settings"]
    assert fake_api.requests == []


def test_missing_results_are_delivered_once_as_the_same_event_as_their_webhook(make_edge, make_origin, fake_api):
    origin = make_origin()
    edge = make_edge("reconcile", reconciling(origin, fake_api))
    # Switched on: the first sweep finds nothing older than this moment.
    old = str(uuid.uuid4())
    fake_api.add_session(old, "Approved", created_at=time.time() - 3600)
    first = sweep(edge)
    assert first["activated_at"] and first["last_run"]["ended"] == "sweep_done"
    assert [r[2]["session_kind"] for r in fake_api.list_requests()] == ["user", "business"]
    assert all(r[3] for r in fake_api.requests), "every request carries the API key"
    time.sleep(1.1)

    never_sent, received, in_progress, late, business = (str(uuid.uuid4()) for _ in range(5))
    # A webhook the edge got: its session must never cost a decision read.
    delivered_payload = didit.session_payload(session_id=received, status="Declined")
    delivered_id = accepted(edge, delivered_payload)
    fake_api.add_session(received, "Declined")
    fake_api.add_session(never_sent, "Approved")
    fake_api.add_session(in_progress, "In Progress")
    fake_api.add_session(late, "Approved")
    fake_api.add_session(business, "Declined", kind="business", vendor_data="biz-9")
    fake_api.delay_secs = 2  # slow pages still make progress

    second = sweep(edge, after_checkpoint=first["checkpoint"])
    fake_api.delay_secs = 0
    assert totals(edge) == (3, 3)
    assert origin.wait_for(lambda o: all(events_about(o, s) for s in (never_sent, late, business)), timeout=30)

    [event] = events_about(origin, never_sent)
    data = event["data"]
    assert data["verification"] == {"source": "api", "header": None, "covers": "payload", "secret_index": None,
                                     "authenticated_by": "tls+x-api-key"}
    assert (data["webhook_type"], data["status"], data["subject"]) == (
        "status.updated", "Approved", {"kind": "session", "id": never_sent})
    assert data["decision"]["features"], "the decision is summarized like a webhook's"
    assert data["payload"]["decision"]["id_verifications"][0]["first_name"] == "Zoë"
    [kyb] = events_about(origin, business)
    assert kyb["data"]["subject"] == {"kind": "business_session", "id": business}
    assert kyb["data"]["status_code"] == "declined"
    assert kyb["data"]["vendor_data"] == "biz-9"
    assert events_about(origin, in_progress) == [], "a session still in progress is not a result"
    assert fake_api.decision_fetches(received) == 0
    assert fake_api.decision_fetches(in_progress) == 0
    assert [e["id"] for e in events_about(origin, received)] == [delivered_id]

    # Didit's webhook of a reconciled transition, arriving after all: a duplicate, never delivered.
    [late_event] = events_about(origin, late)
    status_code, reply = send_payload(edge, didit.session_payload(session_id=late, status="Approved"))
    assert (status_code, reply["status"], reply["id"]) == (200, "duplicate", late_event["id"])
    # Didit's retry of the webhook the edge had: still the one event.
    status_code, reply = send_payload(edge, delivered_payload)
    assert (status_code, reply["status"]) == (200, "duplicate")

    # The next sweep finds nothing new and reads no decision again.
    fetched = len(fake_api.requests_for("/v3/session/"))
    third = sweep(edge, after_checkpoint=second["checkpoint"])
    assert totals(edge) == (3, 3)
    assert len(fake_api.requests_for("/v3/session/")) == fetched
    time.sleep(2)
    for session in (never_sent, late, business, received):
        assert len(events_about(origin, session)) == 1, session

    # The CLI shows the same.
    shown = subprocess.run([str(ROOT / "target" / "debug" / "didit-edge"), "admin", "reconciliation",
                            "--url", edge.url], capture_output=True, text=True, timeout=60,
                           env=dict(os.environ, ADMIN_TOKEN=ADMIN_TOKEN, NO_PROXY="127.0.0.1"))
    assert shown.returncode == 0, shown.stderr
    lines = {line.split()[0]: line for line in shown.stdout.splitlines() if line.strip()}
    assert re.fullmatch(r"checkpoint\s+\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", lines["checkpoint"].strip())
    assert re.search(r"found\s+0 gaps, 0 events injected", shown.stdout), shown.stdout

    # A new transition of a reconciled session is a new event.
    fake_api.set_status(never_sent, "Resubmitted")
    sweep(edge, after_checkpoint=third["checkpoint"])
    assert origin.wait_for(lambda o: len(events_about(o, never_sent)) == 2, timeout=30)
    assert [e["data"]["status"] for e in events_about(origin, never_sent)] == ["Approved", "Resubmitted"]

    # Each injection is logged, without identity data.
    reconciled = edge.log_events("reconciled")
    assert sorted(r["receipt"] for r in reconciled) == ["accepted"] * 4
    assert all(set(r) == {"event", "event_id", "subject_kind", "status_code", "receipt"} for r in reconciled)
    log = "\n".join(edge.log_lines())
    for secret in (never_sent, business, "biz-9", "Zoë", API_KEY):
        assert secret not in log
    assert events_about(origin, old) == [] and fake_api.decision_fetches(old) == 0, \
        "sessions created before reconciliation was switched on are left alone"
    # The listed rows' names, portraits and emails are read past: the reconciler stores none.
    for identity in ("Zoë", "Ångström", "zoe@example.com", "portrait", "biz-9"):
        assert cells_containing(edge.persist_dir, identity, "Reconciler") == [], identity


def test_an_outage_or_a_429_delays_and_loses_nothing_and_progress_survives_a_restart(make_origin, fake_api):
    origin = make_origin()
    # Eight requests a run: a sweep of three pages needs two runs, the second started by the alarm.
    config = reconciling(origin, fake_api, RECONCILE_REQUESTS_PER_RUN="8")
    edge = WranglerDev("reconcile-outage", config)
    try:
        edge.start()
        first = sweep(edge)
        time.sleep(1.1)
        # Three pages of sessions, one missing result on each.
        gaps = [str(uuid.uuid4()) for _ in range(3)]
        for n in range(230):
            if n in (10, 120, 225):
                fake_api.add_session(gaps[(10, 120, 225).index(n)], "Approved")
            else:
                fake_api.add_session(f"busy-{n}-{uuid.uuid4()}", "In Progress")

        # Didit's API is down when the next sweep is due: the run ends, says why, and waits.
        fake_api.outage = 503
        calls = len(fake_api.requests)
        assert wait_until(lambda: edge.run_cron() or len(fake_api.requests) > calls, timeout=30)
        assert wait_until(lambda: status(edge)["api_failures_in_a_row"] == 1, timeout=10)
        down = status(edge)
        assert down["last_run"]["ended"] == "api", down
        assert down["last_run"]["errors"] == ["Didit's API answered 503"]
        assert down["sweep"]["offset"] == 0
        calls = len(fake_api.requests)
        edge.run_cron()
        assert len(fake_api.requests) == calls, "no call before the backoff ends"

        # Back, but rate-limited: Retry-After is honoured.
        fake_api.outage = None
        fake_api.queue_faults((429, {"retry-after": "45"}))
        wait_until(lambda: len(fake_api.requests) > calls, timeout=60)
        assert fake_api.requests[calls][1] == "/v3/sessions/"
        limited = status(edge)
        assert limited["last_run"]["errors"] == ["Didit's API answered 429"], limited
        next_run = limited["next_run_at"]
        assert calendar.timegm(time.strptime(next_run, "%Y-%m-%dT%H:%M:%SZ")) >= time.time() + 35
        assert origin.deliveries() == []

        # A restart loses neither the checkpoint nor the wait.
        edge.stop()
        edge.start()
        restarted = status(edge)
        assert (restarted["checkpoint"], restarted["next_run_at"]) == (first["checkpoint"], next_run)
        assert restarted["sweep"] == limited["sweep"]
        calls = len(fake_api.requests)
        edge.run_cron()
        assert len(fake_api.requests) == calls

        # Once the wait is over the alarm (or the cron) resumes where the sweep stood and every
        # gap is delivered, once.
        def caught_up():
            edge.run_cron()
            return all(events_about(origin, s) for s in gaps)
        assert wait_until(caught_up, timeout=120), status(edge)
        for session in gaps:
            assert len(events_about(origin, session)) == 1
            assert fake_api.decision_fetches(session) == 1
        offsets = [int(r[2]["offset"]) for r in fake_api.list_requests() if r[2].get("session_kind") == "user"]
        assert {0, 100, 200} <= set(offsets)
        done = status(edge)
        assert done["api_failures_in_a_row"] == 0
    finally:
        edge.stop()
