"""The drop-in format (`"format": "didit"`), through the real worker under `wrangler dev`, to an
app that verifies with Didit's official Python SDK (`didit_sdk_origin.py`, its own process):
the first attempt and a retry verify and the app sees Didit's body; an event ten minutes old
when delivered verifies; a reconciled result arrives Didit-shaped and verifies; forged and
replayed requests are refused by the SDK. The core's vectors for attempts ten minutes and three
days after the event are checked against the SDK with its clock frozen at each attempt."""

import base64
import json
import subprocess
import sys
import time
import urllib.request
import uuid

import pytest

import didit
from harness import DIDIT_SECRET, ROOT, base_config, free_port, wait_until
from test_reconcile import API_KEY, reconciling, sweep
from fake_didit_api import FakeDiditApi

APP_SECRET = "app-didit-style-secret-0123"


class SdkOrigin:
    def __init__(self, secret=APP_SECRET):
        self.port = free_port()
        self.process = subprocess.Popen(
            [sys.executable, "-I", str(ROOT / "tests" / "didit_sdk_origin.py"), str(self.port), secret],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)
        line = self.process.stdout.readline().decode()
        assert line.strip() == "ready", line + self.process.stdout.read().decode()

    @property
    def url(self):
        return f"http://127.0.0.1:{self.port}/didit/webhook"

    def call(self, method, path, payload=None, headers=None, raw=None):
        data = raw if raw is not None else (json.dumps(payload).encode() if payload is not None else None)
        request = urllib.request.Request(f"http://127.0.0.1:{self.port}{path}", data=data,
                                         headers=headers or {}, method=method)
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                return response.status, response.read()
        except urllib.error.HTTPError as error:
            return error.code, error.read()

    def log(self):
        return json.loads(self.call("GET", "/log")[1])

    def fail_next(self, count):
        self.call("POST", "/fail", {"count": count})

    def check(self, body: bytes, headers, now, secret=APP_SECRET):
        """The SDK's `verify_webhook_signature`, its clock frozen at `now`."""
        _, raw = self.call("POST", "/check", {"body": base64.b64encode(body).decode(), "headers": headers,
                                              "now": now, "secret": secret})
        return json.loads(raw)["verified"]

    def stop(self):
        self.process.kill()
        self.process.wait(timeout=10)


@pytest.fixture
def sdk_origin():
    origin = SdkOrigin()
    yield origin
    origin.stop()


def dropin_origins(url):
    return json.dumps([{"name": "didit-app", "url": url, "timeout_ms": 3000, "format": "didit",
                        "signing_secret": "APP_DIDIT_SECRET"}])


def sdk_payload(status, **extra):
    """A v3 `status.updated` body as Didit sends it, whose `decision` (the session's decision
    object) carries its own `session_id` and `status`, which the SDK's model requires."""
    payload = didit.session_payload(status=status, **extra)
    payload["decision"] = dict(payload["decision"], session_id=payload["session_id"], status=status)
    return payload


def replayable(headers):
    """A recorded request's headers without those of its own connection."""
    return {k: v for k, v in headers.items() if k not in ("host", "content-length", "connection",
                                                          "transfer-encoding", "accept-encoding")}


def body_of(entry):
    return base64.b64decode(entry["body"])


def without_attempt_fields(payload):
    return {k: v for k, v in payload.items() if k not in ("timestamp", "event_id")}


def test_first_attempt_and_retries_verify_with_the_official_sdk(make_edge, sdk_origin):
    edge = make_edge("dropin", base_config(
        sdk_origin.url, ORIGINS=dropin_origins(sdk_origin.url), APP_DIDIT_SECRET=APP_SECRET,
        TIMESTAMP_TOLERANCE_SECS="900"))
    # The app fails its first try: the edge retries (RETRY_SCHEDULE 1 s in the tests).
    sdk_origin.fail_next(1)
    payload = sdk_payload("Declined")
    body = didit.encode(payload)
    status, reply = edge.post_webhook(body, didit.signed_headers(body, payload, DIDIT_SECRET))
    assert (status, reply["status"]) == (200, "accepted"), reply
    assert wait_until(lambda: any(e["answered"] == 200 for e in sdk_origin.log()), timeout=30)
    first, retry = sdk_origin.log()[:2]
    assert [first["verified"], first["answered"], retry["verified"], retry["answered"]] == [True, 503, True, 200]
    for entry in (first, retry):
        headers = entry["headers"]
        sent = json.loads(body_of(entry))
        # Didit's body, with the attempt's time and the edge's stable id.
        assert without_attempt_fields(sent) == without_attempt_fields(payload)
        assert sent["event_id"] == reply["id"] == headers["webhook-id"] == entry["dedup_key"]
        assert headers["x-timestamp"] == str(sent["timestamp"])
        assert abs(sent["timestamp"] - entry["at"]) <= 2, "dated at the attempt"
        assert headers["content-type"] == "application/json"
        assert headers["x-signature"] == headers["x-signature-v2"] == didit.hmac_hex(APP_SECRET, body_of(entry))
        simple = f"{sent['timestamp']}:{sent['session_id']}:Declined:status.updated"
        assert headers["x-signature-simple"] == didit.hmac_hex(APP_SECRET, simple.encode())
    # The SDK's dedup store saw one event: the failed try released its claim.
    assert [first["duplicate"], retry["duplicate"]] == [False, False]

    # An event ten minutes old when it reaches the app (Didit's own timestamp, which the SDK's
    # 300 s window alone would refuse) verifies: the attempt is dated when it is sent.
    late = sdk_payload("Approved", timestamp=int(time.time()) - 600)
    late_body = didit.encode(late)
    assert not sdk_origin.check(late_body, didit.signed_headers(late_body, late, APP_SECRET), time.time()), \
        "Didit's own ten-minute-old request would be refused"
    status, reply = edge.post_webhook(late_body, didit.signed_headers(late_body, late, DIDIT_SECRET))
    assert (status, reply["status"]) == (200, "accepted"), reply
    assert wait_until(lambda: any(e.get("dedup_key") == reply["id"] for e in sdk_origin.log()), timeout=30)
    [entry] = [e for e in sdk_origin.log() if e.get("dedup_key") == reply["id"]]
    assert (entry["verified"], entry["answered"], entry["status"]) == (True, 200, "Approved")
    assert json.loads(body_of(entry))["timestamp"] >= late["timestamp"] + 600

    # Replayed as it was captured: while its signed timestamp is fresh the SDK's dedup store
    # knows the event_id; once 300 s have passed the SDK refuses it outright.
    status, _ = sdk_origin.call("POST", "/didit/webhook", raw=body_of(retry), headers=replayable(retry["headers"]))
    assert status == 200 and sdk_origin.log()[-1]["duplicate"] is True
    sent_at = json.loads(body_of(retry))["timestamp"]
    assert sdk_origin.check(body_of(retry), retry["headers"], sent_at + 300)
    assert not sdk_origin.check(body_of(retry), retry["headers"], sent_at + 301)
    # Re-dated by the replayer: the signatures no longer match.
    forged = json.loads(body_of(retry))
    forged["timestamp"] = sent_at + 60  # still fresh for the SDK, not what was signed
    forged_body = didit.canonical(forged, ensure_ascii=False).encode()
    forged_headers = dict(replayable(retry["headers"]), **{"x-timestamp": str(forged["timestamp"])})
    status, _ = sdk_origin.call("POST", "/didit/webhook", raw=forged_body, headers=forged_headers)
    assert status == 401
    # Signed with another secret (Didit's own, another origin's): refused.
    for secret in (DIDIT_SECRET, "another-origins-secret"):
        wrong = didit.signed_headers(forged_body, forged, secret, kinds=("raw", "v2"), v2_ascii=False)
        status, _ = sdk_origin.call("POST", "/didit/webhook", raw=forged_body, headers=wrong)
        assert status == 401, secret
    assert not sdk_origin.log()[-1]["verified"]


def test_a_reconciled_result_arrives_didit_shaped_and_verifies(make_edge, sdk_origin):
    api = FakeDiditApi(free_port(), API_KEY).start()
    try:
        edge = make_edge("dropin-reconcile", reconciling(
            sdk_origin, api, ORIGINS=dropin_origins(sdk_origin.url), APP_DIDIT_SECRET=APP_SECRET))
        first = sweep(edge)
        time.sleep(1.1)
        session = str(uuid.uuid4())
        api.add_session(session, "Declined", vendor_data="user-77")
        sweep(edge, after_checkpoint=first["checkpoint"])
        assert wait_until(lambda: any(e.get("verified") and e["payload"].get("session_id") == session
                                      for e in sdk_origin.log()), timeout=30)
    finally:
        api.stop()
    [entry] = [e for e in sdk_origin.log() if e.get("payload", {}).get("session_id") == session]
    assert (entry["verified"], entry["answered"], entry["status"]) == (True, 200, "Declined")
    sent = json.loads(body_of(entry))
    assert sent["webhook_type"] == "status.updated"
    assert sent["vendor_data"] == "user-77"
    assert sent["event_id"] == entry["headers"]["webhook-id"] == entry["dedup_key"]
    assert sent["timestamp"] == int(entry["headers"]["x-timestamp"])
    assert sent["decision"]["session_id"] == session
    assert sent["decision"]["id_verifications"][0]["first_name"] == "Zoë"
    assert {"created_at", "workflow_id", "metadata"} <= set(sent)


def test_the_cores_late_attempts_verify_with_the_sdk_at_their_own_time(sdk_origin):
    """core/tests/dropin_vectors.json (what the core must send, from Python's json and hmac),
    fed to the SDK with its clock frozen at each attempt: ten minutes and three days after the
    event verify; the same request 301 s later, or checked with another secret, does not."""
    vectors = json.loads((ROOT / "core" / "tests" / "dropin_vectors.json").read_text())
    cases = {case["name"]: case for case in vectors["cases"]}
    for name in ("first attempt", "ten minutes after the event", "three days after the event"):
        case = cases[name]
        body, headers, now = case["body"].encode(), dict(case["headers"]), case["now"]
        assert sdk_origin.check(body, headers, now, secret=vectors["secret"]), name
        assert sdk_origin.check(body, headers, now + 300, secret=vectors["secret"]), name
        assert not sdk_origin.check(body, headers, now + 301, secret=vectors["secret"]), name
        assert not sdk_origin.check(body, headers, now, secret=APP_SECRET), name
    # An event accepted on X-Signature-Simple alone is not vouched for by the edge: the SDK,
    # which ignores that header, refuses it.
    simple_only = cases["accepted on X-Signature-Simple alone: only that is re-signed"]
    assert not sdk_origin.check(simple_only["body"].encode(), dict(simple_only["headers"]), simple_only["now"],
                                secret=vectors["secret"])


def test_the_sdks_fastapi_guard_takes_each_attempt_once(sdk_origin):
    """The same vectors through FastAPI and the SDK's `DiditWebhookGuard` (dedup store on), in
    the order they would arrive: the first attempt is taken, the attempts ten minutes and three
    days later verify and are duplicates of it, none verifies 301 s after it was sent; a
    `user.*` event verifies but the SDK's model refuses it (a 500: route those elsewhere), and
    an event the edge only had X-Signature-Simple for is refused."""
    vectors = json.loads((ROOT / "core" / "tests" / "dropin_vectors.json").read_text())
    cases = vectors["cases"]

    def request(case, delay=0):
        return {"body": base64.b64encode(case["body"].encode()).decode(), "headers": dict(case["headers"]),
                "now": case["now"] + delay}

    requests = [request(case) for case in cases[:3]] + [request(case, 301) for case in cases[:3]]
    requests += [request(cases[3]), request(cases[4])]
    _, raw = sdk_origin.call("POST", "/fastapi", {"secret": vectors["secret"], "requests": requests})
    answers = [(a["status"], a["duplicate"]) for a in json.loads(raw)]
    assert answers == [(200, False), (200, True), (200, True),
                       (401, None), (401, None), (401, None),
                       (500, None), (401, None)]
