"""Dead letters: what happens when the retry schedule runs out or an origin aborts, how they are
listed and replayed, what later events of the subject do meanwhile, and
how long their identity data is kept. All through the real worker under `wrangler dev`."""

import json
import time
import uuid

import didit
from harness import ADMIN_TOKEN, DIDIT_SECRET, base_config, inbox_rows, wait_until


def config(origin, **overrides):
    # Three attempts a second apart, then a dead letter.
    settings = {"RETRY_SCHEDULE": "1x2", "ADMIN_TOKEN": ADMIN_TOKEN}
    settings.update(overrides)
    return base_config(origin.url, **settings)


def send(edge, session_id=None, timestamp=None, status="Approved"):
    payload = didit.session_payload(session_id=session_id, timestamp=timestamp, status=status)
    body = didit.encode(payload)
    code, reply = edge.post_webhook(body, didit.signed_headers(body, payload, DIDIT_SECRET))
    assert (code, reply["status"]) == (200, "accepted"), reply
    return reply["id"]


def dead_letters(edge, query=""):
    status, page = edge.admin("GET", f"/admin/dead-letters{query}")
    assert status == 200, page
    return page



def wait_for_dead(edge, ids, timeout=30):
    assert wait_until(lambda: {d["id"] for d in dead_letters(edge)["dead_letters"]} >= set(ids), timeout), \
        dead_letters(edge)
    return {d["id"]: d for d in dead_letters(edge)["dead_letters"]}


def test_an_exhausted_schedule_makes_a_listed_dead_letter_that_replay_delivers(make_edge, make_origin):
    origin = make_origin()
    origin.status = 500
    edge = make_edge("dead-letter", config(origin))
    event = send(edge)
    letter = wait_for_dead(edge, [event])[event]
    assert len(origin.deliveries()) == 3, "the first attempt and the schedule's two retries"
    assert (letter["consumer"], letter["reason"], letter["webhook_type"]) == \
        ("default", "retries_exhausted", "status.updated")
    assert letter["subject"].startswith("session:")
    assert [(a["origin"], a["status"], a["error"]) for a in letter["attempts"]] == \
        [("test-origin", 500, "server_error")] * 3
    times = [a["at_ms"] for a in letter["attempts"]]
    assert times == sorted(times) and letter["dead_at_ms"] >= times[-1]
    assert letter["replayable_until_ms"] - letter["dead_at_ms"] == 14 * 86_400_000
    # Nothing more is sent to a dead letter's origin.
    time.sleep(3)
    assert len(origin.deliveries()) == 3
    # Fixed, then replayed: delivered with the same webhook-id, and gone from the list.
    origin.status = 204
    status, reply = edge.admin("POST", f"/admin/dead-letters/{event}/replay")
    assert (status, reply) == (200, {"replayed": [{"id": event, "consumer": "default"}]})
    assert origin.wait_for(lambda o: event in o.delivered_ids(), timeout=30)
    assert [d["headers"]["webhook-id"] for d in origin.deliveries()] == [event] * 4
    assert dead_letters(edge) == {"dead_letters": [], "next": None, "total": 0}
    # A second replay finds nothing to do.
    status, reply = edge.admin("POST", f"/admin/dead-letters/{event}/replay")
    assert (status, reply["error"]["code"]) == (404, "dead_letter_not_found")


def test_an_abort_header_stops_retries_at_once(make_edge, make_origin):
    origin = make_origin()
    origin.status, origin.extra_headers = 503, {"webhook-delivery": "abort-message"}
    edge = make_edge("abort", config(origin, RETRY_SCHEDULE="1x1000"))
    event = send(edge)
    letter = wait_for_dead(edge, [event])[event]
    assert letter["reason"] == "aborted_by_origin"
    assert [(a["status"], a["error"]) for a in letter["attempts"]] == [(503, "aborted")]
    time.sleep(3)
    assert len(origin.deliveries()) == 1, "no retry after an abort, despite a long schedule"


def test_later_events_of_the_subject_wait_behind_a_dead_letter(make_edge, make_origin):
    origin = make_origin()
    origin.status = 500
    edge = make_edge("hold", config(origin))
    session, now = str(uuid.uuid4()), int(time.time())
    first = send(edge, session, now - 60, "In Review")
    wait_for_dead(edge, [first])
    origin.status = 204
    second = send(edge, session, now - 30, "Approved")
    other = send(edge)  # another subject is not held
    assert origin.wait_for(lambda o: other in o.delivered_ids(), timeout=30)
    time.sleep(3)
    assert second not in origin.delivered_ids(), "the later event waits: the origin never sees it first"
    status, _ = edge.admin("POST", f"/admin/dead-letters/{first}/replay")
    assert status == 200
    assert origin.wait_for(lambda o: second in o.delivered_ids(), timeout=30)
    delivered = [i for i in origin.delivered_ids() if i in (first, second)]
    assert delivered == [first, second]


def test_with_continue_later_events_go_on_and_the_replay_comes_after(make_edge, make_origin):
    origin = make_origin()
    origin.status = 500
    edge = make_edge("continue", config(origin, AFTER_DEAD_LETTER="continue"))
    session, now = str(uuid.uuid4()), int(time.time())
    first = send(edge, session, now - 60, "In Review")
    wait_for_dead(edge, [first])
    origin.status = 204
    second = send(edge, session, now - 30, "Approved")
    assert origin.wait_for(lambda o: second in o.delivered_ids(), timeout=30)
    status, _ = edge.admin("POST", f"/admin/dead-letters/{first}/replay")
    assert status == 200
    assert origin.wait_for(lambda o: first in o.delivered_ids(), timeout=30)
    assert [i for i in origin.delivered_ids() if i in (first, second)] == [second, first]


def test_bulk_replay_and_paging_across_subjects(make_edge, make_origin):
    main, crm = make_origin(), make_origin()
    # Aborts make dead letters at once, without opening breakers that would slow the test.
    for origin in (main, crm):
        origin.status, origin.extra_headers = 500, {"webhook-delivery": "abort-message"}
    edge = make_edge("bulk", config(main, ORIGINS=json.dumps([
        {"name": "main", "url": main.url},
        {"name": "crm", "url": crm.url, "consumer": "crm"},
    ])))
    events = [send(edge) for _ in range(3)]
    wait_for_dead(edge, events)
    assert wait_until(lambda: dead_letters(edge)["total"] == 6), "one per event and consumer"
    first = dead_letters(edge, "?limit=4")
    assert (len(first["dead_letters"]), first["total"]) == (4, 6) and first["next"] is not None
    rest = dead_letters(edge, f"?limit=4&after={first['next']}")
    assert (len(rest["dead_letters"]), rest["next"]) == (2, None)
    listed = {(d["id"], d["consumer"]) for d in first["dead_letters"] + rest["dead_letters"]}
    assert listed == {(e, c) for e in events for c in ("default", "crm")}
    assert {d["id"] for d in dead_letters(edge, "?consumer=crm")["dead_letters"]} == set(events)
    # Only the crm consumer's, then everything else.
    crm.status = main.status = 204
    crm.extra_headers = main.extra_headers = {}
    status, reply = edge.admin("POST", "/admin/dead-letters/replay?consumer=crm")
    assert (status, reply) == (200, {"replayed": 3, "remaining": 0})
    assert crm.wait_for(lambda o: set(events) <= set(o.delivered_ids()), timeout=30)
    assert dead_letters(edge)["total"] == 3
    status, reply = edge.admin("POST", "/admin/dead-letters/replay")
    assert (status, reply) == (200, {"replayed": 3, "remaining": 0})
    assert main.wait_for(lambda o: set(events) <= set(o.delivered_ids()), timeout=30)


def test_the_dead_letter_api_is_guarded_and_strict(make_edge, make_origin):
    origin = make_origin()
    edge = make_edge("dead-letter-api", config(origin))
    for method, path in (("GET", "/admin/dead-letters"), ("POST", "/admin/dead-letters/replay"),
                         ("POST", "/admin/dead-letters/evt_0123/replay")):
        for token in (None, "wrong-token-wrong-token-wrong"):
            status, reply = edge.admin(method, path, token=token)
            assert (status, reply["error"]["code"]) == (401, "unauthorized"), (method, path)
    for query in ("?limit=0", "?limit=9999", "?consumer=a%20b", "?consumers=crm", "?after=x"):
        status, reply = edge.admin("GET", f"/admin/dead-letters{query}")
        assert (status, reply["error"]["code"]) == (400, "invalid_query"), query
    status, reply = edge.admin("POST", "/admin/dead-letters/replay?consumer=")
    assert (status, reply["error"]["code"]) == (400, "invalid_query")
    status, reply = edge.admin("POST", "/admin/dead-letters/evt_unknown/replay")
    assert (status, reply["error"]["code"]) == (404, "dead_letter_not_found")
    status, reply = edge.admin("DELETE", "/admin/dead-letters")
    assert (status, reply["error"]["code"]) == (405, "method_not_allowed")


def test_a_dead_letter_keeps_its_payload_only_for_its_retention(make_edge, make_origin):
    origin = make_origin()
    origin.status = 500
    edge = make_edge("dead-letter-retention", config(origin, DEAD_LETTER_RETENTION_SECS="4", DEDUP_TTL_SECS="600"))
    payload = didit.session_payload()
    body = didit.encode(payload)
    _, reply = edge.post_webhook(body, didit.signed_headers(body, payload, DIDIT_SECRET))
    event = reply["id"]
    wait_for_dead(edge, [event])
    assert [row[0] for row in inbox_rows(edge.persist_dir, event)] == [1], "kept for replay"
    # After its retention the payload (identity data) is gone, and so is the dead letter.
    assert wait_until(lambda: [row[0] for row in inbox_rows(edge.persist_dir, event)] == [0], 15)
    assert dead_letters(edge)["total"] == 0
    status, reply = edge.admin("POST", f"/admin/dead-letters/{event}/replay")
    assert (status, reply["error"]["code"]) == (404, "dead_letter_not_found")
    # The id is still remembered: Didit's retry is a duplicate, not a new event.
    code, again = edge.post_webhook(body, didit.signed_headers(body, payload, DIDIT_SECRET))
    assert (code, again["status"]) == (200, "duplicate")
    origin.status = 204
    time.sleep(2)
    assert event not in origin.delivered_ids()
