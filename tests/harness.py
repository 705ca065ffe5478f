"""Runs the real worker under `wrangler dev` (workerd): used by the tests and the benchmark.

Every process started here runs in its own process group and is stopped by its id.
"""

import json
import os
import pathlib
import random
import re
import signal
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.request

ROOT = pathlib.Path(__file__).resolve().parent.parent
SIGNING_SECRET = "whsec_dGVzdC1vcmlnaW4tc2lnbmluZy1rZXktMDEyMzQ1Njc4OQ=="
DIDIT_SECRET = "didit-test-secret-new"
OLD_DIDIT_SECRET = "didit-test-secret-old"
ADMIN_TOKEN = "test-admin-token-0123456789abcdef"
LOG_DIR = pathlib.Path(os.environ.get("DIDIT_EDGE_TEST_LOGS", tempfile.gettempdir())) / "didit-edge-test-logs"


_handed_out = set()


def _ephemeral_low():
    """The first port of the kernel's ephemeral range."""
    try:
        return int(pathlib.Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


def free_port() -> int:
    """A port nothing listens on, never handed out twice in this process. It is drawn below the
    kernel's ephemeral range: a port the kernel picked once (`bind(0)`) is one it can give to
    an outgoing connection again before the server binds it, and then that server cannot start."""
    low = _ephemeral_low()
    for _ in range(500):
        port = random.randrange(min(10_000, low // 2), low)
        if port in _handed_out:
            continue
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
        _handed_out.add(port)
        return port
    raise RuntimeError("no free port below the ephemeral range")


def tool_env():
    env = dict(os.environ)
    env["PATH"] = f"{ROOT / 'node_modules' / '.bin'}:{pathlib.Path.home() / '.cargo' / 'bin'}:{env.get('PATH', '')}"
    env.update(WRANGLER_SEND_METRICS="false", WRANGLER_SEND_ERROR_REPORTS="false", DO_NOT_TRACK="1",
               CLOUDFLARE_CF_FETCH_ENABLED="false", NO_UPDATE_NOTIFIER="1", CI="true")
    return env


class PortTaken(RuntimeError):
    """wrangler dev could not bind one of its ports."""


def test_wrangler_config(faults=False):
    """The wrangler configuration the tests run: `wrangler.toml` (so bindings and migrations stay
    one) written to `.tools/`, so that wrangler does not read the repository's `.dev.vars` (a
    newcomer's `scripts/dev.sh` creates one, with a stream secret and origins of its own) and each
    test's settings are only its `--var`s. With `faults`, the fault-injection build
    (`scripts/build.sh --faults`, which only the tests use)."""
    build = "build-faults" if faults else "build"
    flag = " --faults" if faults else ""
    target = ROOT / ".tools" / ("wrangler-faults.toml" if faults else "wrangler-tests.toml")
    text = (ROOT / "wrangler.toml").read_text()
    replacements = {
        'main = "edge-worker/build/index.js"': f'main = "../edge-worker/{build}/index.js"',
        'command = "bash scripts/build.sh"': f'command = "bash {ROOT / "scripts" / "build.sh"}{flag}"',
        'watch_dir = ["edge-worker/src", "core/src"]': 'watch_dir = ["../edge-worker/src", "../core/src"]',
        'directory = "web"': 'directory = "../web"',
    }
    for old, new in replacements.items():
        assert old in text, f"wrangler.toml no longer has {old!r}"
        text = text.replace(old, new)
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(text)
    return target


class WranglerDev:
    """One `wrangler dev` process with its own port, state directory and configuration. With
    `faults=True` it runs the fault-injection build (see `test_wrangler_config`)."""

    def __init__(self, name, config, persist_dir=None, faults=False, wrangler_config=None):
        self.name = name
        self.faults = faults
        self.wrangler_config = wrangler_config
        self.config = dict(config)
        self.port = free_port()
        self.persist_dir = persist_dir or tempfile.mkdtemp(prefix=f"didit-edge-{name}-")
        self.process = None
        self.starts = 0

    @property
    def url(self):
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout=240):
        """Starts wrangler and waits for `/healthz`. Should its port be taken after all (by a
        process outside these tests), it starts again once on a new port."""
        try:
            return self._start(timeout)
        except PortTaken:
            self.port = free_port()
            return self._start(timeout)

    def _start(self, timeout):
        LOG_DIR.mkdir(parents=True, exist_ok=True)
        self.starts += 1
        self.log_path = LOG_DIR / f"{self.name}-{self.starts}.log"
        self.inspector_port = free_port()
        command = [str(ROOT / "node_modules" / ".bin" / "wrangler"), "dev", "--ip", "127.0.0.1",
                   "--port", str(self.port), "--inspector-port", str(self.inspector_port),
                   "--persist-to", self.persist_dir, "--show-interactive-dev-session=false",
                   "--test-scheduled"]
        command += ["--config", str(self.wrangler_config or test_wrangler_config(self.faults))]
        for key, value in self.config.items():
            command += ["--var", f"{key}:{value}"]
        log = open(self.log_path, "w")
        self.process = subprocess.Popen(command, cwd=ROOT, env=tool_env(), stdout=log, stderr=subprocess.STDOUT,
                                        stdin=subprocess.DEVNULL, start_new_session=True)
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.process.poll() is not None:
                self.stop()  # whatever wrangler left of its process group
                output = self.log_path.read_text()
                if "Address already in use" in output:
                    raise PortTaken(output[-3000:])
                raise RuntimeError(f"wrangler dev exited early; see {self.log_path}:\n{output[-3000:]}")
            try:
                with urllib.request.urlopen(f"{self.url}/healthz", timeout=2) as response:
                    if response.status == 200:
                        return self
            except (urllib.error.URLError, ConnectionError, TimeoutError, OSError):
                pass
            time.sleep(0.3)
        self.stop()
        raise RuntimeError(f"wrangler dev did not become ready in {timeout}s; see {self.log_path}")

    def stop(self):
        """Stops wrangler and its workerd children: the whole process group, even if wrangler
        itself has already exited."""
        if self.process is None:
            return
        for sig, wait in ((signal.SIGTERM, 15), (signal.SIGKILL, 15)):
            try:
                os.killpg(self.process.pid, sig)
            except ProcessLookupError:
                break
            try:
                self.process.wait(timeout=wait)
            except subprocess.TimeoutExpired:
                continue
            # The leader is gone; make sure no child of the group is left either.
            try:
                os.killpg(self.process.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            break
        self.process = None

    def request(self, method, path, body=None, headers=None, timeout=30):
        request = urllib.request.Request(f"{self.url}{path}", data=body, headers=headers or {}, method=method)
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:
                return response.status, dict(response.headers), response.read()
        except urllib.error.HTTPError as error:
            return error.code, dict(error.headers), error.read()

    def run_cron(self, timeout=30):
        """Fires the cron trigger once (wrangler dev's /__scheduled, enabled by --test-scheduled).
        The answer waits for what the trigger does: a reconciliation run it starts included."""
        status, _, raw = self.request("GET", "/__scheduled?cron=*+*+*+*+*", timeout=timeout)
        assert status == 200, raw

    def admin(self, method, path, token=ADMIN_TOKEN):
        """Calls the admin API; returns (status, parsed JSON body)."""
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        status, _, raw = self.request(method, path, headers=headers)
        return status, json.loads(raw)

    def admin_json(self, method, path, payload, token=ADMIN_TOKEN):
        """Calls the admin API with a JSON body; returns (status, parsed JSON body)."""
        headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
        status, _, raw = self.request(method, path, body=json.dumps(payload).encode(), headers=headers)
        return status, json.loads(raw)

    def post_webhook(self, body, headers):
        status, _, raw = self.request("POST", "/webhooks/didit", body, headers)
        return status, json.loads(raw)

    def log_lines(self):
        """Everything wrangler and the worker printed since the last start."""
        return self.log_path.read_text(errors="replace").splitlines()

    def log_events(self, event):
        """The worker's structured log lines (one JSON object per line) of one `event` kind,
        error lines included (wrangler colours those)."""
        found = []
        for line in self.log_lines():
            line = re.sub(r"\x1b\[[0-9;]*m", "", line)
            start = line.find("{")
            if start < 0:
                continue
            try:
                record = json.loads(line[start:])
            except ValueError:
                continue
            if isinstance(record, dict) and record.get("event") == event:
                found.append(record)
        return found


def inbox_rows(persist_dir, event_id):
    """The stored record of `event_id`, read from the Inbox objects' own SQLite files under the
    `--persist-to` directory: [(payload_still_stored, delivered_at_ms once every consumer has
    it)]. Only what no API shows is read this way: whether identity data is still stored."""
    import sqlite3

    rows = []
    for path in (pathlib.Path(persist_dir) / "v3" / "do").glob("*-Inbox/*.sqlite"):
        connection = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5)
        try:
            rows += connection.execute(
                """SELECT e.cloud_event IS NOT NULL,
                          CASE WHEN EXISTS (SELECT 1 FROM json_each(e.copies) c
                                            WHERE json_extract(c.value, '$.delivered_at_ms') IS NULL) THEN NULL
                               ELSE (SELECT MAX(json_extract(c.value, '$.delivered_at_ms'))
                                     FROM json_each(e.copies) c) END
                   FROM events e WHERE e.id = ?""",
                (event_id,)).fetchall()
        except sqlite3.OperationalError:
            pass  # an object that has not created its table yet
        finally:
            connection.close()
    return rows


def inbox_tables(persist_dir):
    """The tables every Inbox object keeps in its own SQLite file (not the platform's own)."""
    import sqlite3

    tables = []
    for path in (pathlib.Path(persist_dir) / "v3" / "do").glob("*-Inbox/*.sqlite"):
        if path.name == "metadata.sqlite":
            continue
        connection = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5)
        try:
            tables += [t for (t,) in connection.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
                       if not t.startswith(("_cf", "sqlite_", "__miniflare"))]
        except sqlite3.OperationalError:
            pass
        finally:
            connection.close()
    return tables


def cells_containing(persist_dir, needle, kind):
    """(file, table) of every stored cell of one kind of Durable Object holding `needle`."""
    import sqlite3

    found = []
    for path in (pathlib.Path(persist_dir) / "v3" / "do").glob(f"*-{kind}/*.sqlite"):
        connection = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5)
        try:
            tables = [t for (t,) in connection.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
            for table in tables:
                for row in connection.execute(f'SELECT * FROM "{table}"'):
                    if any(isinstance(cell, str) and needle in cell for cell in row):
                        found.append((path.name, table))
        except sqlite3.OperationalError:
            pass
        finally:
            connection.close()
    return found


def base_config(origin_url, **overrides):
    config = {
        "DIDIT_WEBHOOK_SECRETS": f"{DIDIT_SECRET},{OLD_DIDIT_SECRET}",
        "ORIGIN_SIGNING_SECRET": SIGNING_SECRET,
        "ORIGINS": json.dumps([{"name": "test-origin", "url": origin_url, "timeout_ms": 2000}]),
        "TIMESTAMP_TOLERANCE_SECS": "600",
        "MAX_BODY_BYTES": "65536",
        "DEDUP_TTL_SECS": "604800",
        # Retries every second, for long enough that no test sees a dead letter it did not ask for.
        "RETRY_SCHEDULE": "1x1000",
        "RETRY_JITTER_PERCENT": "0",
        "ALLOW_SIMPLE_SIGNATURE": "false",
    }
    config.update(overrides)
    return config


def wait_until(predicate, timeout=30):
    """Whether `predicate()` became true within `timeout` seconds (asked every 0.2 s)."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        if predicate():
            return True
        time.sleep(0.2)
    return predicate()
