"""The real-time status stream: a real WebSocket client (`websockets`) against the worker under
`wrangler dev`, with tokens issued by Python's own hmac (tests/stream_tokens.py)."""

import json
import shutil
import time
import urllib.request
import uuid
from concurrent.futures import ThreadPoolExecutor

import pytest
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import connect

import didit
import stream_tokens
from harness import DIDIT_SECRET, SIGNING_SECRET, WranglerDev, base_config, free_port
from origin_server import Origin
from stream_tokens import token


@pytest.fixture(scope="module")
def stream_edge():
    origin = Origin(free_port(), SIGNING_SECRET).start()
    edge = WranglerDev("stream", base_config(origin.url, STREAM_TOKEN_SECRET=stream_tokens.STREAM_SECRET))
    try:
        edge.start()
        yield edge
    finally:
        edge.stop()
        origin.stop()
        shutil.rmtree(edge.persist_dir, ignore_errors=True)


def stream_url(edge, query=""):
    return f"{edge.url.replace('http://', 'ws://')}/v1/stream{query}"


def open_stream(edge, stream_token, query=""):
    return connect(stream_url(edge, query), subprotocols=["didit-edge.v1", stream_token], open_timeout=30)


def send(edge, user, session_id=None, status="Approved", timestamp=None, **extra):
    payload = didit.session_payload(session_id=session_id, status=status, timestamp=timestamp,
                                    vendor_data=user, **extra)
    body = didit.encode(payload)
    code, reply = edge.post_webhook(body, didit.signed_headers(body, payload, DIDIT_SECRET))
    assert (code, reply["status"]) == (200, "accepted"), reply
    return reply["id"], payload["session_id"]


def messages(socket, wait=2.0):
    """Every message that arrives within `wait` seconds of the last one."""
    received = []
    while True:
        try:
            received.append(json.loads(socket.recv(timeout=wait)))
        except TimeoutError:
            return received


def refused(edge, url=None, subprotocols=None, query=""):
    with pytest.raises(InvalidStatus) as caught:
        connect(url or stream_url(edge, query), subprotocols=subprotocols, open_timeout=30)
    response = caught.value.response
    return response.status_code, json.loads(bytes(response.body))["error"]["code"]


def test_every_bad_token_is_refused_before_the_upgrade(stream_edge):
    now = int(time.time())
    bad_signature = token("alice", secret="another-secret-0123456789abcdef-0123456789")
    header, claims, _ = token("alice").split(".")
    unsigned = f"{stream_tokens.b64url(json.dumps({'alg': 'none'}).encode())}.{claims}."
    cases = [
        (None, 401, "missing_token"),
        ("not-a-jwt", 401, "invalid_token"),
        (bad_signature, 401, "invalid_token"),
        (unsigned, 401, "invalid_token"),
        (token("alice", iat=now - 700, lifetime=600), 401, "token_expired"),
        (token("alice", lifetime=3600), 401, "invalid_token"),
        (token("alice", iat=now + 300), 401, "invalid_token"),
        (token("alice", scope="root"), 403, "insufficient_scope"),
    ]
    for stream_token, status, code in cases:
        protocols = ["didit-edge.v1", stream_token] if stream_token else ["didit-edge.v1"]
        assert refused(stream_edge, subprotocols=protocols) == (status, code), stream_token
    # Filters are an admin's: a self token asking for them is refused, not widened.
    assert refused(stream_edge, subprotocols=["didit-edge.v1", token("alice")], query="?risk=high") == \
        (403, "insufficient_scope")
    assert refused(stream_edge, subprotocols=["didit-edge.v1", token("ops", scope="admin")],
                   query="?colour=red") == (400, "invalid_query")
    # A token opens one connection.
    once = token("alice")
    with open_stream(stream_edge, once) as socket:
        assert socket.subprotocol == "didit-edge.v1"
        assert refused(stream_edge, subprotocols=["didit-edge.v1", once]) == (401, "token_reused")
    # A plain GET is not an upgrade.
    request = urllib.request.Request(f"{stream_edge.url}/v1/stream", method="GET")
    try:
        urllib.request.urlopen(request, timeout=10)
        raise AssertionError("a plain GET was answered 2xx")
    except urllib.error.HTTPError as error:
        assert (error.code, json.loads(error.read())["error"]["code"]) == (426, "upgrade_required")


def test_without_its_secret_the_stream_is_off(edge):
    # The receiver's main configuration sets no STREAM_TOKEN_SECRET: no token can be checked,
    # so nothing upgrades, whatever is presented.
    for protocols in (["didit-edge.v1"], ["didit-edge.v1", token("alice")],
                      ["didit-edge.v1", token("ops", scope="admin")]):
        assert refused(edge, subprotocols=protocols) == (404, "stream_off")


def test_each_user_sees_only_their_own_and_the_admin_sees_all(stream_edge):
    alice, bob = f"alice-{uuid.uuid4()}", f"bob-{uuid.uuid4()}"
    with open_stream(stream_edge, token(alice)) as a, open_stream(stream_edge, token(bob)) as b, \
            open_stream(stream_edge, token("ops", scope="admin")) as admin, \
            open_stream(stream_edge, token("ops", scope="admin"), "?risk=high") as high:
        sent = {}
        for user in (alice, bob, alice, bob):
            event, session = send(stream_edge, user)
            sent[event] = (user, session)
        declined, _ = send(stream_edge, bob, status="Declined")
        sent[declined] = (bob, None)
        got_a, got_b = messages(a), messages(b)
        assert {m["event_id"] for m in got_a} == {e for e, (u, _) in sent.items() if u == alice}
        assert {m["event_id"] for m in got_b} == {e for e, (u, _) in sent.items() if u == bob}
        everything = {m["event_id"] for m in messages(admin)}
        assert set(sent) <= everything
        high_risk = {m["event_id"] for m in messages(high)}
        assert declined in high_risk
        assert not high_risk & (set(sent) - {declined}), "the risk filter let low-risk events through"
        # Small status updates, nothing identifying beyond the ids.
        message = got_a[0]
        assert set(message) == {"type", "event_id", "subject_kind", "subject_id", "status_code",
                                "risk_level", "time", "test"}
        assert message["type"] == "status" and message["status_code"] == "approved"
        assert alice not in json.dumps(message), "vendor_data is never sent"


def test_a_users_own_events_name_them_by_vendor_data_and_carry_nothing_else(stream_edge):
    # What docs/stream.md says the stream sends: for `user.*` events the subject id is `vendor_data`
    # (the user watching, and admins, see it); names, documents and decisions never.
    dave = f"dave-{uuid.uuid4()}"
    with open_stream(stream_edge, token(dave)) as own, \
            open_stream(stream_edge, token("ops", scope="admin")) as admin:
        payload = {"webhook_type": "user.status.updated", "timestamp": int(time.time()), "vendor_data": dave,
                   "status": "FLAGGED", "event_id": str(uuid.uuid4()), "full_name": "Dave Ångström",
                   "document_number": "X1234567"}
        body = didit.encode(payload)
        code, reply = stream_edge.post_webhook(body, didit.signed_headers(body, payload, DIDIT_SECRET))
        assert (code, reply["status"]) == (200, "accepted"), reply
        for socket in (own, admin):
            [message] = [m for m in messages(socket) if m["event_id"] == reply["id"]]
            assert (message["subject_kind"], message["subject_id"]) == ("user", dave)
            text = json.dumps(message, ensure_ascii=False)
            assert "Ångström" not in text and "X1234567" not in text


def test_a_late_connection_gets_the_current_status_then_live_updates_in_order(stream_edge):
    carol, session, other = f"carol-{uuid.uuid4()}", str(uuid.uuid4()), str(uuid.uuid4())
    now = int(time.time())
    send(stream_edge, carol, session, status="In Review", timestamp=now - 60)
    approved, _ = send(stream_edge, carol, session, status="Approved", timestamp=now - 30)
    # An older event arriving late does not move the session back in time.
    send(stream_edge, carol, session, status="In Progress", timestamp=now - 120)
    with open_stream(stream_edge, token(carol)) as late, \
            open_stream(stream_edge, token(carol, sessions=[other])) as narrowed:
        first = messages(late, wait=1)
        assert [(m["event_id"], m["status_code"]) for m in first] == [(approved, "approved")]
        assert messages(narrowed, wait=0.5) == [], "sessions narrows the snapshot too"
        declined, _ = send(stream_edge, carol, session, status="Declined", timestamp=now - 10)
        theirs, _ = send(stream_edge, carol, other, timestamp=now - 5)
        assert [m["event_id"] for m in messages(late)] == [declined, theirs]
        assert [m["event_id"] for m in messages(narrowed)] == [theirs]


def test_a_late_filtered_connection_finds_its_status_behind_many_newer_ones(stream_edge):
    # More newer statuses than one snapshot holds, none of which the filter admits: the filter
    # must apply while choosing the snapshot, not after taking the most recent ones.
    now = int(time.time())
    declined, _ = send(stream_edge, f"heidi-{uuid.uuid4()}", status="Declined", timestamp=now - 60)
    crowd = f"ivan-{uuid.uuid4()}"
    with ThreadPoolExecutor(max_workers=4) as pool:
        list(pool.map(lambda _: send(stream_edge, crowd, timestamp=now), range(520)))
    with open_stream(stream_edge, token("ops", scope="admin"), "?risk=high") as high:
        snapshot = {m["event_id"]: m["risk_level"] for m in messages(high, wait=1)}
    assert snapshot.get(declined) == "high"
    assert set(snapshot.values()) == {"high"}


def test_the_access_token_query_is_the_fallback(stream_edge):
    dave = f"dave-{uuid.uuid4()}"
    with connect(stream_url(stream_edge, f"?access_token={token(dave)}"), open_timeout=30) as socket:
        event, _ = send(stream_edge, dave)
        assert [m["event_id"] for m in messages(socket)] == [event]


def test_sockets_close_when_their_token_expires_and_answer_pings_meanwhile(stream_edge):
    with open_stream(stream_edge, token(f"erin-{uuid.uuid4()}", lifetime=4)) as socket:
        socket.send("ping")
        assert socket.recv(timeout=5) == "pong", "the runtime's auto-response"
        with pytest.raises(ConnectionClosed) as closed:
            socket.recv(timeout=15)
        assert closed.value.rcvd.code == 4001
        assert closed.value.rcvd.reason == "token expired"


def test_a_socket_still_receives_after_its_object_has_been_idle(stream_edge):
    # workerd hibernates an idle object's sockets after about 10 s; nothing about the socket is
    # kept in the object's memory (its watch is the socket's attachment), so the update that
    # wakes it must still find and authorize the socket.
    frank = f"frank-{uuid.uuid4()}"
    with open_stream(stream_edge, token(frank)) as socket:
        time.sleep(15)
        event, _ = send(stream_edge, frank)
        assert [m["event_id"] for m in messages(socket)] == [event]


def test_two_hundred_sockets_all_receive_one_broadcast(stream_edge):
    sockets = [open_stream(stream_edge, token("ops", scope="admin")) for _ in range(200)]
    try:
        event, _ = send(stream_edge, f"grace-{uuid.uuid4()}")
        deadline = time.time() + 30
        for socket in sockets:
            while True:
                message = json.loads(socket.recv(timeout=max(0.1, deadline - time.time())))
                if message["event_id"] == event:
                    break
    finally:
        for socket in sockets:
            socket.close()


def test_a_token_too_big_for_a_connection_is_refused_without_being_spent(stream_edge):
    sessions = [str(uuid.uuid4()) for _ in range(60)]
    big = token(f"user-{uuid.uuid4()}", sessions=sessions)
    for _ in range(2):
        assert refused(stream_edge, subprotocols=["didit-edge.v1", big]) == (400, "token_too_large")
    with open_stream(stream_edge, token("user-small", sessions=sessions[:20])) as socket:
        assert socket.subprotocol == "didit-edge.v1"


def test_a_token_must_name_this_receiver_and_its_nbf_must_have_passed(stream_edge):
    now = int(time.time())
    for stream_token in (token("alice", aud=None), token("alice", aud="billing-service"),
                         token("alice", nbf=now + 300)):
        assert refused(stream_edge, subprotocols=["didit-edge.v1", stream_token]) == (401, "invalid_token")
    with open_stream(stream_edge, token("alice", aud=["billing-service", "didit-edge"], nbf=now - 5)) as socket:
        assert socket.subprotocol == "didit-edge.v1"


def test_a_peer_that_never_answers_the_close_does_not_make_the_alarm_spin(stream_edge):
    import socket as sockets

    user = f"silent-{uuid.uuid4()}"
    stream_token = token(user, lifetime=2)
    raw = sockets.create_connection(("127.0.0.1", stream_edge.port), timeout=30)
    raw.sendall((f"GET /v1/stream HTTP/1.1\r\nHost: 127.0.0.1:{stream_edge.port}\r\nUpgrade: websocket\r\n"
                 "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                 f"Sec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: didit-edge.v1, {stream_token}\r\n\r\n").encode())
    try:
        assert raw.recv(4096).startswith(b"HTTP/1.1 101"), "upgraded"
        before = len(stream_edge.log_events("stream_alarm"))
        # The token expires after 2 s; the socket is closed but never acknowledges the close.
        time.sleep(9)
        runs = len(stream_edge.log_events("stream_alarm")) - before
        assert 1 <= runs <= 10, f"{runs} alarm runs in 9 s"
    finally:
        raw.close()
