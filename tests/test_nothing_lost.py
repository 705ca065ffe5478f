"""Every path a review found by which an authentic delivery was lost or silently not delivered,
each tried the way Didit and an origin would: through the real worker under `wrangler dev`,
with real origins on 127.0.0.1 that verify every request with the independent
`standardwebhooks` library."""

import json
import time
import uuid

import pytest

import didit
from harness import ADMIN_TOKEN, DIDIT_SECRET, SIGNING_SECRET, base_config, wait_until


def send_payload(edge, payload, kinds=("raw",)):
    body = didit.encode(payload)
    return edge.post_webhook(body, didit.signed_headers(body, payload, DIDIT_SECRET, kinds=kinds))


def accepted(edge, payload, kinds=("raw",)):
    status, reply = send_payload(edge, payload, kinds)
    assert (status, reply.get("status")) == (200, "accepted"), reply
    return reply["id"]



def dead_letters(edge):
    status, page = edge.admin("GET", "/admin/dead-letters")
    assert status == 200, page
    return page["dead_letters"]


def user_event(user, status="ACTIVE", webhook_type="user.status.updated", timestamp=None, **extra):
    payload = {"webhook_type": webhook_type, "timestamp": int(time.time()) if timestamp is None else timestamp,
               "vendor_data": user, "status": status, "event_id": str(uuid.uuid4())}
    payload.update(extra)
    return payload


# --- 1: any text Didit can send as a subject id or alias ------------------------------------------

AWKWARD_IDS = [
    'a"b\\c',
    'acme "42"',
    "line\nbreak\ttab\u0001\u001f",
    "Zoë 🦊 ユーザー \u2028",
    '{"json": ["inside", "vendor_data"]}',
    "x" * 20_000,
]


@pytest.mark.parametrize("user", AWKWARD_IDS, ids=["quote-backslash", "quotes", "control", "unicode", "json", "20kB"])
def test_any_subject_id_is_stored_and_delivered(edge, shared_origin, user):
    payload = user_event(user, event_id=f'evt "{user[:40]}" \\ end')
    event_id = accepted(edge, payload)
    assert shared_origin.wait_for(lambda o: event_id in o.delivered_ids(), timeout=30)
    [event] = [d["event"] for d in shared_origin.deliveries() if d["event"] and d["event"]["id"] == event_id]
    assert event["data"]["subject"] == {"kind": "user", "id": user}
    assert event["data"]["payload"] == payload
    # Didit's retry of the same delivery is a duplicate, found by id and by alias alike.
    assert send_payload(edge, payload)[1] == {"status": "duplicate", "id": event_id}
    resend = dict(payload, timestamp=payload["timestamp"] + 30)
    assert send_payload(edge, resend)[1] == {"status": "duplicate", "id": event_id}


def test_a_session_with_an_awkward_id_keeps_its_order(edge, shared_origin):
    session = 'sess "quoted" \\ 🦊'
    now = int(time.time())
    first = accepted(edge, didit.session_payload(session_id=session, status="In Review", timestamp=now - 5))
    second = accepted(edge, didit.session_payload(session_id=session, status="Approved", timestamp=now))
    assert shared_origin.wait_for(lambda o: {first, second} <= set(o.delivered_ids()), timeout=30)
    ids = [i for i in shared_origin.delivered_ids() if i in (first, second)]
    assert ids == [first, second]


# --- 2: distinct events in the same second --------------------------------------------------------

def test_distinct_events_in_the_same_second_are_both_delivered(edge, shared_origin):
    user, now = f"user-{uuid.uuid4()}", int(time.time())
    email = user_event(user, webhook_type="user.data.updated", timestamp=now, changes={"email": "a@example.com"})
    phone = user_event(user, webhook_type="user.data.updated", timestamp=now, changes={"phone": "+3312345678"})
    ids = [accepted(edge, email), accepted(edge, phone)]
    assert ids[0] != ids[1]
    assert shared_origin.wait_for(lambda o: set(ids) <= set(o.delivered_ids()), timeout=30)
    delivered = {d["event"]["id"]: d["event"]["data"]["payload"]["changes"] for d in shared_origin.deliveries()
                 if d["event"] and d["event"]["id"] in ids}
    assert delivered == {ids[0]: email["changes"], ids[1]: phone["changes"]}


def test_retries_and_resends_of_one_event_stay_duplicates(edge, shared_origin):
    user = f"user-{uuid.uuid4()}"
    payload = user_event(user, webhook_type="user.data.updated", changes={"email": "a@example.com"})
    first = accepted(edge, payload)
    # A retry: the very same body, signed again, with all three signatures.
    assert send_payload(edge, payload, kinds=("raw", "v2"))[1] == {"status": "duplicate", "id": first}
    # The same content re-serialized (whitespace, key order), verified by X-Signature-V2 alone.
    spaced = json.dumps(payload, indent=2).encode()
    headers = didit.signed_headers(spaced, payload, DIDIT_SECRET, kinds=("v2",))
    assert edge.post_webhook(spaced, headers)[1] == {"status": "duplicate", "id": first}
    # A retry whose `event_id` changed per attempt: the content is the same event.
    assert send_payload(edge, dict(payload, event_id=str(uuid.uuid4())))[1] == {"status": "duplicate", "id": first}
    # A resend from Didit's console: the same event_id, a fresh timestamp and signatures.
    resend = dict(payload, timestamp=payload["timestamp"] + 120)
    assert send_payload(edge, resend)[1] == {"status": "duplicate", "id": first}
    assert shared_origin.wait_for(lambda o: first in o.delivered_ids(), timeout=30)
    time.sleep(1)
    assert shared_origin.delivered_ids().count(first) == 1


# --- 3: a 4xx is a failed try, not the end --------------------------------------------------------

def two_origins(primary, secondary, **overrides):
    return base_config(primary.url, ADMIN_TOKEN=ADMIN_TOKEN, ORIGINS=json.dumps([
        {"name": "aws-eu", "url": primary.url, "priority": 0, "timeout_ms": 1500},
        {"name": "gcp-us", "url": secondary.url, "priority": 1, "timeout_ms": 1500},
    ]), **overrides)


def test_a_401_is_retried_on_the_schedule_and_delivered_once_fixed(make_edge, make_origin):
    origin = make_origin()
    origin.status = 401
    edge = make_edge("rejected-401", base_config(origin.url, ADMIN_TOKEN=ADMIN_TOKEN, RETRY_SCHEDULE="1x30"))
    session, now = str(uuid.uuid4()), int(time.time())
    first = accepted(edge, didit.session_payload(session_id=session, status="In Review", timestamp=now - 10))
    second = accepted(edge, didit.session_payload(session_id=session, status="Approved", timestamp=now))
    assert origin.wait_for(lambda o: len(o.received) >= 3, timeout=30), "retried, not given up"
    assert dead_letters(edge) == []
    assert {r["answered"] for r in origin.received} == {401}
    origin.status = 204  # the key rotation is done
    assert origin.wait_for(lambda o: {first, second} <= set(o.delivered_ids()), timeout=30)
    assert [i for i in origin.delivered_ids() if i in (first, second)] == [first, second]
    # A 4xx says nothing about the origin's health.
    status, reply = edge.admin("GET", "/admin/origins")
    assert status == 200 and reply["origins"][0]["health"]["state"] == "closed"


def test_an_origin_that_answered_4xx_is_tried_last_not_skipped(make_edge, make_origin):
    primary, secondary = make_origin(), make_origin()
    primary.status, secondary.status = 403, 503
    edge = make_edge("rejected-last", two_origins(primary, secondary))
    event = accepted(edge, didit.session_payload())
    assert wait_until(lambda: len(primary.received) >= 2 and len(secondary.received) >= 2)
    both = sorted([("aws-eu", r["at"]) for r in primary.received] + [("gcp-us", r["at"]) for r in secondary.received],
                  key=lambda pair: pair[1])
    # First attempt: by priority. Later attempts: the origin that answered 403 comes last.
    assert [name for name, _ in both[:4]] == ["aws-eu", "gcp-us", "gcp-us", "aws-eu"]
    primary.status = 204
    assert primary.wait_for(lambda o: event in o.delivered_ids(), timeout=30)


def test_a_redirect_is_never_followed_and_never_counts_as_delivered(make_edge, make_origin):
    origin = make_origin()
    origin.status, origin.extra_headers = 302, {"location": "/landing"}
    edge = make_edge("redirect", base_config(origin.url, ADMIN_TOKEN=ADMIN_TOKEN, RETRY_SCHEDULE="1x2"))
    event = accepted(edge, didit.session_payload())
    assert wait_until(lambda: [d["id"] for d in dead_letters(edge)] == [event], timeout=30)
    [letter] = dead_letters(edge)
    assert letter["reason"] == "retries_exhausted"
    assert [(a["status"], a["error"], a.get("location")) for a in letter["attempts"]] == \
        [(302, "redirect", "/landing")] * 3
    assert origin.get_paths == [], "the POST was not turned into a GET"
    assert event not in origin.delivered_ids()


def test_a_fifth_origin_is_reached_when_the_first_four_are_down(make_edge, make_origin):
    down = [make_origin(start=False) for _ in range(4)]
    fifth = make_origin()
    origins = [{"name": f"p{index}", "url": origin.url, "priority": index, "timeout_ms": 1000}
               for index, origin in enumerate(down + [fifth])]
    edge = make_edge("fifth-origin", base_config(fifth.url, ORIGINS=json.dumps(origins)))
    event = accepted(edge, didit.session_payload())
    assert fifth.wait_for(lambda o: event in o.delivered_ids(), timeout=40)


def test_a_fifth_origin_is_reached_when_the_first_four_reject(make_edge, make_origin):
    rejecting = [make_origin() for _ in range(4)]
    for origin in rejecting:
        origin.status = 400
    fifth = make_origin()
    origins = [{"name": f"p{index}", "url": origin.url, "priority": index}
               for index, origin in enumerate(rejecting + [fifth])]
    edge = make_edge("fifth-after-4xx", base_config(fifth.url, ORIGINS=json.dumps(origins)))
    event = accepted(edge, didit.session_payload())
    assert fifth.wait_for(lambda o: event in o.delivered_ids(), timeout=30)
    assert all(len(origin.received) == 1 for origin in rejecting)


# --- 6: an alarm that keeps failing ------------------------------------------------------------------

def test_an_alarm_that_fails_more_often_than_the_platform_retries_still_delivers(make_edge, make_origin):
    origin = make_origin()
    # Eight failed runs (the platform gives a throwing alarm six retries), backoff from 100 ms.
    edge = make_edge("alarm-faults", base_config(origin.url, FAULT_ALARM_FAILURES="8", FAULT_ALARM_BACKOFF_MS="100"),
                     faults=True)
    event = accepted(edge, didit.session_payload())
    assert origin.wait_for(lambda o: event in o.delivered_ids(), timeout=60)
    failures = [line for line in edge.log_lines() if "injected alarm failure" in line]
    assert len(failures) >= 8, "the faults were really injected"
    assert origin.delivered_ids().count(event) == 1


# --- 7: a broken optional setting -----------------------------------------------------------------

@pytest.mark.parametrize("setting, value", [
    ("RISK_RULES", '[{"code":"x"}]'),
    ("ORIGINS", '[{"name":"a","url":"ftp://typo"}]'),
    ("RETRY_SCHEDULE", "5,zero"),
])
def test_a_broken_delivery_setting_stores_and_waits_then_delivers(make_edge, make_origin, setting, value):
    origin = make_origin()
    good = base_config(origin.url)
    edge = make_edge(f"broken-{setting.lower()}", dict(good, **{setting: value}))
    session, now = str(uuid.uuid4()), int(time.time())
    payloads = [didit.session_payload(session_id=session, status=status, timestamp=now - 10 + index)
                for index, status in enumerate(("In Review", "Declined"))]
    ids = [accepted(edge, payload) for payload in payloads]
    status, _, raw = edge.request("GET", "/healthz")
    assert (status, json.loads(raw)["invalid_settings"]) == (200, [setting])
    time.sleep(2)
    assert origin.deliveries(verified_only=False) == [], "nothing goes out while the setting is broken"
    # Didit's retry while it is broken is still a duplicate.
    assert send_payload(edge, payloads[0])[1] == {"status": "duplicate", "id": ids[0]}
    edge.stop()
    fixed = make_edge(f"fixed-{setting.lower()}", good, persist_dir=edge.persist_dir)
    assert origin.wait_for(lambda o: set(ids) <= set(o.delivered_ids()), timeout=90)
    events = [d["event"] for d in origin.deliveries() if d["event"]["id"] in ids]
    assert [e["id"] for e in events] == ids, "in the order Didit created them"
    assert [e["data"]["status"] for e in events] == ["In Review", "Declined"]
    assert events[1]["data"]["risk"]["level"] == "high"
    assert events[0]["data"]["payload"] == payloads[0]
    assert fixed.post_webhook(*signed_pair(payloads[1]))[1] == {"status": "duplicate", "id": ids[1]}


def signed_pair(payload):
    body = didit.encode(payload)
    return body, didit.signed_headers(body, payload, DIDIT_SECRET)


def test_broken_admin_or_stream_settings_do_not_touch_delivery(make_edge, make_origin):
    origin = make_origin()
    edge = make_edge("broken-admin", base_config(origin.url, ADMIN_TOKEN="short", STREAM_TOKEN_SECRET="also-short"))
    event = accepted(edge, didit.session_payload())
    assert origin.wait_for(lambda o: event in o.delivered_ids(), timeout=30)
    status, reply = edge.admin("GET", "/admin/dead-letters", token="short")
    assert (status, reply["error"]["code"]) == (503, "configuration_error")
    assert "ADMIN_TOKEN" in reply["error"]["message"] and "short" not in reply["error"]["message"].split("(")[0]


def test_without_a_usable_didit_secret_every_delivery_is_503(make_edge, make_origin):
    origin = make_origin()
    edge = make_edge("no-secret", base_config(origin.url, DIDIT_WEBHOOK_SECRETS="a,,b"))
    status, reply = send_payload(edge, didit.session_payload())
    assert (status, reply["error"]["code"]) == (503, "configuration_error")
    assert "DIDIT_WEBHOOK_SECRETS" in reply["error"]["message"]


# --- 8: the subrequest budget ---------------------------------------------------------------------

def test_an_alarm_stays_within_its_subrequest_budget_and_hands_over(make_edge, make_origin):
    origin = make_origin(start=False)
    edge = make_edge("subrequests", base_config(origin.url, SUBREQUEST_LIMIT="10", ADMIN_TOKEN=ADMIN_TOKEN))
    session, now = str(uuid.uuid4()), int(time.time()) - 100
    ids = [accepted(edge, didit.session_payload(session_id=session, status="In Progress", timestamp=now + i,
                                                metadata={"n": i}))
           for i in range(30)]
    time.sleep(3)  # the origin refuses connections: the first event is retried, the rest wait
    origin.start()
    assert origin.wait_for(lambda o: set(ids) <= set(o.delivered_ids()), timeout=90)
    assert [i for i in origin.delivered_ids() if i in ids] == ids, "once each, in order"
    runs = edge.log_events("inbox_alarm")
    assert runs and all(run["subrequests"] <= run["subrequest_limit"] == 10 for run in runs), runs
    assert any(run["handed_over"] for run in runs), "thirty events do not fit one run of ten subrequests"
    status, reply = edge.admin("GET", "/admin/origins")
    assert reply["origins"][0]["health"]["state"] == "closed", "the budget never shows up as origin failures"


# --- 9: rotating the origin signing secret ---------------------------------------------------------

NEW_SIGNING_SECRET = "whsec_bmV3LXNpZ25pbmcta2V5LWFmdGVyLXJvdGF0aW9uLTAx"


def test_two_signing_secrets_let_an_origin_switch_keys_without_a_refusal(make_edge, make_origin):
    old_only, new_only = make_origin(), make_origin(secret=NEW_SIGNING_SECRET)
    edge = make_edge("rotation", base_config(old_only.url, ORIGIN_SIGNING_SECRET=f"{NEW_SIGNING_SECRET},{SIGNING_SECRET}",
                                             ORIGINS=json.dumps([
                                                 {"name": "old", "url": old_only.url},
                                                 {"name": "new", "url": new_only.url, "consumer": "crm"},
                                             ])))
    event = accepted(edge, didit.session_payload())
    for origin in (old_only, new_only):
        assert origin.wait_for(lambda o: event in o.delivered_ids(), timeout=30)
        assert all(r["verified"] for r in origin.received), "every request verifies with the origin's one key"
    [request] = new_only.received
    assert len(request["headers"]["webhook-signature"].split(" ")) == 2
