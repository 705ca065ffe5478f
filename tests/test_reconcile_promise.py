"""Reconciliation keeps the product's promise, through the real worker under `wrangler dev`, a fake
Didit API on 127.0.0.1 (`fake_didit_api.py`) and real origins: one bad session never stalls the
rest, no setting lets a known result come twice, an erased subject stays erased, one transition
is one event in Didit's order, back-off counts from the answer, runs never overlap, every
subrequest is counted, alerts carry their own key, erasure works for any id, and the switch-on
is exact to the microsecond."""

import calendar
import json
import os
import subprocess
import time
import uuid

import pytest
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

import didit
from fake_didit_api import parse_iso_us
from harness import ADMIN_TOKEN, ROOT, SIGNING_SECRET, base_config, cells_containing
from test_nothing_lost import accepted, send_payload, user_event, wait_until
from test_reconcile import fake_api, events_about, reconciling, status, sweep, totals  # noqa: F401 (a fixture)

ALERTS_SECRET = "whsec_YWxlcnRzLW9ubHktc2lnbmluZy1rZXktZm9yLXRlc3RzMDE="


def switched_on(edge):
    """Fires the cron until reconciliation has switched on and finished its first sweep."""
    first = sweep(edge)
    time.sleep(1.1)
    return first


def test_one_failing_session_never_holds_up_the_others_and_is_set_aside_visibly(make_edge, make_origin, fake_api):
    origin, receiver = make_origin(), make_origin(secret=ALERTS_SECRET)
    edge = make_edge("reconcile-poison", reconciling(
        origin, fake_api, ALERTS_URL=receiver.url, ALERTS_SIGNING_SECRET=ALERTS_SECRET,
        FAULT_RECONCILE_GAP_TRIES="2", FAULT_RECONCILE_GAP_RETRY_SECS="31"), faults=True)
    switched_on(edge)
    # Newest first: the poisoned sessions are listed before the healthy ones.
    healthy = [str(uuid.uuid4()) for _ in range(2)]
    for session in healthy:
        fake_api.add_session(session, "Approved")
    time.sleep(0.01)
    poisoned = {
        "server_error": ("status", 500), "forbidden": ("status", 403), "not_found": ("status", 404),
        "huge": ("huge",), "garbage": ("garbage",), "slow": ("slow", 16),
    }
    ids = {}
    for name, how in poisoned.items():
        ids[name] = str(uuid.uuid4())
        fake_api.add_session(ids[name], "Declined")
        fake_api.poison(ids[name], *how)

    # Every healthy gap is delivered, though every poisoned one fails each time it is tried.
    def healthy_delivered():
        edge.run_cron()
        return all(events_about(origin, s) for s in healthy)
    assert wait_until(healthy_delivered, timeout=90), (status(edge), edge.log_events("reconcile_run")[-6:])
    assert all(fake_api.decision_fetches(s) == 1 for s in healthy)
    # And sessions created since keep being listed.
    later = str(uuid.uuid4())
    fake_api.add_session(later, "Approved")
    assert wait_until(lambda: edge.run_cron() or events_about(origin, later), timeout=90), status(edge)

    # Each poisoned session is set aside with its reason, tried on its own schedule, then given up.
    def all_given_up():
        edge.run_cron()
        return status(edge)["gaps_given_up"] == len(poisoned)
    assert wait_until(all_given_up, timeout=300), status(edge)
    shown = {gap["session_id"]: gap for gap in status(edge)["set_aside"]}
    expected = {"server_error": ("decision_unavailable", 500), "forbidden": ("decision_refused", 403),
                "not_found": ("decision_not_found", 404), "huge": ("decision_too_large", None),
                "garbage": ("decision_unreadable", None), "slow": ("decision_unavailable", None)}
    for name, (failure, http_status) in expected.items():
        gap = shown[ids[name]]
        assert (gap["failure"], gap["http_status"], gap["tries"], gap["next_try_at"]) == \
            (failure, http_status, 2, None), (name, gap)
        assert events_about(origin, ids[name]) == []
    # Given up: each raised one alert, signed with the alerts' own key, without the session id.
    assert receiver.wait_for(lambda r: len([x for x in r.received if x["verified"]
                                            and x["event"]["type"] == "didit-edge.reconciliation.gave_up"])
                             >= len(poisoned), timeout=60)
    alerts = [x["event"] for x in receiver.received if x["verified"]
              and x["event"]["type"] == "didit-edge.reconciliation.gave_up"]
    assert {a["data"]["gap"] for a in alerts} == {shown[ids[n]]["gap"] for n in poisoned}
    assert not any(session in json.dumps(alerts) for session in ids.values())
    # The CLI lists them too.
    listed = subprocess.run([str(ROOT / "target" / "debug" / "didit-edge"), "admin", "reconciliation",
                             "--url", edge.url], capture_output=True, text=True, timeout=60,
                            env=dict(os.environ, ADMIN_TOKEN=ADMIN_TOKEN, NO_PROXY="127.0.0.1"))
    assert listed.returncode == 0, listed.stderr
    for name, (failure, _) in expected.items():
        line = next(line for line in listed.stdout.splitlines() if ids[name] in line)
        assert failure in line and "given up" in line, line


def test_no_setting_lets_reconciliation_outlive_the_inboxes_memory(make_edge, make_origin, fake_api):
    origin = make_origin()
    # Lookback 1 h + settle 0 + recheck 600 + tolerance 600: the inboxes must remember 4,800 s.
    short = make_edge("reconcile-ttl-short", reconciling(
        origin, fake_api, RECONCILE_LOOKBACK_SECS="3600", RECONCILE_RECHECK_SECS="600", DEDUP_TTL_SECS="4799"))
    _, _, raw = short.request("GET", "/healthz")
    health = json.loads(raw)
    assert health["configuration"] == "invalid"
    assert {"RECONCILE_LOOKBACK_SECS", "DEDUP_TTL_SECS"} <= set(health["invalid_settings"])
    code, body = short.admin("GET", "/admin/reconciliation")
    assert (code, body["error"]["code"]) == (503, "configuration_error")
    short.run_cron()
    assert fake_api.requests == [], "reconciliation is held: Didit's API is never called"
    # Held like any bad setting: deliveries are still taken and delivered.
    event = accepted(short, didit.session_payload())
    assert origin.wait_for(lambda o: event in o.delivered_ids(), timeout=30)
    # At the boundary it runs.
    enough = make_edge("reconcile-ttl-enough", reconciling(
        origin, fake_api, RECONCILE_LOOKBACK_SECS="3600", RECONCILE_RECHECK_SECS="600", DEDUP_TTL_SECS="4800"))
    _, _, raw = enough.request("GET", "/healthz")
    assert json.loads(raw)["configuration"] == "valid"
    first = switched_on(enough)
    assert first["last_run"]["ended"] == "sweep_done"


def test_an_erased_session_is_never_fetched_stored_or_delivered_again(make_edge, make_origin, fake_api):
    origin = make_origin()
    edge = make_edge("reconcile-erase", reconciling(origin, fake_api, RECONCILE_RECHECK_SECS="60"))
    switched_on(edge)
    session, person = str(uuid.uuid4()), f"person-{uuid.uuid4()}"
    # Reconciliation found its result and remembers the session.
    fake_api.add_session(session, "Approved", vendor_data=person)
    assert wait_until(lambda: edge.run_cron() or events_about(origin, session), timeout=60)
    assert cells_containing(edge.persist_dir, session, "Reconciler"), "the reconciler remembers it"

    code, reply = edge.admin_json("POST", "/admin/erasures", {"subject_kind": "session", "subject_id": session})
    assert code == 200, reply
    assert reply["erased"]["reconciliation_sessions"] == 1
    assert cells_containing(edge.persist_dir, session, "Reconciler") == [], "its memory forgot the session"

    # Didit moves on; its webhook is lost. Sweeps and rechecks go by: nothing is fetched.
    fetched = fake_api.decision_fetches(session)
    fake_api.set_status(session, "Declined")
    before = status(edge)["checkpoint"]
    checkpoint = before
    for _ in range(2):
        checkpoint = sweep(edge, after_checkpoint=checkpoint)["checkpoint"]
    assert fake_api.decision_fetches(session) == fetched
    assert [e["data"]["status"] for e in events_about(origin, session)] == ["Approved"]
    assert cells_containing(edge.persist_dir, session, "Reconciler") == []
    assert cells_containing(edge.persist_dir, person, "Inbox") == [], "no identity data came back"


def test_a_console_resend_of_a_result_first_read_from_the_api_is_a_duplicate(make_edge, make_origin, fake_api):
    origin = make_origin()
    edge = make_edge("reconcile-resend", reconciling(origin, fake_api))
    switched_on(edge)
    session = str(uuid.uuid4())
    fake_api.add_session(session, "Approved")
    assert wait_until(lambda: edge.run_cron() or events_about(origin, session), timeout=60)
    [api_event] = events_about(origin, session)
    assert api_event["data"]["verification"]["source"] == "api"
    # Didit's late webhook of that transition: a duplicate.
    approved = didit.session_payload(session_id=session, status="Approved", timestamp=int(time.time()) - 60)
    code, reply = send_payload(edge, approved)
    assert (code, reply["status"], reply["id"]) == (200, "duplicate", api_event["id"])
    time.sleep(1.1)
    declined = accepted(edge, didit.session_payload(session_id=session, status="Declined"))
    assert origin.wait_for(lambda o: declined in o.delivered_ids(), timeout=30)
    time.sleep(1.1)
    # The operator resends the Approved webhook from Didit's console: same event_id, fresh timestamp.
    resend = dict(approved, timestamp=int(time.time()))
    code, reply = send_payload(edge, resend)
    assert (code, reply["status"], reply["id"]) == (200, "duplicate", api_event["id"])
    time.sleep(3)
    assert [e["data"]["status"] for e in events_about(origin, session)] == ["Approved", "Declined"]


def test_an_older_status_never_reaches_a_consumer_after_a_newer_one(make_edge, make_origin):
    origin = make_origin()
    edge = make_edge("older-after-newer", base_config(origin.url, ADMIN_TOKEN=ADMIN_TOKEN))
    session, now = str(uuid.uuid4()), int(time.time())
    declined = accepted(edge, didit.session_payload(session_id=session, status="Declined", timestamp=now))
    assert origin.wait_for(lambda o: declined in o.delivered_ids(), timeout=30)
    # Didit's retry of the earlier Approved (its own timestamp) comes after the Declined went out.
    approved = accepted(edge, didit.session_payload(session_id=session, status="Approved", timestamp=now - 40))
    assert wait_until(lambda: any(r["event_id"] == approved for r in edge.log_events("superseded")), timeout=30)
    time.sleep(2)
    assert approved not in origin.delivered_ids()
    assert [e["data"]["status"] for e in events_about(origin, session)] == ["Declined"]


def test_back_off_counts_from_the_answer_that_asked_for_it(make_edge, make_origin, fake_api):
    origin = make_origin()
    edge = make_edge("reconcile-backoff", reconciling(origin, fake_api))
    switched_on(edge)
    fake_api.delay_secs = 2  # each request takes 2 s: the failure below comes late in its run
    checkpoint = status(edge)["checkpoint"]
    # (A `Retry-After` date counts the same way: core/src/reconcile/tests.rs.)
    for name, status_code in [("retry-after seconds", 429), ("503", 503)]:
        # Idle first: what came before is done, and a sweep has finished since.
        checkpoint = sweep(edge, after_checkpoint=checkpoint, timeout=150)["checkpoint"]
        # Two new gaps: the next run lists, reads one decision, and the other's fails.
        for _ in range(2):
            fake_api.add_session(str(uuid.uuid4()), "Approved")
        headers = {"retry-after seconds": {"retry-after": "15"}, "503": {}}[name]
        calls = len(fake_api.requests)
        fake_api.plan_fault("/v3/session/", 1, status_code, headers)

        def failed_and_followed():
            edge.run_cron()
            made = fake_api.requests[calls:]
            failed = [i for i, r in enumerate(made) if r[5] == status_code]
            return failed and len(made) > failed[0] + 1
        assert wait_until(failed_and_followed, timeout=150), name
        made = fake_api.requests[calls:]
        index = next(i for i, r in enumerate(made) if r[5] == status_code)
        failed, following = made[index], made[index + 1]
        # It came late in its run: at least two 2 s requests before it.
        runs = [line["run"] for line in edge.log_events("reconcile_run")
                if line["run"] and line["run"]["ended"] == "api"]
        run = runs[-1]
        started = calendar.timegm(time.strptime(run["started_at"], "%Y-%m-%dT%H:%M:%SZ"))
        assert failed[0] - started >= 3, (name, failed[0] - started)
        waited = following[0] - failed[4]
        least = {"retry-after seconds": 15, "503": 30}[name]
        assert waited >= least - 1, (name, waited)
    fake_api.delay_secs = 0


def test_runs_never_overlap_even_when_the_api_is_slow(make_edge, make_origin, fake_api):
    origin = make_origin()
    # A 60 s lease and 8 s answers: a run must hand over after a few requests (each step may
    # take 15 s, and the last must be stored 10 s before the lease ends).
    edge = make_edge("reconcile-lease", reconciling(origin, fake_api, FAULT_RECONCILE_LEASE_SECS="60",
                                                     RECONCILE_REQUESTS_PER_RUN="40"), faults=True)
    switched_on(edge)
    sessions = [str(uuid.uuid4()) for _ in range(4)]
    for session in sessions:
        fake_api.add_session(session, "Approved")
    fake_api.delay_secs = 8
    calls = len(fake_api.requests)

    def all_delivered():
        # A cron tick that finds the lease free runs in the tick's own request, until it hands
        # over (up to the 60 s lease), so its answer may take that long.
        edge.run_cron(timeout=90)
        return all(events_about(origin, s) for s in sessions)
    assert wait_until(all_delivered, timeout=240), status(edge)
    fake_api.delay_secs = 0
    made = [r for r in fake_api.requests[calls:] if r[4] is not None]
    made.sort(key=lambda r: r[0])
    for earlier, later in zip(made, made[1:]):
        assert later[0] >= earlier[4] - 0.05, f"two requests at once: {earlier[:2]} and {later[:2]}"
    runs = [line["run"] for line in edge.log_events("reconcile_run") if line["run"]]
    handed_over = [run for run in runs if run["ended"] == "budget_used"]
    assert handed_over, "a run stopped before its lease ended and the next continued"
    for run in runs:
        started = calendar.timegm(time.strptime(run["started_at"], "%Y-%m-%dT%H:%M:%SZ"))
        finished = calendar.timegm(time.strptime(run["finished_at"], "%Y-%m-%dT%H:%M:%SZ"))
        assert finished - started <= 60, run


def test_a_runs_budget_counts_every_subrequest_it_causes(make_edge, make_origin, fake_api):
    origin = make_origin()
    edge = make_edge("reconcile-budget", reconciling(
        origin, fake_api, RECONCILE_REQUESTS_PER_RUN="7",
        STREAM_TOKEN_SECRET="stream-secret-for-budget-tests-0123456789"))
    switched_on(edge)
    gaps = [str(uuid.uuid4()) for _ in range(2)]
    for session in gaps:
        fake_api.add_session(session, "Approved")
    assert wait_until(lambda: edge.run_cron() or all(events_about(origin, s) for s in gaps), timeout=120)
    runs = [line["run"] for line in edge.log_events("reconcile_run") if line["run"]]
    injecting = [run for run in runs if run["events_injected"]]
    # A list page, a question, a decision, a claim and two stream publishes: 6; the next gap's
    # question makes 7, and its decision, claim and publishes do not fit: one event per run.
    assert all(run["events_injected"] == 1 for run in injecting), injecting
    assert all(run["requests"] <= 7 for run in runs), runs
    assert any(run["requests"] == 7 for run in injecting), injecting


def test_alerts_carry_their_own_key_and_never_the_origins(make_edge, make_origin):
    origin, receiver = make_origin(), make_origin(secret=ALERTS_SECRET)
    origin.status = 500
    edge = make_edge("alerts-key", base_config(origin.url, ADMIN_TOKEN=ADMIN_TOKEN, RETRY_SCHEDULE="1x1",
                                               ALERTS_URL=receiver.url, ALERTS_SIGNING_SECRET=ALERTS_SECRET))
    accepted(edge, didit.session_payload())
    assert receiver.wait_for(lambda r: any(x["verified"] and x["event"]["type"] == "didit-edge.dead_letter.created"
                                           for x in r.received), timeout=60)
    alert = next(x for x in receiver.received if x["verified"])
    with pytest.raises(WebhookVerificationError):
        Webhook(SIGNING_SECRET).verify(alert["raw"], alert["headers"])
    # The origins' key is refused as the alerts' (alone or in a rotation), and only alerts wait.
    for shared in (SIGNING_SECRET, f"{ALERTS_SECRET},{SIGNING_SECRET}"):
        held = make_edge("alerts-shared-key", base_config(origin.url, ALERTS_URL=receiver.url,
                                                          ALERTS_SIGNING_SECRET=shared))
        _, _, raw = held.request("GET", "/healthz")
        assert json.loads(raw)["invalid_settings"] == ["ALERTS_SIGNING_SECRET"]
        held.stop()
    unkeyed = make_edge("alerts-unkeyed", base_config(origin.url, ALERTS_URL=receiver.url))
    _, _, raw = unkeyed.request("GET", "/healthz")
    assert json.loads(raw)["invalid_settings"] == ["ALERTS_SIGNING_SECRET"]


ERASABLE_IDS = [".", "..", "/", "%2F", "%2e%2e", "a/../b", "?x=1", "#frag", " spaced out ", "line\nbreak\ttab",
                "Zoë 日本 🙂", "x" * 20_000]


def test_erasure_works_for_any_id(make_edge, make_origin):
    origin = make_origin()
    edge = make_edge("erase-any-id", base_config(origin.url, ADMIN_TOKEN=ADMIN_TOKEN))
    for person in ERASABLE_IDS:
        accepted(edge, user_event(person))
    for person in ERASABLE_IDS:
        code, reply = edge.admin_json("POST", "/admin/erasures", {"subject_kind": "user", "subject_id": person})
        assert code == 200, (person[:20], reply)
        assert reply["erased"]["events"] == 1, person[:20]
        # Erased again: the same subject, nothing left to remove.
        code, reply = edge.admin_json("POST", "/admin/erasures", {"subject_kind": "user", "subject_id": person})
        assert (code, reply["erased"]["events"], reply["erased"]["payloads"]) == (200, 1, 0), person[:20]
    # The old path form answers where erasure went, whatever its id.
    for path in ["/admin/subjects/user/..", "/admin/subjects/user/%2E%2E", "/admin/subjects/user/alice"]:
        code, _, raw = edge.request("DELETE", path, headers={"authorization": f"Bearer {ADMIN_TOKEN}"})
        assert code in (404, 410), (path, code)
    code, _, raw = edge.request("DELETE", "/admin/subjects/user/alice",
                                headers={"authorization": f"Bearer {ADMIN_TOKEN}"})
    assert (code, json.loads(raw)["error"]["code"]) == (410, "route_moved")


def test_the_switch_on_is_exact_to_the_microsecond(make_edge, make_origin, fake_api):
    origin = make_origin()
    edge = make_edge("reconcile-switch-on", reconciling(origin, fake_api))
    first = sweep(edge)
    on = parse_iso_us(first["activated_at"])
    assert first["activated_at"].endswith("Z") and "." in first["activated_at"], first["activated_at"]
    before, at = str(uuid.uuid4()), str(uuid.uuid4())
    fake_api.add_session(before, "Approved", created_us=on - 1)
    fake_api.add_session(at, "Approved", created_us=on)
    assert wait_until(lambda: edge.run_cron() or events_about(origin, at), timeout=60)
    second = status(edge)["checkpoint"]
    sweep(edge, after_checkpoint=second)
    assert fake_api.decision_fetches(before) == 0
    assert events_about(origin, before) == []
    assert totals(edge)[1] == 1
