"""Fixtures that run the real worker under `wrangler dev` (workerd) and real origins on 127.0.0.1.

Every process started here is stopped by process group id at teardown.
"""

import json
import os
import pathlib
import signal
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.request

import pytest

from origin_server import Origin

ROOT = pathlib.Path(__file__).resolve().parent.parent
SIGNING_SECRET = "whsec_dGVzdC1vcmlnaW4tc2lnbmluZy1rZXktMDEyMzQ1Njc4OQ=="
DIDIT_SECRET = "didit-test-secret-new"
OLD_DIDIT_SECRET = "didit-test-secret-old"
LOG_DIR = pathlib.Path(os.environ.get("DIDIT_EDGE_TEST_LOGS", tempfile.gettempdir())) / "didit-edge-test-logs"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def tool_env():
    env = dict(os.environ)
    env["PATH"] = f"{ROOT / 'node_modules' / '.bin'}:{pathlib.Path.home() / '.cargo' / 'bin'}:{env.get('PATH', '')}"
    env.update(WRANGLER_SEND_METRICS="false", WRANGLER_SEND_ERROR_REPORTS="false", DO_NOT_TRACK="1",
               CLOUDFLARE_CF_FETCH_ENABLED="false", NO_UPDATE_NOTIFIER="1", CI="true")
    return env


class WranglerDev:
    """One `wrangler dev` process with its own port, state directory and configuration."""

    def __init__(self, name, config, persist_dir=None):
        self.name = name
        self.config = dict(config)
        self.port = free_port()
        self.persist_dir = persist_dir or tempfile.mkdtemp(prefix=f"didit-edge-{name}-")
        self.process = None
        self.starts = 0

    @property
    def url(self):
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout=240):
        LOG_DIR.mkdir(parents=True, exist_ok=True)
        self.starts += 1
        self.log_path = LOG_DIR / f"{self.name}-{self.starts}.log"
        command = [str(ROOT / "node_modules" / ".bin" / "wrangler"), "dev", "--ip", "127.0.0.1",
                   "--port", str(self.port), "--inspector-port", str(free_port()),
                   "--persist-to", self.persist_dir, "--show-interactive-dev-session=false"]
        for key, value in self.config.items():
            command += ["--var", f"{key}:{value}"]
        log = open(self.log_path, "w")
        self.process = subprocess.Popen(command, cwd=ROOT, env=tool_env(), stdout=log, stderr=subprocess.STDOUT,
                                        stdin=subprocess.DEVNULL, start_new_session=True)
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"wrangler dev exited early; see {self.log_path}:\n{self.log_path.read_text()[-3000:]}")
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
        if self.process and self.process.poll() is None:
            try:
                os.killpg(self.process.pid, signal.SIGTERM)
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(timeout=15)
            except ProcessLookupError:
                pass
        self.process = None

    def request(self, method, path, body=None, headers=None, timeout=30):
        request = urllib.request.Request(f"{self.url}{path}", data=body, headers=headers or {}, method=method)
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:
                return response.status, dict(response.headers), response.read()
        except urllib.error.HTTPError as error:
            return error.code, dict(error.headers), error.read()

    def post_webhook(self, body, headers):
        status, _, raw = self.request("POST", "/webhooks/didit", body, headers)
        return status, json.loads(raw)


def base_config(origin_url, **overrides):
    config = {
        "DIDIT_WEBHOOK_SECRETS": f"{DIDIT_SECRET},{OLD_DIDIT_SECRET}",
        "ORIGIN_SIGNING_SECRET": SIGNING_SECRET,
        "ORIGINS": json.dumps([{"name": "test-origin", "url": origin_url, "timeout_ms": 2000}]),
        "TIMESTAMP_TOLERANCE_SECS": "600",
        "MAX_BODY_BYTES": "65536",
        "DEDUP_TTL_SECS": "604800",
        "RETRY_SCHEDULE": "1",
        "ALLOW_SIMPLE_SIGNATURE": "false",
    }
    config.update(overrides)
    return config


@pytest.fixture
def make_edge():
    """Starts `wrangler dev` instances for one test and stops them afterwards."""
    started = []

    def make(name, config, persist_dir=None):
        edge = WranglerDev(name, config, persist_dir)
        started.append(edge)
        return edge.start()

    yield make
    for edge in started:
        edge.stop()


@pytest.fixture
def make_origin():
    """Real origins on 127.0.0.1, stopped afterwards."""
    origins = []

    def make(port=None, start=True):
        origin = Origin(port or free_port(), SIGNING_SECRET)
        origins.append(origin)
        return origin.start() if start else origin

    yield make
    for origin in origins:
        origin.stop()


@pytest.fixture(scope="module")
def shared_origin():
    origin = Origin(free_port(), SIGNING_SECRET).start()
    yield origin
    origin.stop()


@pytest.fixture(scope="module")
def edge(shared_origin):
    """The main receiver: two secrets (rotation), simple signature off, a 64 KiB body limit."""
    instance = WranglerDev("main", base_config(shared_origin.url))
    instance.start()
    yield instance
    instance.stop()
