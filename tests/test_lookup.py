"""The admin API's lookup (`POST /admin/lookup`): what happened to a subject's events, one
timeline each, read from the real worker under `wrangler dev` against real origins: the
signature that verified an event and how fresh it was, each request with its status and
latency, a retry, a redirect, a dead letter found by its id alone, an erasure, and the clear
404s and 401s."""

import sqlite3
import uuid

import didit
import test_schema
from harness import ADMIN_TOKEN, DIDIT_SECRET, OLD_DIDIT_SECRET, base_config, cells_containing, inbox_tables, wait_until
from test_strict_storage import inbox_file


def send(edge, payload, kinds=("raw",), secret=DIDIT_SECRET):
    body = didit.encode(payload)
    code, reply = edge.post_webhook(body, didit.signed_headers(body, payload, secret, kinds=kinds))
    assert (code, reply["status"]) == (200, "accepted"), reply
    return reply["id"]


def lookup(edge, token=ADMIN_TOKEN, **body):
    return edge.admin_json("POST", "/admin/lookup", body, token=token)


def found(edge, **body):
    status, reply = lookup(edge, **body)
    assert status == 200, reply
    return reply



def only_copy(reply):
    [event] = reply["events"]
    [copy] = event["copies"]
    return event, copy


def test_a_delivered_a_retried_and_a_redirected_event_read_as_timelines(make_edge, make_origin):
    origin = make_origin()
    edge = make_edge("lookup", base_config(origin.url, ADMIN_TOKEN=ADMIN_TOKEN, RETRY_SCHEDULE="1x3"))

    # Delivered at once, signed with X-Signature-V2 by the second (older) secret.
    payload = didit.session_payload()
    session = payload["session_id"]
    event_id = send(edge, payload, kinds=("v2",), secret=OLD_DIDIT_SECRET)
    assert origin.wait_for(lambda o: event_id in o.delivered_ids())
    assert wait_until(lambda: only_copy(found(edge, subject_kind="session", subject_id=session))[1]["state"]
                      == "delivered")
    reply = found(edge, subject_kind="session", subject_id=session)
    assert (reply["subject_kind"], reply["erased_at_ms"]) == ("session", None)
    event, copy = only_copy(reply)
    assert (event["id"], event["didit_event_id"]) == (event_id, payload["event_id"])
    assert (event["webhook_type"], event["status"]) == ("status.updated", "Approved")
    received = event["received"]
    assert received["source"] == "webhook"
    assert received["signature"] == {"header": "X-Signature-V2", "secret_index": 1}
    assert 0 <= received["age_ms"] < 30_000, "the body's timestamp was taken just before sending"
    assert received["age_ms"] == received["at_ms"] - payload["timestamp"] * 1000
    assert event["classified"]["consumers"] == ["default"] and event["classified"]["risk_level"]
    assert event["payload_kept"] is False, "delivered: the payload went"
    [request] = copy["log"]
    assert (request["origin"], request["status"], request.get("error")) == ("test-origin", 204, None)
    assert isinstance(request["latency_ms"], int) and 0 <= request["latency_ms"] < 10_000
    assert (copy["delivered_to"], copy["attempts"], copy["requests"]) == ("test-origin", 1, 1)
    assert copy["at_ms"] >= received["at_ms"]
    # Found again by its id (the webhook-id the origin saw) and by Didit's event_id.
    webhook_id = origin.deliveries()[-1]["headers"]["webhook-id"]
    assert found(edge, subject_kind="session", subject_id=session, event_id=webhook_id)["events"][0]["id"] == event_id
    assert found(edge, subject_kind="session", subject_id=session,
                 event_id=payload["event_id"])["events"][0]["id"] == event_id

    # A first attempt answered 503, the retry 204: two requests, in order.
    origin.status = 503
    retried = didit.session_payload()
    retried_id = send(edge, retried)
    assert origin.wait_for(lambda o: len([d for d in o.deliveries() if d["headers"]["webhook-id"] == retried_id]) == 1)
    origin.status = 204
    assert origin.wait_for(lambda o: retried_id in o.delivered_ids())
    assert wait_until(lambda: only_copy(found(edge, subject_kind="session", subject_id=retried["session_id"]))[1]
                      ["state"] == "delivered")
    event, copy = only_copy(found(edge, subject_kind="session", subject_id=retried["session_id"]))
    assert event["received"]["signature"]["header"] == "X-Signature"
    assert [(r["status"], r.get("error")) for r in copy["log"]] == [(503, "server_error"), (204, None)]
    assert (copy["attempts"], copy["requests"], copy["requests_not_kept"]) == (2, 2, 0)
    assert copy["log"][0]["at_ms"] < copy["log"][1]["at_ms"]
    assert all(isinstance(r["latency_ms"], int) for r in copy["log"])

    # A redirect is a failed try; the lookup shows where it pointed (the log never does).
    where = f"https://elsewhere.example/hooks/{uuid.uuid4()}"
    origin.status, origin.extra_headers = 307, {"Location": where}
    moved = didit.session_payload()
    moved_id = send(edge, moved)
    assert origin.wait_for(lambda o: any(d["headers"]["webhook-id"] == moved_id for d in o.deliveries()))
    origin.status, origin.extra_headers = 204, {}
    assert origin.wait_for(lambda o: moved_id in o.delivered_ids())
    assert wait_until(lambda: only_copy(found(edge, subject_kind="session", subject_id=moved["session_id"]))[1]
                      ["state"] == "delivered")
    _, copy = only_copy(found(edge, subject_kind="session", subject_id=moved["session_id"]))
    assert (copy["log"][0]["status"], copy["log"][0]["error"], copy["log"][0]["location"]) == (307, "redirect", where)
    assert where not in "\n".join(edge.log_lines())

    # Misses are clear 404s; a lookup of an unknown subject leaves no storage behind.
    tables_before = sorted(inbox_tables(edge.persist_dir))
    never = f"never-{uuid.uuid4()}"
    for _ in range(2):  # the second finds the object whose storage the first released
        status, reply = lookup(edge, subject_kind="session", subject_id=never)
        assert (status, reply["error"]["code"]) == (404, "subject_not_found")
    assert sorted(inbox_tables(edge.persist_dir)) == tables_before
    status, reply = lookup(edge, subject_kind="session", subject_id=session, event_id="evt_unknown")
    assert (status, reply["error"]["code"]) == (404, "event_not_found")
    status, reply = lookup(edge, event_id=event_id)
    assert (status, reply["error"]["code"]) == (404, "event_not_found"), "by id alone: dead letters only"


def test_the_lookup_is_guarded_and_strict(make_edge, make_origin):
    origin = make_origin()
    edge = make_edge("lookup-api", base_config(origin.url, ADMIN_TOKEN=ADMIN_TOKEN))
    for token in (None, "wrong-token-wrong-token-wrong"):
        status, reply = lookup(edge, token=token, subject_kind="session", subject_id="s1")
        assert (status, reply["error"]["code"]) == (401, "unauthorized")
    for body in ({}, {"subject_kind": "session"}, {"subject_kind": "planet", "subject_id": "x"},
                 {"subject_kind": "session", "subject_id": " "}, {"event_id": ""},
                 {"event_id": "evt_1", "extra": True}):
        status, reply = lookup(edge, **body)
        assert (status, reply["error"]["code"]) == (400, "invalid_subject"), body
    status, _, raw = edge.request("GET", "/admin/lookup", headers={"Authorization": f"Bearer {ADMIN_TOKEN}"})
    assert status == 405, raw


def test_a_dead_letter_is_found_by_its_id_alone_and_an_erasure_leaves_only_its_mark(make_edge, make_origin):
    origin = make_origin()
    origin.status, origin.extra_headers = 500, {"webhook-delivery": "abort-message"}
    edge = make_edge("lookup-dead", base_config(origin.url, ADMIN_TOKEN=ADMIN_TOKEN, ALLOW_SIMPLE_SIGNATURE="true"))
    person = f"person/{uuid.uuid4()} é"
    payload = didit.session_payload(vendor_data=person)
    session = payload["session_id"]
    event_id = send(edge, payload, kinds=("simple",))

    def dead():
        status, reply = lookup(edge, event_id=event_id)
        return status == 200 and reply["events"][0]["copies"][0]["state"] == "dead"

    assert wait_until(dead)
    reply = found(edge, event_id=event_id)
    assert reply["subject_kind"] == "session"
    event, copy = only_copy(reply)
    assert event["received"]["signature"]["header"] == "X-Signature-Simple"
    assert (copy["reason"], copy["attempts"]) == ("aborted_by_origin", 1)
    assert [(r["status"], r["error"]) for r in copy["log"]] == [(500, "aborted")]
    assert event["payload_kept"] is True, "a dead letter keeps its payload for replay"

    status, erased = edge.admin_json("POST", "/admin/erasures", {"subject_kind": "session", "subject_id": session})
    assert status == 200, erased
    reply = found(edge, subject_kind="session", subject_id=session)
    assert reply["erased_at_ms"] is not None
    event, copy = only_copy(reply)
    assert event["id"] == event_id, "the id is kept for deduplication"
    assert event["payload_kept"] is False
    assert (copy["state"], copy["reason"]) == ("expired", "aborted_by_origin")
    assert session not in str(reply) and person not in str(reply), "nothing personal comes back"
    assert cells_containing(edge.persist_dir, person, "Inbox") == []
    # Erased, it is no longer a dead letter: its id alone finds nothing.
    status, reply = lookup(edge, event_id=event_id)
    assert (status, reply["error"]["code"]) == (404, "event_not_found")


def test_an_older_releases_attempt_log_is_read_before_the_copys_own_history(make_edge, make_origin):
    origin = make_origin()
    origin.status, origin.extra_headers = 500, {"webhook-delivery": "abort-message"}
    edge = make_edge("lookup-legacy", base_config(origin.url, ADMIN_TOKEN=ADMIN_TOKEN))
    event_id = send(edge, didit.session_payload())
    assert wait_until(lambda: lookup(edge, event_id=event_id)[0] == 200)

    # Stopped, the inbox gets the `attempts` table an older release logged failed requests in,
    # with one request of that release (no latency: it was never stored).
    edge.stop()
    path, seq = inbox_file(edge.persist_dir, event_id)
    connection = sqlite3.connect(path, timeout=5)
    with connection:
        connection.executescript(test_schema.constant("ATTEMPTS_TABLE"))
        connection.execute("INSERT INTO attempts (event_seq, consumer, at_ms, origin, status, error) "
                           "VALUES (?, 'default', 1, 'old-origin', 502, 'server_error')", (seq,))
    connection.close()
    edge.start()

    _, copy = only_copy(found(edge, event_id=event_id))
    assert [(r["origin"], r["status"], "latency_ms" in r) for r in copy["log"]] == \
        [("old-origin", 502, False), ("test-origin", 500, True)]
    assert (copy["attempts"], copy["requests"]) == (1, 2), "the old release's request is counted too"
    # The dead letter's listing, written again on a replay's return, shows both as well.
    status, _ = edge.admin("POST", f"/admin/dead-letters/{event_id}/replay")
    assert status == 200

    def listed():
        status, page = edge.admin("GET", "/admin/dead-letters")
        return [d for d in page["dead_letters"] if d["id"] == event_id] if status == 200 else []

    assert wait_until(lambda: len(listed()) == 1 and len(listed()[0]["attempts"]) == 3)
    assert [a["origin"] for a in listed()[0]["attempts"]] == ["old-origin", "test-origin", "test-origin"]
