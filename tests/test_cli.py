"""The `didit-edge` CLI (cli/) end to end against the real worker under `wrangler dev`: what
`sign` prints is what tests/didit.py signs and what the worker accepts; `send` delivers, resends
as Didit's retry (a duplicate) and counts a quick load; `listen` is a real origin the worker
delivers to, fails over from, retries and dead-letters; `admin` lists and replays; `token` and
`watch` open the status stream. Exit codes and error lines are part of the interface.

Needs `cargo build -p didit-edge-cli` (scripts/test.sh does it before the integration tests).
Every process started here listens on 127.0.0.1 only and is stopped by its process id."""

import base64
import hashlib
import hmac
import json
import os
import shutil
import signal
import subprocess
import threading
import time
import urllib.error
import urllib.request
import uuid

import pytest
from standardwebhooks.webhooks import Webhook

import didit
import stream_tokens
from harness import (ADMIN_TOKEN, DIDIT_SECRET, OLD_DIDIT_SECRET, ROOT, SIGNING_SECRET, WranglerDev,
                     base_config, free_port)
from origin_server import Origin

BINARY = ROOT / "target" / "debug" / "didit-edge"
# Settings the CLI would read from the environment; each test passes what it means to.
CLI_SETTINGS = ("DIDIT_WEBHOOK_SECRET", "DIDIT_WEBHOOK_SECRETS", "ORIGIN_SIGNING_SECRET", "ADMIN_TOKEN",
                "STREAM_TOKEN_SECRET", "DIDIT_EDGE_URL", "DIDIT_EDGE_STREAM_TOKEN", "XDG_STATE_HOME")


@pytest.fixture(scope="module")
def cli_binary():
    if not BINARY.is_file() or not os.access(BINARY, os.X_OK):
        pytest.fail(f"{BINARY} is missing: build it with `cargo build -p didit-edge-cli`")
    return str(BINARY)


@pytest.fixture
def workdir(tmp_path):
    """The CLI's working directory (no .dev.vars unless a test writes one) and state home."""
    (tmp_path / "state").mkdir()
    return tmp_path


def cli_env(workdir, **settings):
    env = {k: v for k, v in os.environ.items() if k not in CLI_SETTINGS}
    env["XDG_STATE_HOME"] = str(workdir / "state")
    env["NO_PROXY"] = "127.0.0.1,localhost"
    env.update(settings)
    return env


def run(cli_binary, workdir, *args, timeout=120, **settings):
    return subprocess.run([cli_binary, *args], cwd=workdir, env=cli_env(workdir, **settings),
                          capture_output=True, text=True, timeout=timeout)


def assert_error_line(result, code, *fragments, secrets=()):
    """The exit code, and one line on stderr that says what happened and echoes no secret."""
    assert result.returncode == code, (result.returncode, result.stdout, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("didit-edge: "), result.stderr
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])
    for secret in secrets:
        assert secret not in result.stderr + result.stdout, "a secret was echoed"


class Process:
    """A long-running CLI command (listen, watch) in its own process group; its output lines
    are collected as they come, and it is stopped by its process id."""

    def __init__(self, cli_binary, workdir, *args, **settings):
        self.args = args
        self.process = subprocess.Popen([cli_binary, *args], cwd=workdir, env=cli_env(workdir, **settings),
                                        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                        start_new_session=True)
        self.lock = threading.Lock()
        self.out, self.err = [], []
        for stream, lines in ((self.process.stdout, self.out), (self.process.stderr, self.err)):
            threading.Thread(target=self._collect, args=(stream, lines), daemon=True).start()

    def _collect(self, stream, lines):
        for line in stream:
            with self.lock:
                lines.append(line.rstrip("\n"))

    def lines(self, stderr=False):
        with self.lock:
            return list(self.err if stderr else self.out)

    def wait_for(self, predicate, timeout=30, stderr=False):
        """The first line that satisfies `predicate`."""
        deadline = time.time() + timeout
        while time.time() < deadline:
            found = [line for line in self.lines(stderr) if predicate(line)]
            if found:
                return found[0]
            if self.process.poll() is not None:
                time.sleep(0.2)  # let the readers drain
                found = [line for line in self.lines(stderr) if predicate(line)]
                if found:
                    return found[0]
                raise AssertionError(f"{self.args} exited {self.process.returncode}: "
                                     f"{self.lines()} {self.lines(True)}")
            time.sleep(0.1)
        raise AssertionError(f"no matching line from {self.args} in {timeout}s: {self.lines()} {self.lines(True)}")

    def lines_with(self, fragment):
        return [line for line in self.lines() if fragment in line]

    def stop(self):
        if self.process.poll() is None:
            for sig in (signal.SIGTERM, signal.SIGKILL):
                try:
                    os.killpg(self.process.pid, sig)
                except ProcessLookupError:
                    break
                try:
                    self.process.wait(timeout=10)
                    break
                except subprocess.TimeoutExpired:
                    continue
        return self.process.returncode


@pytest.fixture
def processes():
    started = []
    yield started
    for process in started:
        process.stop()


def start_listen(cli_binary, workdir, processes, *flags, port=None, secret=SIGNING_SECRET):
    port = port or free_port()
    listener = Process(cli_binary, workdir, "listen", "--port", str(port), "--secret", secret, *flags)
    processes.append(listener)
    listener.wait_for(lambda line: line.startswith(f"listening on http://127.0.0.1:{port}"))
    listener.port = port
    listener.url = f"http://127.0.0.1:{port}/didit-events"
    return listener


def post(url, body, headers):
    request = urllib.request.Request(url, data=body, headers=headers, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


def sign(cli_binary, workdir, *flags, secret=DIDIT_SECRET):
    result = run(cli_binary, workdir, "sign", "--secret", secret, *flags)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def deliver_signed(edge, signed):
    status, raw = post(f"{edge.url}/webhooks/didit", signed["body"].encode(), signed["headers"])
    return status, json.loads(raw)


# --- sign ---------------------------------------------------------------------------------------

def test_sign_prints_what_tests_didit_signs_and_the_worker_accepts_it(cli_binary, workdir, edge):
    signed = sign(cli_binary, workdir)
    body = signed["body"].encode()
    payload = json.loads(body)
    assert set(payload) >= {"event_id", "webhook_type", "timestamp", "session_id", "status", "decision",
                            "vendor_data", "metadata"}
    # The same bytes and headers as Didit's (Python) signer for the same payload.
    assert didit.encode(payload) == body
    assert signed["headers"] == didit.signed_headers(body, payload, DIDIT_SECRET, kinds=("raw", "v2", "simple"))
    assert (signed["method"], signed["url"]) == ("POST", "http://127.0.0.1:8787/webhooks/didit")
    status, reply = deliver_signed(edge, signed)
    assert (status, reply["status"]) == (200, "accepted"), reply

    # Each of Didit's V2 variants alone, with a chosen X-Timestamp, as tests/didit.py signs it.
    x_ts = int(time.time()) - 5
    for form, prefix in (("escaped", False), ("utf8", False), ("escaped", True), ("utf8", True)):
        flags = ["--signatures", "v2", "--v2-form", form, "--x-timestamp", str(x_ts)]
        signed = sign(cli_binary, workdir, *flags, *(["--v2-timestamp-prefix"] if prefix else []))
        body = signed["body"].encode()
        payload = json.loads(body)
        assert signed["headers"] == didit.signed_headers(body, payload, DIDIT_SECRET, kinds=("v2",), x_timestamp=x_ts,
                                                         v2_ascii=form == "escaped", v2_prefix=prefix)
        status, reply = deliver_signed(edge, signed)
        assert (status, reply["status"]) == (200, "accepted"), (form, prefix, reply)

    # What the worker must refuse, it refuses.
    simple = sign(cli_binary, workdir, "--signatures", "simple")
    assert set(simple["headers"]) == {"Content-Type", "User-Agent", "X-Timestamp", "X-Signature-Simple"}
    assert deliver_signed(edge, simple)[1]["error"]["code"] == "simple_signature_not_allowed"
    assert deliver_signed(edge, sign(cli_binary, workdir, secret="not-the-secret"))[1]["error"]["code"] == \
        "invalid_signature"
    for flags, code in ((["--signatures", "none"], "missing_signature"),
                        (["--timestamp", str(int(time.time()) - 3600)], "stale_timestamp")):
        status, reply = deliver_signed(edge, sign(cli_binary, workdir, *flags))
        assert (status, reply["error"]["code"]) == (401, code), flags


def test_every_event_type_version_and_outcome_is_accepted_as_meant(cli_binary, workdir, edge, shared_origin):
    cases = [
        (["--status", "declined", "--fail", "liveness,aml"], "status.updated", "declined", "high"),
        (["--status", "in-review"], "status.updated", "in_review", "high"),
        (["--payload-version", "v2", "--fail", "document"], "status.updated", "declined", "high"),
        (["--payload-version", "v1"], "status.updated", "approved", "low"),
        (["--kyb"], "status.updated", "approved", "low"),
        (["--status", "resubmitted"], "status.updated", "resubmitted", "medium"),
        (["--type", "data.updated", "--test"], "data.updated", "approved", "low"),
        (["--type", "user.status.updated", "--status", "blocked"], "user.status.updated", "blocked", "high"),
        (["--type", "user.data.updated"], "user.data.updated", "active", "low"),
        (["--type", "business.status.updated", "--business-id", f"biz-{uuid.uuid4()}"], "business.status.updated",
         "flagged", "medium"),
        (["--type", "business.data.updated", "--business-id", f"biz-{uuid.uuid4()}"], "business.data.updated",
         None, "unknown"),
        (["--type", "activity.created"], "activity.created", None, "unknown"),
        (["--type", "transaction.created"], "transaction.created", "pending", "unknown"),
        (["--type", "transaction.status.updated", "--status", "declined"], "transaction.status.updated",
         "declined", "high"),
    ]
    sent = {}
    for flags, webhook_type, status_code, risk in cases:
        # Entity events are keyed by their subject: a fresh user each, so none is a duplicate.
        signed = sign(cli_binary, workdir, *flags, "--vendor-data", f"user-{uuid.uuid4()}")
        assert json.loads(signed["body"])["webhook_type"] == webhook_type
        status, reply = deliver_signed(edge, signed)
        assert (status, reply["status"]) == (200, "accepted"), (flags, reply)
        sent[reply["id"]] = (flags, webhook_type, status_code, risk)
    assert shared_origin.wait_for(lambda o: set(sent) <= set(o.delivered_ids()), timeout=60)
    for delivery in shared_origin.deliveries():
        event = delivery["event"]
        if event["id"] not in sent:
            continue
        flags, webhook_type, status_code, risk = sent[event["id"]]
        data = event["data"]
        assert (data["webhook_type"], data["status_code"], data["risk"]["level"]) == \
            (webhook_type, status_code, risk), flags
        assert data["test"] is ("--test" in flags), flags
        if "--kyb" in flags:
            assert data["subject"]["kind"] == "business_session"
        if "--payload-version" in flags:
            assert data["payload_version"] == flags[flags.index("--payload-version") + 1]


def test_sign_from_a_file_keeps_its_bytes_and_prints_a_working_curl(cli_binary, workdir, edge):
    payload = didit.session_payload(vendor_data="O'Brien")
    # Not Didit's serialization on purpose: indented, raw UTF-8. X-Signature covers these bytes.
    raw = json.dumps(payload, ensure_ascii=False, indent=2).encode()
    path = workdir / "body.json"
    path.write_bytes(raw)
    signed = sign(cli_binary, workdir, "--body", str(path))
    assert signed["body"].encode() == raw
    assert signed["headers"]["X-Signature"] == didit.hmac_hex(DIDIT_SECRET, raw)
    assert signed["headers"]["X-Signature-V2"] == didit.hmac_hex(DIDIT_SECRET, didit.canonical(payload).encode())
    only_body = run(cli_binary, workdir, "sign", "--secret", DIDIT_SECRET, "--body", str(path), "--format", "body")
    assert only_body.stdout.encode() == raw
    if shutil.which("curl") is None:
        pytest.skip("curl is not installed")
    curl = run(cli_binary, workdir, "sign", "--secret", DIDIT_SECRET, "--body", str(path), "--format", "curl",
               "--url", f"{edge.url}/webhooks/didit")
    assert curl.returncode == 0, curl.stderr
    answer = subprocess.run(["bash", "-c", curl.stdout], capture_output=True, text=True, timeout=60)
    assert json.loads(answer.stdout)["status"] == "accepted", (answer.stdout, answer.stderr)


# --- send ---------------------------------------------------------------------------------------

def test_send_then_resend_as_didit_retries_is_a_duplicate(cli_binary, workdir, edge):
    url = f"{edge.url}/webhooks/didit"
    first = run(cli_binary, workdir, "send", url, "--secret", DIDIT_SECRET, "--json")
    assert first.returncode == 0, first.stderr
    first = json.loads(first.stdout)
    assert (first["status"], first["answer"]["status"]) == (200, "accepted")
    event = first["answer"]["id"]
    state = workdir / "state" / "didit-edge" / "last.json"
    assert state.is_file() and DIDIT_SECRET not in state.read_text(), "the body is kept, never the secret"
    # Didit's retry: the same body, signed again now; the URL comes from the state.
    retry = run(cli_binary, workdir, "send", "--resend", "--secret", DIDIT_SECRET, "--json")
    assert retry.returncode == 0, retry.stderr
    assert json.loads(retry.stdout)["answer"] == {"status": "duplicate", "id": event}
    # A resend from the console: same event_id, a fresh timestamp, still the same event.
    console = run(cli_binary, workdir, "send", "--resend", "--fresh-timestamp", "--secret", DIDIT_SECRET)
    assert console.returncode == 0, console.stderr
    status, answer = console.stdout.strip().split(" ", 1)
    assert (status, json.loads(answer)) == ("200", {"status": "duplicate", "id": event})
    # The secret may come from .dev.vars (the first of DIDIT_WEBHOOK_SECRETS), as wrangler reads it.
    (workdir / ".dev.vars").write_text(f'DIDIT_WEBHOOK_SECRETS="{DIDIT_SECRET},{OLD_DIDIT_SECRET}"\n')
    from_file = run(cli_binary, workdir, "send", url, "--json")
    assert json.loads(from_file.stdout)["answer"]["status"] == "accepted", from_file.stderr


def test_send_repeat_counts_answers_and_latencies(cli_binary, workdir, edge):
    url = f"{edge.url}/webhooks/didit"
    result = run(cli_binary, workdir, "send", url, "--secret", DIDIT_SECRET, "--repeat", "20",
                 "--concurrency", "4", "--json")
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    assert (summary["sent"], summary["concurrency"], summary["counts"]) == (20, 4, {"200 accepted": 20})
    latency = summary["latency_ms"]
    assert 0 < latency["p50"] <= latency["p95"] <= latency["max"] < 30_000
    # One event sent five times at once: the inbox takes it once, whatever the race.
    session, now = str(uuid.uuid4()), str(int(time.time()))
    same = run(cli_binary, workdir, "send", url, "--secret", DIDIT_SECRET, "--repeat", "5", "--concurrency", "5",
               "--session-id", session, "--event-id", "evt-same", "--timestamp", now)
    assert same.returncode == 0, same.stderr
    lines = same.stdout.splitlines()
    assert lines[0].startswith("5 deliveries to ") and "concurrency 5" in lines[0]
    counts = {" ".join(line.split()[:-1]): int(line.split()[-1]) for line in lines[1:-1]}
    assert counts == {"200 accepted": 1, "200 duplicate": 4}, same.stdout
    assert lines[-1].startswith("latency  p50 ")


def test_a_refused_delivery_exits_1_and_says_why(cli_binary, workdir, edge):
    url = f"{edge.url}/webhooks/didit"
    result = run(cli_binary, workdir, "send", url, "--secret", "wrong-secret-value-123")
    assert result.stdout.startswith("401 ")
    assert_error_line(result, 1, "refused", "401", "invalid_signature", secrets=("wrong-secret-value-123",))
    many = run(cli_binary, workdir, "send", url, "--secret", "wrong-secret-value-123", "--repeat", "3")
    assert_error_line(many, 1, "3 of 3 deliveries were refused")
    assert "401 invalid_signature  3" in many.stdout


# --- listen, as the worker's origins ------------------------------------------------------------

@pytest.fixture(scope="module")
def origin_edge(cli_binary, tmp_path_factory):
    """A worker whose origins are `didit-edge listen` processes, one consumer per behaviour, each
    taking its own event types so that tests do not see each other's events."""
    workdir = tmp_path_factory.mktemp("listen")
    app = Origin(free_port(), SIGNING_SECRET).start()
    started = []

    def listen(*flags):
        port = free_port()
        listener = Process(cli_binary, workdir, "listen", "--port", str(port), "--secret", SIGNING_SECRET, *flags)
        started.append(listener)
        listener.wait_for(lambda line: line.startswith(f"listening on http://127.0.0.1:{port}"))
        listener.port, listener.url = port, f"http://127.0.0.1:{port}/didit-events"
        return listener

    listeners = {
        "plain": listen(),
        "failing": listen("--fail", "500"),
        "backup": listen(),
        "flaky": listen("--fail-first", "2"),
        "forwarding": listen("--forward", app.url),
        "aborting": listen("--abort"),
        "slow": listen("--slow", "2s"),
        "spare": listen(),
    }
    origins = [
        {"name": "plain", "url": listeners["plain"].url, "event_types": ["status.updated"]},
        {"name": "failing", "url": listeners["failing"].url, "consumer": "failover", "priority": 0,
         "event_types": ["user.*"]},
        {"name": "backup", "url": listeners["backup"].url, "consumer": "failover", "priority": 1,
         "event_types": ["user.*"]},
        {"name": "flaky", "url": listeners["flaky"].url, "consumer": "retry", "event_types": ["transaction.*"]},
        {"name": "forwarding", "url": listeners["forwarding"].url, "consumer": "forward",
         "event_types": ["business.*"]},
        {"name": "aborting", "url": listeners["aborting"].url, "consumer": "dead", "event_types": ["activity.*"]},
        {"name": "slow", "url": listeners["slow"].url, "consumer": "timeout", "priority": 0, "timeout_ms": 500,
         "event_types": ["data.updated"]},
        {"name": "spare", "url": listeners["spare"].url, "consumer": "timeout", "priority": 1,
         "event_types": ["data.updated"]},
    ]
    edge = WranglerDev("cli-origins", base_config(
        listeners["plain"].url, ORIGINS=json.dumps(origins), ADMIN_TOKEN=ADMIN_TOKEN,
        STREAM_TOKEN_SECRET=stream_tokens.STREAM_SECRET))
    try:
        edge.start()
        edge.listeners, edge.app, edge.workdir = listeners, app, workdir
        yield edge
    finally:
        edge.stop()
        for listener in started:
            listener.stop()
        app.stop()
        shutil.rmtree(edge.persist_dir, ignore_errors=True)


def send_event(cli_binary, workdir, edge, *flags):
    result = run(cli_binary, workdir, "send", f"{edge.url}/webhooks/didit", "--secret", DIDIT_SECRET, "--json",
                 *flags)
    assert result.returncode == 0, result.stderr
    answer = json.loads(result.stdout)["answer"]
    assert answer["status"] == "accepted", answer
    return answer["id"]


def test_listen_verifies_and_prints_each_event_the_worker_delivers(cli_binary, workdir, origin_edge):
    plain = origin_edge.listeners["plain"]
    session = str(uuid.uuid4())
    event = send_event(cli_binary, workdir, origin_edge, "--session-id", session, "--status", "declined",
                       "--fail", "liveness")
    line = plain.wait_for(lambda l: event in l)
    fields = line.split("  ")
    assert fields[1:] == ["me.didit.status.updated", session, "Declined", "risk=high", event, "→ 204"], line
    assert fields[0].endswith("Z") and fields[0][:4].isdigit()
    # A request whose signature does not verify is refused with 401 and said so.
    body = b'{"specversion":"1.0"}'
    now = str(int(time.time()))
    status, raw = post(plain.url, body, {"content-type": "application/cloudevents+json", "webhook-id": "msg_forged",
                                         "webhook-timestamp": now, "webhook-signature": "v1,AAAA"})
    assert (status, json.loads(raw)["error"]) == (401, "invalid_signature")
    assert "refused" in plain.wait_for(lambda l: "msg_forged" in l)
    then = int(time.time()) - 3600
    stale = Webhook(SIGNING_SECRET).sign("msg_stale", _ts(then), body.decode())
    status, raw = post(plain.url, body, {"webhook-id": "msg_stale", "webhook-timestamp": str(then),
                                         "webhook-signature": stale})
    assert (status, json.loads(raw)["error"]) == (401, "stale_timestamp")
    # What the reference Standard Webhooks library signs, listen accepts, next to another
    # signature (a sender mid-rotation).
    signed = Webhook(SIGNING_SECRET).sign("msg_reference", _ts(int(now)), body.decode())
    status, _ = post(plain.url, body, {"webhook-id": "msg_reference", "webhook-timestamp": now,
                                       "webhook-signature": f"v1,bm90LXRoaXMtb25l {signed}"})
    assert status == 204
    assert plain.wait_for(lambda l: "msg_reference" in l).endswith("→ 204")


def _ts(seconds):
    import datetime
    return datetime.datetime.fromtimestamp(int(seconds), tz=datetime.timezone.utc)


def test_a_failing_listen_makes_the_worker_fail_over_and_retry(cli_binary, workdir, origin_edge):
    failing, backup, flaky = (origin_edge.listeners[n] for n in ("failing", "backup", "flaky"))
    user = f"user-{uuid.uuid4()}"
    event = send_event(cli_binary, workdir, origin_edge, "--type", "user.status.updated", "--vendor-data", user)
    # Within one attempt: the first origin answers 500, the next by priority takes it.
    assert failing.wait_for(lambda l: event in l).endswith("→ 500")
    assert backup.wait_for(lambda l: event in l).endswith("→ 204")
    # Retries on the schedule (a second apart here), the same webhook-id, until the origin takes it.
    event = send_event(cli_binary, workdir, origin_edge, "--type", "transaction.created")
    flaky.wait_for(lambda l: event in l and "→ 204" in l, timeout=30)
    lines = flaky.lines_with(event)
    assert [l.rsplit(" ", 1)[-1] for l in lines] == ["500", "500", "204"], lines
    assert "attempt 3" in lines[-1]
    # An origin slower than its timeout_ms is given up on: the next one takes the event at once.
    started = time.time()
    event = send_event(cli_binary, workdir, origin_edge, "--type", "data.updated")
    slow, spare = origin_edge.listeners["slow"], origin_edge.listeners["spare"]
    assert spare.wait_for(lambda l: event in l).endswith("→ 204")
    assert slow.wait_for(lambda l: event in l).endswith("→ 204"), "it answered, too late"
    assert time.time() - started >= 2, "--slow held the answer back"


def test_listen_forwards_verified_events_and_answers_with_the_apps_status(cli_binary, workdir, origin_edge):
    forwarding, app = origin_edge.listeners["forwarding"], origin_edge.app
    app.status = 202
    event = send_event(cli_binary, workdir, origin_edge, "--type", "business.status.updated",
                       "--business-id", f"biz-{uuid.uuid4()}")
    assert forwarding.wait_for(lambda l: event in l).endswith("→ 202")
    assert app.wait_for(lambda o: event in o.delivered_ids())
    forwarded = [d for d in app.deliveries() if d["headers"].get("webhook-id") == event]
    assert forwarded and forwarded[0]["verified"], "the app verifies the edge's own signature"
    assert forwarded[0]["headers"]["traceparent"].startswith("00-"), "the trace context goes along"


# --- admin --------------------------------------------------------------------------------------

def admin(cli_binary, workdir, edge, *args, token=ADMIN_TOKEN):
    settings = {"DIDIT_EDGE_URL": edge.url}
    if token is not None:
        settings["ADMIN_TOKEN"] = token
    return run(cli_binary, workdir, "admin", *args, **settings)


def test_admin_lists_origins_and_dead_letters_and_replays_them(cli_binary, workdir, origin_edge, processes):
    result = admin(cli_binary, workdir, origin_edge, "origins")
    assert result.returncode == 0, result.stderr
    header, *rows = result.stdout.splitlines()
    assert header.split() == ["NAME", "CONSUMER", "PRIORITY", "WEIGHT", "REGION", "CLOUD", "TIMEOUT", "PROBED",
                              "HEALTH"]
    table = {row.split()[0]: row.split() for row in rows}
    assert set(table) == set(origin_edge.listeners)
    assert table["backup"][1:3] == ["failover", "1"] and table["plain"][1] == "default"
    as_json = json.loads(admin(cli_binary, workdir, origin_edge, "origins", "--json").stdout)
    direct = origin_edge.admin("GET", "/admin/origins")[1]
    summary = lambda page: [(o["name"], o["consumer"], o["priority"], o["timeout_ms"]) for o in page["origins"]]  # noqa: E731
    assert summary(as_json) == summary(direct)

    # An origin that aborts makes a dead letter at once.
    aborting = origin_edge.listeners["aborting"]
    event = send_event(cli_binary, workdir, origin_edge, "--type", "activity.created",
                       "--vendor-data", f"user-{uuid.uuid4()}")
    assert aborting.wait_for(lambda l: event in l).endswith("→ 500")

    def listed():
        page = json.loads(admin(cli_binary, workdir, origin_edge, "dead-letters", "--consumer", "dead", "--json").stdout)
        return {d["id"]: d for d in page["dead_letters"]}

    assert _wait(lambda: event in listed()), listed()
    assert listed()[event]["reason"] == "aborted_by_origin"
    table = admin(cli_binary, workdir, origin_edge, "dead-letters", "--all")
    row = next(line for line in table.stdout.splitlines() if line.startswith(event))
    assert row.split()[1:3] == ["dead", listed()[event]["subject"]] and "aborted_by_origin" in row
    assert "aborting 500 aborted" in row
    assert table.stdout.splitlines()[-1].endswith("dead letters")

    # Replaying one: the origin still aborts, so it is tried again and dies again.
    replay = admin(cli_binary, workdir, origin_edge, "replay", event)
    assert (replay.returncode, replay.stdout.strip()) == (0, f"replayed {event} for consumer dead"), replay.stderr
    assert _wait(lambda: len(aborting.lines_with(event)) == 2)
    assert _wait(lambda: event in listed())
    # Fixed (a listener that takes events, on the same port), then everything is replayed.
    aborting.stop()
    fixed = start_listen(cli_binary, workdir, processes, port=aborting.port)
    replay_all = admin(cli_binary, workdir, origin_edge, "replay", "--all", "--consumer", "dead")
    assert replay_all.returncode == 0, replay_all.stderr
    assert replay_all.stdout.strip() == "replayed 1 dead letter (0 remaining)"
    assert fixed.wait_for(lambda l: event in l).endswith("→ 204")
    assert _wait(lambda: event not in listed())

    # Errors: an unknown id, a wrong token (never echoed), no token at all.
    assert_error_line(admin(cli_binary, workdir, origin_edge, "replay", "evt_unknown"), 1, "404",
                      "dead_letter_not_found")
    assert_error_line(admin(cli_binary, workdir, origin_edge, "origins", token="wrong-token-wrong-token-wrong"), 1,
                      "401", "unauthorized", secrets=("wrong-token-wrong-token-wrong",))
    assert_error_line(admin(cli_binary, workdir, origin_edge, "origins", token=None), 2, "ADMIN_TOKEN")


def test_admin_erase_removes_a_subject_only_when_confirmed(cli_binary, workdir, origin_edge):
    person = f"person/{uuid.uuid4()} é"
    event = send_event(cli_binary, workdir, origin_edge, "--type", "user.status.updated", "--vendor-data", person)
    assert origin_edge.listeners["backup"].wait_for(lambda line: event in line)
    unconfirmed = admin(cli_binary, workdir, origin_edge, "erase", "user", person)
    assert_error_line(unconfirmed, 2, "--yes")
    erased = admin(cli_binary, workdir, origin_edge, "erase", "user", person, "--yes", "--json")
    assert erased.returncode == 0, erased.stderr
    answer = json.loads(erased.stdout)
    assert answer["subject_kind"] == "user" and answer["erased"]["events"] == 1
    assert answer["erased"]["payloads"] == 0, "delivered: its payload was already dropped"
    assert answer["erased"]["statuses"] >= 1
    again = admin(cli_binary, workdir, origin_edge, "erase", "user", person, "--yes")
    assert again.returncode == 0, again.stderr
    assert again.stdout.startswith("erased 1 events of this user: 0 payloads, 0 pending deliveries, "
                                   "0 dead letters, 0 stream statuses")
    resend = run(cli_binary, workdir, "send", f"{origin_edge.url}/webhooks/didit", "--secret", DIDIT_SECRET,
                 "--json", "--resend")
    assert json.loads(resend.stdout)["answer"]["status"] == "duplicate", "still deduplicated"
    bad_kind = admin(cli_binary, workdir, origin_edge, "erase", "person", person, "--yes")
    assert bad_kind.returncode == 2


def test_admin_lookup_prints_each_attempt_of_a_subjects_events(cli_binary, workdir, origin_edge):
    person = f"person/{uuid.uuid4()} é"
    event = send_event(cli_binary, workdir, origin_edge, "--type", "user.status.updated", "--vendor-data", person)
    assert origin_edge.listeners["backup"].wait_for(lambda line: event in line)

    def delivered():
        result = admin(cli_binary, workdir, origin_edge, "lookup", "--vendor-data", person, "--json")
        return result.returncode == 0 and json.loads(result.stdout)["events"][0]["copies"][0]["state"] == "delivered"

    assert _wait(delivered)
    answer = json.loads(admin(cli_binary, workdir, origin_edge, "lookup", "--vendor-data", person, "--json").stdout)
    assert answer["subject_kind"] == "user" and [e["id"] for e in answer["events"]] == [event]
    printed = admin(cli_binary, workdir, origin_edge, "lookup", "--vendor-data", person, "--event", event)
    assert printed.returncode == 0, printed.stderr
    lines = printed.stdout.splitlines()
    assert lines[0] == "user subject"
    assert any(line.startswith(event) and "user.status.updated" in line for line in lines)
    assert any("received" in line and "X-Signature" in line and "verified" in line for line in lines)
    # Its backup took it, after the failing origin's 500 (unless earlier tests left that
    # origin's breaker open, when it is skipped and sent nothing).
    backup = next(i for i, line in enumerate(lines) if "attempt" in line and "backup 204" in line)
    failing = [i for i, line in enumerate(lines) if "attempt" in line and "failing" in line]
    assert all(i < backup and "failing 500 server_error" in lines[i] for i in failing), lines
    assert any("delivered" in line and "to backup" in line for line in lines[backup:])
    assert person not in printed.stdout, "the lookup prints nothing personal"
    missing = admin(cli_binary, workdir, origin_edge, "lookup", "--session", f"never-{uuid.uuid4()}")
    assert_error_line(missing, 1, "404", "subject_not_found")
    assert_error_line(admin(cli_binary, workdir, origin_edge, "lookup"), 2, "--event")


def _wait(predicate, timeout=30):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if predicate():
            return True
        time.sleep(0.3)
    return predicate()


# --- token and watch ----------------------------------------------------------------------------

def jwt_claims(token, secret=stream_tokens.STREAM_SECRET):
    header, claims, signature = token.split(".")
    expected = hmac.new(secret.encode(), f"{header}.{claims}".encode(), hashlib.sha256).digest()
    assert base64.urlsafe_b64decode(signature + "==") == expected, "HS256 under the secret"
    assert json.loads(base64.urlsafe_b64decode(header + "==")) == {"alg": "HS256", "typ": "JWT"}
    return json.loads(base64.urlsafe_b64decode(claims + "=="))


def test_token_and_watch_see_a_status_arrive(cli_binary, workdir, origin_edge, processes):
    user, session = f"alice-{uuid.uuid4()}", str(uuid.uuid4())
    minted = run(cli_binary, workdir, "token", "--sub", user, "--sessions", session, "--ttl", "5m",
                 STREAM_TOKEN_SECRET=stream_tokens.STREAM_SECRET)
    assert minted.returncode == 0, minted.stderr
    token = minted.stdout.strip()
    claims = jwt_claims(token)
    assert (claims["sub"], claims["scope"], claims["aud"], claims["sessions"]) == (user, "self", "didit-edge",
                                                                                   [session])
    assert claims["exp"] - claims["iat"] == 300 and abs(claims["iat"] - time.time()) < 60 and claims["jti"]

    watcher = Process(cli_binary, workdir, "watch", origin_edge.url, "--token", token, "--count", "1", "--for", "60s")
    processes.append(watcher)
    watcher.wait_for(lambda l: l.startswith("watching ws://127.0.0.1:"), stderr=True)
    event = send_event(cli_binary, workdir, origin_edge, "--vendor-data", user, "--session-id", session)
    line = watcher.wait_for(lambda l: event in l)
    assert line.split("  ")[1:] == [f"session:{session}", "approved", "risk=low", event]
    assert watcher.process.wait(timeout=30) == 0, "--count 1 ends the watch"

    # Without a token, an admin token is minted from STREAM_TOKEN_SECRET; filters apply. (Its
    # first messages are the current high-risk statuses of earlier tests' subjects.)
    admin_watch = Process(cli_binary, workdir, "watch", origin_edge.url, "--risk", "high", "--for", "60s",
                          "--json", STREAM_TOKEN_SECRET=stream_tokens.STREAM_SECRET)
    processes.append(admin_watch)
    admin_watch.wait_for(lambda l: l.startswith("watching "), stderr=True)
    low = send_event(cli_binary, workdir, origin_edge)
    high = send_event(cli_binary, workdir, origin_edge, "--status", "declined")
    message = json.loads(admin_watch.wait_for(lambda l: high in l))
    assert (message["status_code"], message["risk_level"]) == ("declined", "high")
    assert all(json.loads(l)["risk_level"] == "high" for l in admin_watch.lines())
    assert not any(low in l for l in admin_watch.lines()), "the risk filter held back the low-risk event"
    admin_watch.stop()

    # A token the edge refuses: exit 1 with its code; a token opens one connection only.
    wrong = run(cli_binary, workdir, "token", "--sub", user, "--secret", "another-secret-0123456789abcdef-0123")
    refused = run(cli_binary, workdir, "watch", origin_edge.url, "--token", wrong.stdout.strip(), "--for", "5s")
    assert_error_line(refused, 1, "401", "invalid_token")
    reused = run(cli_binary, workdir, "watch", origin_edge.url, "--token", token, "--for", "5s")
    assert_error_line(reused, 1, "401", "token_reused")


# --- usage and network errors -------------------------------------------------------------------

def test_bad_usage_exits_2_with_one_clear_line(cli_binary, workdir):
    for args, fragment in [
        (["sign", "--secret", "s", "--fail", "bogus"], "bogus"),
        (["send"], "URL"),
        (["send", "http://127.0.0.1:1/webhooks/didit", "--secret", "s", "--repeat", "0"], "--repeat"),
        (["send", "--resend", "--status", "declined"], "--status"),
        (["listen", "--fail", "200"], "200"),
        (["admin", "replay"], "ID"),
        (["token"], "--sub"),
        (["sign", "--secret", "s", "--frobnicate"], "--frobnicate"),
        (["send", "127.0.0.1:8787", "--secret", "s"], "not a URL"),
        (["sign", "--secret", "s", "--body", str(workdir / "missing.json")], "cannot read --body"),
        (["token", "--sub", "u", "--secret", "too-short"], "at least 32"),
        (["watch", "ftp://example.invalid"], "not a stream URL"),
    ]:
        assert_error_line(run(cli_binary, workdir, *args), 2, fragment)
    # Nothing to sign with, nothing to resend: said, with where it would come from.
    assert_error_line(run(cli_binary, workdir, "sign"), 2, "--secret", "DIDIT_WEBHOOK_SECRETS")
    assert_error_line(run(cli_binary, workdir, "send", "--resend", "--secret", "s"), 2, "nothing to resend")
    assert_error_line(run(cli_binary, workdir, "listen", "--secret", "not-whsec"), 2, "whsec_")
    # Help for every command, with the exit codes.
    for command in ([], ["sign"], ["send"], ["listen"], ["admin"], ["admin", "dead-letters"], ["token"], ["watch"]):
        result = run(cli_binary, workdir, *command, "--help")
        assert result.returncode == 0 and "Exit codes:" in result.stdout and "3  network" in result.stdout, command


def test_unreachable_means_the_network_exit_code(cli_binary, workdir, processes):
    closed = free_port()  # nothing listens there
    result = run(cli_binary, workdir, "send", f"http://127.0.0.1:{closed}/webhooks/didit",
                 "--secret", "a-secret-not-to-print")
    assert_error_line(result, 3, f"127.0.0.1:{closed}", secrets=("a-secret-not-to-print",))
    result = run(cli_binary, workdir, "admin", "origins", "--url", f"http://127.0.0.1:{closed}",
                 ADMIN_TOKEN=ADMIN_TOKEN)
    assert_error_line(result, 3, secrets=(ADMIN_TOKEN,))
    result = run(cli_binary, workdir, "watch", f"http://127.0.0.1:{closed}", "--token", "t.t.t")
    assert_error_line(result, 3)
    # A port already taken cannot be listened on.
    taken = start_listen(cli_binary, workdir, processes)
    result = run(cli_binary, workdir, "listen", "--port", str(taken.port), "--secret", SIGNING_SECRET)
    assert_error_line(result, 3, f"127.0.0.1:{taken.port}")
