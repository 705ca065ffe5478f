"""The consumer recipes in examples/consumers/ (FastAPI; Rails when Debian's rails is installed),
each run as a real process on 127.0.0.1 behind the real worker under `wrangler dev`.

Between the worker and the app sits a small recording proxy: it forwards each delivery and
keeps the signed request and the app's answer, and for chosen subjects it stands in for what
goes wrong in production: an answer lost after the app committed (the worker sees a failure,
the event becomes a dead letter, and the admin API's replay delivers it again), a delivery
withheld (so a newer event of the subject overtakes it), a request captured (to be sent twice
at the same moment). What each app did is read from its own SQLite database.
"""

import base64
from datetime import datetime, timedelta, timezone
import http.client
import json
import os
import pathlib
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from standardwebhooks.webhooks import Webhook

import didit
from harness import ADMIN_TOKEN, DIDIT_SECRET, LOG_DIR, WranglerDev, base_config, free_port, wait_until

ROOT = pathlib.Path(__file__).resolve().parent.parent
RECIPES = ROOT / "examples" / "consumers"
SLOW_WORK_SECONDS = 2.0


class Proxy:
    """Forwards the worker's deliveries to the app. `plans[subject]` is a list of actions for
    that subject's next requests: "forward" (the default), "forward_then_abort" (the app gets it,
    the worker gets 500 + `webhook-delivery: abort-message`: a lost answer, a dead letter),
    "abort" (the app never sees it; a dead letter), "capture" (the app never sees it, the worker
    gets 204)."""

    def __init__(self, app_url):
        self.app_url = app_url
        self.port = free_port()
        self.lock = threading.Lock()
        self.plans = {}
        self.records = []

    @property
    def url(self):
        return f"http://127.0.0.1:{self.port}/didit-events"

    def start(self):
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("content-length") or 0))
                headers = {k.lower(): v for k, v in self.headers.items()}
                subject = json.loads(body).get("subject")
                with proxy.lock:
                    plan = proxy.plans.get(subject) or []
                    action = plan.pop(0) if plan else "forward"
                record = {"webhook_id": headers.get("webhook-id"), "subject": subject, "headers": headers,
                          "body": body, "action": action, "app_status": None, "app_answer": None}
                status, extra = 204, {}
                if action in ("forward", "forward_then_abort"):
                    started = time.monotonic()
                    record["app_status"], record["app_answer"] = post(proxy.app_url, body, headers)
                    record["app_seconds"] = time.monotonic() - started
                    record["answered_at"] = time.time()
                    status = record["app_status"]
                if action in ("forward_then_abort", "abort"):
                    status, extra = 500, {"webhook-delivery": "abort-message"}
                with proxy.lock:
                    proxy.records.append(record)
                self.send_response(status)
                for name, value in extra.items():
                    self.send_header(name, value)
                self.send_header("content-length", "0")
                self.end_headers()

        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def stop(self):
        self.server.shutdown()
        self.server.server_close()

    def plan(self, subject, *actions):
        with self.lock:
            self.plans[subject] = list(actions)

    def of(self, subject):
        with self.lock:
            return [r for r in self.records if r["subject"] == subject]


def post(url, body, headers, timeout=30):
    """(status, parsed JSON answer or None) of one POST to the app."""
    host_port = url.split("/")[2]
    connection = http.client.HTTPConnection(host_port, timeout=timeout)
    try:
        forwarded = {k: v for k, v in headers.items() if k not in ("host", "connection", "accept-encoding")}
        connection.request("POST", "/" + url.split("/", 3)[3], body=body, headers=forwarded)
        response = connection.getresponse()
        raw = response.read()
        try:
            return response.status, json.loads(raw)
        except ValueError:
            return response.status, None
    finally:
        connection.close()


class RecipeApp:
    """One recipe's app as a process of its own (its own process group, stopped by its id)."""

    def __init__(self, name, command, cwd, secret, db_path):
        self.name, self.command, self.cwd, self.secret, self.db_path = name, command, cwd, secret, db_path
        self.port = free_port()
        self.process = None
        self.starts = 0

    @property
    def url(self):
        return f"http://127.0.0.1:{self.port}/didit-events"

    def start(self, timeout=90):
        LOG_DIR.mkdir(parents=True, exist_ok=True)
        self.starts += 1
        log = open(LOG_DIR / f"app-{self.name}-{self.starts}.log", "w")
        env = dict(os.environ, DIDIT_EDGE_SIGNING_SECRET=self.secret, RECIPE_DB=str(self.db_path),
                   SLOW_WORK_SECONDS=str(SLOW_WORK_SECONDS), PORT=str(self.port))
        command = [part.replace("{port}", str(self.port)) for part in self.command]
        self.process = subprocess.Popen(command, cwd=self.cwd, env=env, stdout=log, stderr=subprocess.STDOUT,
                                        stdin=subprocess.DEVNULL, start_new_session=True)

        def ready():
            if self.process.poll() is not None:
                raise RuntimeError(f"{self.name} exited early; see {log.name}")
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/healthz", timeout=2) as response:
                    return response.status == 200
            except (urllib.error.URLError, ConnectionError, OSError):
                return False

        assert wait_until(ready, timeout), f"{self.name} did not start; see {log.name}"
        return self

    def stop(self, sig=signal.SIGTERM):
        if self.process is None:
            return
        for each in (sig, signal.SIGKILL):
            try:
                os.killpg(self.process.pid, each)
            except ProcessLookupError:
                break
            try:
                self.process.wait(timeout=15)
                break
            except subprocess.TimeoutExpired:
                continue
        self.process = None

    def rows(self, query, *args):
        connection = sqlite3.connect(f"file:{self.db_path}?mode=ro", uri=True, timeout=10)
        try:
            return connection.execute(query, args).fetchall()
        finally:
            connection.close()


def fastapi_app(secret, db_path):
    return RecipeApp("fastapi", [sys.executable, "-m", "uvicorn", "app:app", "--host", "127.0.0.1",
                                 "--port", "{port}", "--no-access-log"],
                     RECIPES / "fastapi", secret, db_path)


def rails_app(secret, db_path):
    return RecipeApp("rails", ["puma", "--environment", "production", "--bind", "tcp://127.0.0.1:{port}",
                               "--threads", "8:16", "config.ru"],
                     RECIPES / "rails", secret, db_path)


def rails_installed():
    """Whether Debian's rails, ruby-sqlite3 and puma are installed (scripts/setup.sh installs
    them where it can: as root or with sudo, on Debian)."""
    if shutil.which("ruby") is None or shutil.which("puma") is None:
        return False
    probe = subprocess.run(["ruby", "-e", 'require "rails"; require "active_record"; require "sqlite3"'],
                           capture_output=True, timeout=60)
    return probe.returncode == 0


MAKERS = {"fastapi": fastapi_app, "rails": rails_app}


@pytest.fixture(scope="module", params=sorted(MAKERS))
def recipe(request):
    """One recipe's app, the proxy in front of it and a worker delivering to the proxy, signing
    with the app's own `whsec_` secret."""
    if request.param == "rails" and not rails_installed():
        pytest.skip("Debian's rails, ruby-sqlite3 and puma are not installed (scripts/setup.sh installs them as root)")
    secret = "whsec_" + base64.b64encode(os.urandom(32)).decode()
    workdir = pathlib.Path(tempfile.mkdtemp(prefix=f"recipes-{request.param}-"))
    app = MAKERS[request.param](secret, workdir / "events.db")
    proxy = edge = None
    try:
        app.start()
        proxy = Proxy(app.url).start()
        edge = WranglerDev(f"recipe-{request.param}", base_config(
            proxy.url, ORIGIN_SIGNING_SECRET=secret, ADMIN_TOKEN=ADMIN_TOKEN, AFTER_DEAD_LETTER="continue"))
        edge.start()
        yield {"app": app, "proxy": proxy, "edge": edge, "secret": secret}
    finally:
        if edge is not None:
            edge.stop()
            shutil.rmtree(edge.persist_dir, ignore_errors=True)
        if proxy is not None:
            proxy.stop()
        app.stop()
        shutil.rmtree(workdir, ignore_errors=True)


def send(edge, status, session=None, timestamp=None, **extra):
    """A Didit-signed webhook to the worker; returns (session id, evt_ id)."""
    session = session or str(uuid.uuid4())
    payload = didit.session_payload(session_id=session, status=status, timestamp=timestamp, **extra)
    body = didit.encode(payload)
    code, reply = edge.post_webhook(body, didit.signed_headers(body, payload, DIDIT_SECRET))
    assert (code, reply["status"]) == (200, "accepted"), reply
    return session, reply["id"]


def processed(app, webhook_id):
    found = app.rows("SELECT outcome FROM processed_events WHERE webhook_id = ?", webhook_id)
    return found[0][0] if found else None


def effects(app, session):
    """Everything the app did for one session: decision, review-queue rows, notifications."""
    subject = f"session:{session}"
    decision = app.rows("SELECT decision, status_code, risk_level, event_id FROM decisions WHERE subject = ?", subject)
    return {
        "decision": decision[0] if decision else None,
        "review_queue": [w for (w,) in app.rows("SELECT webhook_id FROM review_queue WHERE subject = ?", subject)],
        "notifications": app.rows("SELECT webhook_id, action FROM notifications WHERE subject = ? ORDER BY id",
                                  subject),
    }


def slow_work_done(app, webhook_id):
    return app.rows("SELECT 1 FROM outbox WHERE webhook_id = ? AND done_at IS NOT NULL", webhook_id) != []


def test_each_risk_level_has_its_effect_once_and_the_answer_comes_before_the_slow_work(recipe):
    app, proxy, edge = recipe["app"], recipe["proxy"], recipe["edge"]
    sent = {name: send(edge, status, **extra) for name, status, extra in (
        ("approved", "Approved", {}), ("review", "In Review", {}), ("blocked", "Declined", {}),
        ("in_progress", "In Progress", {"decision": None}))}
    for name, (session, event) in sent.items():
        assert wait_until(lambda: processed(app, event) is not None, 30), name
    expected = {
        "approved": (("approved", "approved", "low"), False, "welcome_user"),
        "review": (("review", "in_review", "medium"), True, "notify_reviewers"),
        "blocked": (("blocked", "declined", "high"), False, "alert_fraud_team"),
        "in_progress": (("pending", "in_progress", "unknown"), False, None),
    }
    for name, (session, event) in sent.items():
        decision, queued, action = expected[name]
        if action:
            assert wait_until(lambda: slow_work_done(app, event), 30), name
        found = effects(app, session)
        assert found["decision"] == decision + (event,), name
        assert found["review_queue"] == ([event] if queued else []), name
        assert found["notifications"] == ([(event, action)] if action else []), name
        [delivery] = proxy.of(session)
        assert delivery["app_status"] == 200 and delivery["headers"]["webhook-id"] == event
        # Answered before the slow work, which ran after the answer.
        assert delivery["app_seconds"] < SLOW_WORK_SECONDS, name
        if action:
            [(sent_at,)] = app.rows("SELECT sent_at FROM notifications WHERE webhook_id = ?", event)
            assert sent_at >= delivery["answered_at"], name


def test_an_event_replayed_after_a_lost_answer_has_one_effect(recipe):
    app, proxy, edge = recipe["app"], recipe["proxy"], recipe["edge"]
    session = str(uuid.uuid4())
    # The app commits, but its answer never reaches the worker: a dead letter, replayed.
    proxy.plan(session, "forward_then_abort", "forward")
    _, event = send(edge, "In Review", session)
    assert wait_until(lambda: any(d["id"] == event for d in edge.admin("GET", "/admin/dead-letters")[1]["dead_letters"]))
    status, reply = edge.admin("POST", f"/admin/dead-letters/{event}/replay")
    assert (status, reply["replayed"]) == (200, [{"id": event, "consumer": "default"}])
    assert wait_until(lambda: len(proxy.of(session)) == 2, 30)
    first, second = proxy.of(session)
    assert first["webhook_id"] == second["webhook_id"] == event
    assert (first["app_status"], first["app_answer"]) == (200, {"status": "review"})
    assert (second["app_status"], second["app_answer"]) == (200, {"status": "duplicate"})
    assert wait_until(lambda: slow_work_done(app, event), 30)
    found = effects(app, session)
    assert found["review_queue"] == [event]
    assert found["notifications"] == [(event, "notify_reviewers")]


def test_copies_delivered_at_the_same_moment_have_one_effect(recipe):
    app, proxy, edge = recipe["app"], recipe["proxy"], recipe["edge"]
    sessions = [str(uuid.uuid4()) for _ in range(4)]
    for session in sessions:
        proxy.plan(session, "capture")
        send(edge, "In Review", session)
    assert wait_until(lambda: all(len(proxy.of(s)) == 1 for s in sessions), 30)
    copies = 4
    for session in sessions:
        [captured] = proxy.of(session)
        barrier = threading.Barrier(copies)
        answers = []

        def deliver():
            barrier.wait()
            answers.append(post(app.url, captured["body"], captured["headers"]))

        threads = [threading.Thread(target=deliver) for _ in range(copies)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
        event = captured["webhook_id"]
        assert sorted(a[1]["status"] for a in answers) == ["duplicate"] * (copies - 1) + ["review"]
        assert all(status == 200 for status, _ in answers)
        assert wait_until(lambda: slow_work_done(app, event), 30)
        found = effects(app, session)
        assert found["review_queue"] == [event]
        assert found["notifications"] == [(event, "notify_reviewers")]


def test_an_older_event_arriving_after_a_newer_one_changes_nothing(recipe):
    app, proxy, edge = recipe["app"], recipe["proxy"], recipe["edge"]
    session, now = str(uuid.uuid4()), int(time.time())
    # The older event's first delivery fails for good; with AFTER_DEAD_LETTER=continue the
    # newer one is delivered, and the dead letter's replay brings the older one after it.
    proxy.plan(session, "abort", "forward", "forward")
    _, older = send(edge, "In Review", session, timestamp=now - 60)
    assert wait_until(lambda: any(d["id"] == older for d in edge.admin("GET", "/admin/dead-letters")[1]["dead_letters"]))
    _, newer = send(edge, "Approved", session, timestamp=now - 30)
    assert wait_until(lambda: processed(app, newer) == "approved", 30)
    assert edge.admin("POST", f"/admin/dead-letters/{older}/replay")[0] == 200
    assert wait_until(lambda: processed(app, older) is not None, 30)
    assert processed(app, older) == "stale"
    assert [r["webhook_id"] for r in proxy.of(session)] == [older, newer, older]
    assert wait_until(lambda: slow_work_done(app, newer), 30)
    found = effects(app, session)
    assert found["decision"] == ("approved", "approved", "low", newer)
    assert found["review_queue"] == [], "the stale In Review must not queue a review"
    assert found["notifications"] == [(newer, "welcome_user")]


def test_a_forged_or_old_request_is_refused_and_changes_nothing(recipe):
    app, proxy, edge = recipe["app"], recipe["proxy"], recipe["edge"]
    session = str(uuid.uuid4())
    proxy.plan(session, "capture")
    send(edge, "Approved", session)
    assert wait_until(lambda: len(proxy.of(session)) == 1, 30)
    [captured] = proxy.of(session)
    headers, body = captured["headers"], captured["body"]
    other = str(uuid.uuid4())
    tampered = body.replace(session.encode(), other.encode())
    assert tampered != body
    wrong_secret = "whsec_" + base64.b64encode(os.urandom(32)).decode()

    def signed(secret, at):
        return dict(headers, **{"webhook-timestamp": str(int(at.timestamp())),
                                "webhook-signature": Webhook(secret).sign(headers["webhook-id"], at, body.decode())})

    now = datetime.now(tz=timezone.utc)
    forgeries = {
        "tampered body": (tampered, headers),
        "another secret": (body, signed(wrong_secret, now)),
        "ten minutes old": (body, signed(recipe["secret"], now - timedelta(minutes=10))),
        "malformed signature": (body, dict(headers, **{"webhook-signature": "v1"})),
        "no signature": (body, {k: v for k, v in headers.items() if k != "webhook-signature"}),
    }
    for name, (forged_body, forged_headers) in forgeries.items():
        assert post(app.url, forged_body, forged_headers)[0] == 401, name
    assert processed(app, captured["webhook_id"]) is None
    assert effects(app, session)["decision"] is None and effects(app, other)["decision"] is None
    # The genuine request, still fresh, is taken.
    assert post(app.url, body, headers) == (200, {"status": "approved"})


def test_slow_work_interrupted_by_a_crash_runs_when_the_app_starts_again(recipe):
    app, proxy, edge = recipe["app"], recipe["proxy"], recipe["edge"]
    session, event = send(edge, "Declined")
    assert wait_until(lambda: len(proxy.of(session)) == 1, 30)
    [delivery] = proxy.of(session)
    assert (delivery["app_status"], delivery["app_answer"]) == (200, {"status": "blocked"})
    # Answered, the slow work not done yet: the process dies.
    app.stop(signal.SIGKILL)
    assert not slow_work_done(app, event) and effects(app, session)["notifications"] == []
    app.start()
    assert wait_until(lambda: slow_work_done(app, event), 30)
    assert effects(app, session) == {"decision": ("blocked", "declined", "high", event), "review_queue": [],
                                     "notifications": [(event, "alert_fraud_team")]}
