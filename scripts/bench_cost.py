#!/usr/bin/env python3
"""What a million events cost on Cloudflare: didit-edge against the JS Worker a user would
otherwise write (bench/js-baseline), both under `wrangler dev` on this machine, in one run.

Per scenario it counts, per event, for both targets: Worker invocations; Durable Object requests
(fetches into objects, alarms, WebSocket messages at 20:1); SQLite rows read and written (the
cursors' own `rowsRead` / `rowsWritten`); `setAlarm()` calls (billed as one row written each) and
`deleteAlarm()`; subrequests (outbound `fetch`; not billed) and Durable Object stub calls; the
objects' active wall time (billed duration: the union, per object, of the time a handler runs
or a `state.waitUntil` promise is pending); bytes kept (`storage.sql.databaseSize`) and for how
long at the default retention; and, in a separate pass on the uninstrumented builds, workerd
CPU ms (user + system from /proc, as scripts/bench_compare.py). Then it prices each term at
Cloudflare's Workers Paid prices (marginal usage: the monthly included allowances and the $5
base are ignored) and prints $ per million events side by side, the ratio, and the term that
dominates.

The counts come from bench/cost/instrument.mjs, one module wrapped around either Worker's own
module by a generated entry (under .tools/bench-cost/), so neither Worker is changed.

    .tools/venv/bin/python scripts/bench_cost.py [--events 100] [--sessions 1000]
    .tools/venv/bin/python scripts/bench_cost.py --quick     # a smoke check: fails if counting breaks
"""

import argparse
import json
import os
import pathlib
import re
import shutil
import sys
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

ROOT = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "scripts"))
import didit  # noqa: E402
from bench_compare import payload_of_size, workerd_cpu_ms  # noqa: E402
from harness import ADMIN_TOKEN, DIDIT_SECRET, SIGNING_SECRET, WranglerDev, base_config, free_port  # noqa: E402

# Cloudflare Workers Paid, marginal prices as published on 2026-12-07:
# https://developers.cloudflare.com/workers/platform/pricing/
# https://developers.cloudflare.com/durable-objects/platform/pricing/
PRICES_DATE = "2026-12-07"
WORKER_REQUEST = 0.30 / 1e6  # $ per Worker invocation
CPU_MS = 0.02 / 1e6  # $ per CPU-ms
DO_REQUEST = 0.15 / 1e6  # $ per Durable Object request (WebSocket messages at 20:1)
GB_S = 12.50 / 1e6  # $ per GB-s of Durable Object duration
DO_GB = 128 / 1024  # duration is billed at 128 MB per object
ROW_READ = 0.001 / 1e6
ROW_WRITTEN = 1.00 / 1e6  # each setAlarm() is billed as one row written
GB_MONTH = 0.20  # $ per GB-month stored
LOG_EVENT = 0.60 / 1e6  # Workers Logs: each invocation's log and each custom log line is one event
MONTH_DAYS = 30.44

# Default retention (wrangler.toml [vars], docs/configuration.md): a delivered event's payload
# goes at once (PAYLOAD_RETENTION_SECS 0), its record after DEDUP_TTL_SECS.
DEDUP_TTL_DAYS = 604800 / 86400
BODY_BYTES = 3000
QUIET_SECS = 1.5
JS_RETRY_MS = 5000  # the JS baseline's fixed retry wait
RUST_RETRY_SCHEDULE = "5x20"  # the same wait for didit-edge, no jitter
RECHECK_SECS = 90  # RECONCILE_RECHECK_SECS of the reconciliation scenario (default 3600)


class Origin:
    """Paths /a and /b on 127.0.0.1. Notes each webhook-id it took (2xx) per path; with
    `fail_first`, answers a webhook-id's first request on each path 503."""

    def __init__(self):
        self.port = free_port()
        self.lock = threading.Lock()
        self.took = {}  # path -> set of webhook-ids answered 2xx
        self.seen = {}  # (path, id) -> requests
        self.fail_first = False
        self.requests = 0
        origin = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_POST(self):
                self.rfile.read(int(self.headers.get("content-length") or 0))
                event_id = self.headers.get("webhook-id")
                with origin.lock:
                    origin.requests += 1
                    key = (self.path, event_id)
                    origin.seen[key] = origin.seen.get(key, 0) + 1
                    status = 503 if origin.fail_first and origin.seen[key] == 1 else 204
                    if status == 204:
                        origin.took.setdefault(self.path, set()).add(event_id)
                self.send_response(status)
                self.send_header("content-length", "0")
                self.end_headers()

        class Server(ThreadingHTTPServer):
            daemon_threads = True

        self.server = Server(("127.0.0.1", self.port), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def url(self, path):
        return f"http://127.0.0.1:{self.port}/{path}"

    def has_all(self, ids, paths):
        with self.lock:
            return all(i in self.took.get(f"/{p}", ()) for i in ids for p in paths)

    def stop(self):
        self.server.shutdown()
        self.server.server_close()


# --- the targets, instrumented or not ------------------------------------------------------------

GENERATED = ROOT / ".tools" / "bench-cost"


def generated_config(target, instrumented):
    """A copy of the target's wrangler configuration with `main` pointing at a generated entry
    that wraps its module (instrumented), or at its own module (not), under .tools/bench-cost/."""
    where = GENERATED / f"{target}-{'counted' if instrumented else 'plain'}"
    where.mkdir(parents=True, exist_ok=True)
    up = os.path.relpath(ROOT, where)
    if target == "rust":
        text = (ROOT / "wrangler.toml").read_text()
        module = "edge-worker/build/index.js"
        replacements = {
            'command = "bash scripts/build.sh"': f'command = "bash {ROOT / "scripts" / "build.sh"}"',
            'watch_dir = ["edge-worker/src", "core/src"]': f'watch_dir = ["{up}/edge-worker/src", "{up}/core/src"]',
            'directory = "web"': f'directory = "{up}/web"',
        }
    else:
        text = (ROOT / "bench" / "js-baseline" / "wrangler.toml").read_text()
        module = "bench/js-baseline/src/index.js"
        replacements = {}
    old_main = f'main = "{module}"' if target == "rust" else 'main = "src/index.js"'
    replacements[old_main] = f'main = "{"entry.mjs" if instrumented else f"{up}/{module}"}"'
    for old, new in replacements.items():
        assert old in text, f"{target}'s wrangler configuration no longer has {old!r}"
        text = text.replace(old, new, 1)
    # Only the top level (what wrangler dev runs) is kept: the environments repeat the classes.
    text = text.split("\n[env.", 1)[0]
    classes = sorted(set(re.findall(r'class_name = "(\w+)"', text)))
    lines = [f'import * as target from "{up}/{module}";',
             f'import {{ instrumentEntry, instrumentObject }} from "{up}/bench/cost/instrument.mjs";',
             "export default instrumentEntry(target.default);"]
    lines += [f'export const {name} = instrumentObject(target.{name}, "{name}");' for name in classes]
    (where / "entry.mjs").write_text("// Generated by scripts/bench_cost.py.\n" + "\n".join(lines) + "\n")
    (where / "wrangler.toml").write_text(text)
    return where / "wrangler.toml"


def settings(target, origin, paths, **rust_overrides):
    if target == "js":
        urls = ",".join(origin.url(p) for p in paths)
        return {"DIDIT_WEBHOOK_SECRET": DIDIT_SECRET, "ORIGIN_SIGNING_SECRET": SIGNING_SECRET, "ORIGIN_URLS": urls}
    origins = [{"name": f"origin-{p}", "url": origin.url(p), "timeout_ms": 10000, "consumer": f"consumer-{p}"}
               for p in paths]
    config = base_config(origin.url(paths[0]), ORIGINS=json.dumps(origins), MAX_BODY_BYTES="1048576",
                         RETRY_SCHEDULE=RUST_RETRY_SCHEDULE, RETRY_JITTER_PERCENT="0")
    config.update(rust_overrides)
    return config


def start(name, target, instrumented, config):
    edge = WranglerDev(f"cost-{name}-{target}-{'counted' if instrumented else 'plain'}", config,
                       wrangler_config=generated_config(target, instrumented))
    edge.start()
    edge.log_offset = 0
    return edge


def stop(edge):
    edge.stop()
    shutil.rmtree(edge.persist_dir, ignore_errors=True)


# --- reading the counts -------------------------------------------------------------------------

ANSI = re.compile(r"\x1b\[[0-9;]*m")


def log_records(edge, since=0):
    """(byte offset after, cost records, other JSON log lines) from `since`."""
    raw = edge.log_path.read_bytes()
    end = raw.rfind(b"\n", since) + 1 if raw.rfind(b"\n", since) >= since else since
    costs, others = [], []
    for line in raw[since:end].decode(errors="replace").splitlines():
        line = ANSI.sub("", line)
        start_at = line.find("{")
        if start_at < 0:
            continue
        try:
            record = json.loads(line[start_at:])
        except ValueError:
            continue
        if isinstance(record, dict) and "cost" in record:
            costs.append(record["cost"])
        elif isinstance(record, dict):
            others.append(record)
    return end, costs, others


def quiet(edge, instrumented, timeout=60):
    """Waits until the Worker has logged nothing for QUIET_SECS (every object idle)."""
    if not instrumented:
        time.sleep(QUIET_SECS)
        return
    deadline = time.time() + timeout
    size = -1
    still_since = time.time()
    while time.time() < deadline:
        now_size = edge.log_path.stat().st_size
        if now_size != size:
            size, still_since = now_size, time.time()
        elif time.time() - still_since >= QUIET_SECS:
            return
        time.sleep(0.1)


def totals(costs):
    t = {"worker_invocations": 0, "do_requests": 0.0, "do_fetches": 0, "alarms": 0, "ws_messages": 0,
         "rows_read": 0, "rows_written": 0, "set_alarm": 0, "delete_alarm": 0, "delete_all": 0, "subrequests": 0,
         "active_ms": 0, "statements": 0, "log_lines": 0}
    sizes = {}
    for c in costs:
        t["subrequests"] += c.get("subrequests", 0)
        t["log_lines"] += c.get("log_lines", 0)
        if c["kind"] == "worker":
            t["worker_invocations"] += 1
            continue
        r = c["requests"]
        t["do_fetches"] += r["fetch"]
        t["alarms"] += r["alarm"]
        t["ws_messages"] += r["ws_message"]
        t["do_requests"] += r["fetch"] + r["alarm"] + r["ws_message"] / 20
        for key in ("rows_read", "rows_written", "set_alarm", "delete_alarm", "delete_all", "active_ms", "statements"):
            t[key] += c[key]
        if c.get("database_size") is not None:
            sizes[f'{c["class"]}:{c["object"]}'] = c["database_size"]
    t["sizes"] = sizes
    return t


def per_event(t, events):
    return {k: (v / events if isinstance(v, (int, float)) else v) for k, v in t.items()}


def log_events(p):
    """Workers Logs' events: an invocation log per Worker invocation, Durable Object request and
    alarm (observability on, as wrangler.toml has it and new Workers have by default), plus each
    custom log line."""
    return p["worker_invocations"] + p["do_fetches"] + p["alarms"] + p.get("log_lines", 0)


def priced(p):
    """$ per million events of each term, from per-event counts `p`."""
    m = 1e6
    return {
        "Worker requests": p["worker_invocations"] * WORKER_REQUEST * m,
        "Worker CPU": (p.get("cpu_ms") or 0.0) * CPU_MS * m,
        "DO requests": p["do_requests"] * DO_REQUEST * m,
        "DO duration": p["active_ms"] / 1000 * DO_GB * GB_S * m,
        "rows read": p["rows_read"] * ROW_READ * m,
        "rows written": (p["rows_written"] + p["set_alarm"]) * ROW_WRITTEN * m,
        "log events": log_events(p) * LOG_EVENT * m,
        "storage": p.get("storage_usd", 0.0) * m,
    }


# --- scenarios ----------------------------------------------------------------------------------

def deliver(edge, payload, secret=DIDIT_SECRET, expect=200):
    body = didit.encode(payload)
    status, reply = edge.post_webhook(body, didit.signed_headers(body, payload, secret, kinds=("raw", "v2", "simple")))
    if status != expect:
        raise SystemExit(f"{edge.name}: expected {expect}, got {status}: {reply}")
    return reply


def wait_delivered(origin, ids, paths, timeout=180):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if origin.has_all(ids, paths):
            return True
        time.sleep(0.05)
    return False


def measured(edge, instrumented, events, run):
    """Runs `run()` (which returns whether everything it sent was delivered) between two quiet
    points; returns the counts of that window and workerd's CPU over it."""
    quiet(edge, instrumented)
    edge.log_offset, _, _ = log_records(edge, edge.log_offset)
    cpu_before = workerd_cpu_ms(edge.process.pid)
    started = time.time()
    delivered = run()
    cpu = workerd_cpu_ms(edge.process.pid) - cpu_before
    wall = time.time() - started
    quiet(edge, instrumented)
    edge.log_offset, costs, _ = log_records(edge, edge.log_offset)
    return {"events": events, "totals": totals(costs), "cpu_ms": cpu, "wall_s": wall, "delivered": delivered}


def scenario_normal(edge, origin, n, paths=("a",)):
    ids = []
    for _ in range(n):
        ids.append(deliver(edge, payload_of_size(BODY_BYTES))["id"])
    return wait_delivered(origin, ids, paths)


def scenario_retried(edge, origin, n):
    """Each event's first attempt answered 503, the retry 204. Two at a time, so that the
    origin's breaker (3 failures in a row open it) stays closed: each failure is alone."""
    origin.fail_first = True
    try:
        ok = True
        for first in range(0, n, 2):
            ids = [deliver(edge, payload_of_size(BODY_BYTES))["id"] for _ in range(min(2, n - first))]
            ok = wait_delivered(origin, ids, ("a",), timeout=60) and ok
        return ok
    finally:
        origin.fail_first = False


def scenario_duplicate(edge, origin, n):
    """Didit's retry: each delivery again once the first was delivered (answered `duplicate`)."""
    ok = True
    for _ in range(n):
        payload = payload_of_size(BODY_BYTES)
        body = didit.encode(payload)
        headers = didit.signed_headers(body, payload, DIDIT_SECRET, kinds=("raw", "v2", "simple"))
        status, reply = edge.post_webhook(body, headers)
        assert status == 200 and reply["status"] == "accepted", reply
        ok = wait_delivered(origin, [reply["id"]], ("a",), timeout=30) and ok
        status, again = edge.post_webhook(body, headers)
        assert status == 200 and again["status"] == "duplicate", again
    return ok


def scenario_forged(edge, origin, n):
    for _ in range(n):
        deliver(edge, payload_of_size(BODY_BYTES), secret="not-the-didit-secret", expect=401)
    return True


def warm_up(edge, origin, n, paths):
    scenario_normal(edge, origin, n, paths)


# --- the passes ---------------------------------------------------------------------------------

def main_instance(target, instrumented, args, results, order):
    """Scenarios 1, 3, 4, 5 on one Worker with one origin."""
    origin = Origin()
    edge = start("one", target, instrumented, settings(target, origin, ("a",)))
    try:
        warm_up(edge, origin, args.warmup, ("a",))
        n = args.events
        plan = [("normal", lambda: scenario_normal(edge, origin, n)),
                ("retried", lambda: scenario_retried(edge, origin, args.retried)),
                ("duplicate", lambda: scenario_duplicate(edge, origin, n)),
                ("forged", lambda: scenario_forged(edge, origin, n))]
        for name, run in plan:
            events = args.retried if name == "retried" else n
            results[(name, target)] = measured(edge, instrumented, events, run)
            order.append(name) if name not in order else None
    finally:
        stop(edge)
        origin.stop()


def two_consumers(target, instrumented, args, results, order):
    origin = Origin()
    edge = start("two", target, instrumented, settings(target, origin, ("a", "b")))
    try:
        warm_up(edge, origin, args.warmup, ("a", "b"))
        results[("two consumers", target)] = measured(
            edge, instrumented, args.events, lambda: scenario_normal(edge, origin, args.events, ("a", "b")))
    finally:
        stop(edge)
        origin.stop()


def reconciliation(instrumented, args, results):
    """didit-edge only: a sweep over `args.sessions` sessions whose webhooks all came, then the
    next sweep (nothing changed: nothing is asked again within RECONCILE_RECHECK_SECS), then
    (not with --quick) the recheck: RECONCILE_RECHECK_SECS later every session is asked again,
    which with the defaults happens every hour for each session in the 3-day lookback."""
    from fake_didit_api import FakeDiditApi

    api_key = "didit-api-key-for-the-bench"
    api = FakeDiditApi(free_port(), api_key).start()
    origin = Origin()
    config = settings("rust", origin, ("a",), ADMIN_TOKEN=ADMIN_TOKEN, DIDIT_API_KEY=api_key,
                      DIDIT_API_BASE_URL=api.base_url, RECONCILE_SETTLE_SECS="0",
                      RECONCILE_INTERVAL_SECS="10", RECONCILE_REQUESTS_PER_RUN="1000",
                      RECONCILE_RECHECK_SECS=str(RECHECK_SECS))
    edge = start("reconcile", "rust", instrumented, config)

    def sweeps_done():
        return [r for r in edge.log_events("reconcile_run") if (r.get("run") or {}).get("ended") == "sweep_done"]

    def wait_sweep(after, timeout=300):
        deadline = time.time() + timeout
        while time.time() < deadline:
            done = sweeps_done()
            if len(done) > after:
                return done[after]
            time.sleep(0.2)
        raise SystemExit("reconciliation: no sweep finished in time")

    try:
        edge.run_cron()  # switched on: the first sweep finds nothing older than now
        wait_sweep(0)
        # The sessions' webhooks first (delivered); Didit's API lists them only afterwards, so
        # the sweeps before hold nothing to compare.
        sessions = [str(uuid.uuid4()) for _ in range(args.sessions)]
        ids = [deliver(edge, didit.session_payload(session_id=s, status="Approved"))["id"] for s in sessions]
        if not wait_delivered(origin, ids, ("a",)):
            raise SystemExit("reconciliation: the sessions' webhooks were not all delivered")
        quiet(edge, instrumented)

        def wait_runs(since, sessions, timeout=300):
            """Until the runs after the `since`-th have checked `sessions` sessions and the last
            ended its sweep; returns how many runs there are then."""
            deadline = time.time() + timeout
            while time.time() < deadline:
                runs = [line.get("run") or {} for line in edge.log_events("reconcile_run")]
                after = runs[since:]
                if (after and after[-1].get("ended") == "sweep_done"
                        and sum(r.get("sessions_checked", 0) for r in after) >= sessions):
                    return len(runs)
                time.sleep(0.2)
            raise SystemExit("reconciliation: no sweep finished in time")

        runs_before = len(edge.log_events("reconcile_run"))
        marks = {}

        def run_first():
            for s in sessions:
                api.add_session(s, "Approved")
            marks["first"] = wait_runs(runs_before, args.sessions)
            return True

        results[("sweep", "rust")] = measured(edge, instrumented, args.sessions, run_first)
        results[("sweep", "rust")]["report"] = summed_runs(edge.log_events("reconcile_run")[runs_before:marks["first"]])

        def run_next():
            marks["next"] = wait_runs(marks["first"], args.sessions)
            return True

        results[("next sweep", "rust")] = measured(edge, instrumented, args.sessions, run_next)
        results[("next sweep", "rust")]["report"] = summed_runs(
            edge.log_events("reconcile_run")[marks["first"]:marks["next"]])
        if args.quick:
            return

        def asks(runs):
            return sum(run.get("requests", 0) - run.get("pages", 0) for run in runs)

        def run_recheck(timeout=RECHECK_SECS + 300):
            """Until every session was asked again and the sweep that asked the last ended."""
            deadline = time.time() + timeout
            while time.time() < deadline:
                runs = [line.get("run") or {} for line in edge.log_events("reconcile_run")]
                after = runs[marks["next"]:]
                if after and after[-1].get("ended") == "sweep_done" and asks(after) >= args.sessions:
                    marks["recheck"] = len(runs)
                    return True
                time.sleep(0.2)
            raise SystemExit("reconciliation: the sessions were not asked again in time")

        # The window holds the sweeps that asked nothing while the recheck was not yet due;
        # each is priced as the next sweep measured above and taken off.
        recheck = measured(edge, instrumented, args.sessions, run_recheck)
        lines = edge.log_events("reconcile_run")[marks["next"]:marks["recheck"]]
        recheck["report"] = summed_runs(lines)
        sweeps = [line["run"] for line in lines if (line.get("run") or {}).get("ended") == "sweep_done"]
        idle = sum(1 for run in sweeps if asks([run]) == 0)
        empty = results[("next sweep", "rust")]["totals"]
        for key, value in empty.items():
            if isinstance(value, (int, float)):
                recheck["totals"][key] -= idle * value
        recheck["cpu_ms"] -= idle * results[("next sweep", "rust")]["cpu_ms"]
        recheck["report"]["idle_sweeps_taken_off"] = idle
        results[("recheck", "rust")] = recheck
    finally:
        stop(edge)
        origin.stop()
        api.stop()


def summed_runs(lines):
    """The reconciler's runs of one sweep (a sweep over its budget continues in a later run)."""
    runs = [line["run"] for line in lines if line.get("run")]
    summed = {key: sum(run[key] for run in runs) for key in ("pages", "sessions_checked", "requests", "gaps_found")}
    summed["runs"] = len(runs)
    return summed


def retention_end(args, results):
    """didit-edge only: what an event costs when its record is forgotten. Events whose Didit
    timestamp is ~10 minutes old, with DEDUP_TTL_SECS=1: the record goes at its timestamp plus
    the tolerance (a replay must stay a known duplicate), ~12 s after delivery."""
    origin = Origin()
    edge = start("expiry", "rust", True, settings("rust", origin, ("a",), DEDUP_TTL_SECS="1"))
    try:
        warm_up(edge, origin, 3, ("a",))
        time.sleep(15)  # the warm-up's records go too
        n = args.expiring

        def send():
            ids = []
            for _ in range(n):
                payload = payload_of_size(BODY_BYTES)
                payload["timestamp"] = int(time.time()) - 588
                ids.append(deliver(edge, payload)["id"])
            return wait_delivered(origin, ids, ("a",))

        results[("delivered, short TTL", "rust")] = measured(edge, True, n, send)

        def expire():
            time.sleep(20)
            return True

        results[("retention end", "rust")] = measured(edge, True, n, expire)
    finally:
        stop(edge)
        origin.stop()


# --- the report -----------------------------------------------------------------------------------

COUNT_ROWS = [("Worker invocations", "worker_invocations"), ("DO requests", "do_requests"),
              ("  of which fetches (stub calls)", "do_fetches"), ("  of which alarms", "alarms"),
              ("rows read", "rows_read"), ("rows written", "rows_written"), ("setAlarm()", "set_alarm"),
              ("deleteAlarm()", "delete_alarm"), ("deleteAll()", "delete_all"),
              ("subrequests (not billed)", "subrequests"), ("custom log lines", "log_lines"),
              ("DO active ms", "active_ms"), ("CPU ms (uninstrumented)", "cpu_ms")]
TARGET_LABEL = {"rust": "didit-edge", "js": "JS baseline"}


def fmt(value, digits=3):
    if value is None:
        return "n/a"
    return f"{value:.{digits}f}"


def storage_terms(results):
    """Bytes an event keeps and for how long; $ per event for its first 30 days."""
    out = {}
    for target in ("rust", "js"):
        result = results.get(("normal", target))
        if not result:
            continue
        inbox = [size for key, size in result["totals"]["sizes"].items() if key.startswith("Inbox:")]
        kept = sum(inbox) / len(inbox) if inbox else 0
        if target == "rust":
            forgotten = results.get(("retention end", "rust"))
            sizes = [s for key, s in forgotten["totals"]["sizes"].items() if key.startswith("Inbox:")] if forgotten else []
            residual = sum(sizes) / len(sizes) if sizes else kept
            # An object whose data was all removed with deleteAll() is not billed for storage any
            # more, whatever workerd reports locally for its (empty) database file.
            released = bool(forgotten) and forgotten["totals"].get("delete_all", 0) >= forgotten["events"]
            out_local = residual
            if released:
                residual = 0
            days_kept = DEDUP_TTL_DAYS
        else:
            residual, days_kept = kept, 30  # nothing is ever removed
        gb_months = (kept * days_kept + residual * (30 - days_kept)) / 1e9 / MONTH_DAYS
        if target == "js":
            released, out_local = False, residual
        out[target] = {"kept_bytes": kept, "kept_days": days_kept, "residual_bytes": residual,
                       "released": released, "local_residual_bytes": out_local,
                       "usd_first_30_days": gb_months * GB_MONTH,
                       "usd_per_month_after": residual / 1e9 * GB_MONTH}
    return out


def report(results, cpu, order, args):
    # CPU from the uninstrumented pass joins the counts.
    for key, r in results.items():
        r["per_event"] = per_event(r["totals"], r["events"])
        r["per_event"]["cpu_ms"] = cpu[key]["cpu_ms"] / cpu[key]["events"] if key in cpu else None
    storage = storage_terms(results)
    print(f"\nPrices: Cloudflare Workers Paid, marginal (included allowances and the $5/month base ignored), "
          f"as published on {PRICES_DATE}.")
    print(f"~{BODY_BYTES // 1000} KB bodies, all three signatures, one new session per event; "
          f"wrangler dev on this machine.\n")
    summary = []
    for name in order:
        print(f"== {name}")
        rust, js = results.get((name, "rust")), results.get((name, "js"))
        print(f"{'per event':34} {'didit-edge':>12} {'JS baseline':>12} {'ratio':>7}")
        for label, key in COUNT_ROWS:
            a = rust["per_event"].get(key) if rust else None
            b = js["per_event"].get(key) if js else None
            ratio = f"{a / b:6.2f}x" if a is not None and b else ""
            print(f"{label:34} {fmt(a):>12} {fmt(b):>12} {ratio:>7}")
        pa = priced(rust["per_event"]) if rust else None
        pb = priced(js["per_event"]) if js else None
        print(f"{'$ per million events':34}")
        for term in (pa or pb):
            if term == "storage":
                continue
            a = pa[term] if pa else None
            b = pb[term] if pb else None
            ratio = f"{a / b:6.2f}x" if a is not None and b else ""
            print(f"  {term:32} {fmt(a, 4):>12} {fmt(b, 4):>12} {ratio:>7}")
        ta = sum(v for k, v in pa.items() if k != "storage") if pa else None
        tb = sum(v for k, v in pb.items() if k != "storage") if pb else None
        ratio = f"{ta / tb:6.2f}x" if ta is not None and tb else ""
        print(f"  {'total (without storage)':32} {fmt(ta, 4):>12} {fmt(tb, 4):>12} {ratio:>7}")
        if js is None:
            print("  the JS baseline has no such feature: n/a")
        if "report" in (rust or {}):
            rep = rust["report"]
            print(f"  {rust['events']} sessions: {rep.get('runs', 1)} runs, {rep['sessions_checked']} sessions checked, "
                  f"{rep['pages']} list pages, {rep['requests']} requests; per sweep: {ta * rust['events'] / 1e6:.6f} $ "
                  f"(the column above is per million sessions)")
            if "idle_sweeps_taken_off" in rep:
                print(f"  {rep['idle_sweeps_taken_off']} sweeps in the window asked nothing (the recheck was not due "
                      f"yet); each is priced as the next sweep's and taken off")
        if not (rust or {}).get("delivered", True) or not (js or {}).get("delivered", True):
            print("  NOT every event was delivered")
        summary.append((name, pa, pb, ta, tb))
        print()
    print("== storage at the default retention (databaseSize of the 'normal' scenario's inboxes, one per event)")
    for target, st in storage.items():
        if target == "rust":
            if st["released"]:
                after = (f"then nothing: the inbox releases its storage with deleteAll() once its last record is "
                         f"forgotten (workerd still reports {st['local_residual_bytes'] / 1024:.1f} KiB for the empty "
                         f"file locally; Cloudflare bills no data once it is removed)")
            else:
                after = (f"{st['residual_bytes'] / 1024:.1f} KiB after it is forgotten, for as long as the object "
                         f"exists (its storage is never deleted)")
            print(f"didit-edge   {st['kept_bytes'] / 1024:.1f} KiB per event while its record is kept ({DEDUP_TTL_DAYS:g} days, "
                  f"DEDUP_TTL_SECS), {after}")
        else:
            print(f"JS baseline  {st['kept_bytes'] / 1024:.1f} KiB per event, for ever (nothing is ever removed)")
        print(f"{'':12} first 30 days: {st['usd_first_30_days'] * 1e6:.4f} $/M events; then "
              f"{st['usd_per_month_after'] * 1e6:.4f} $/M events every month; at 1 M events a day the stored data grows by "
              f"{st['residual_bytes'] * 1e6 / 1e9:.1f} GB a day")
    if ("retention end", "rust") in results:
        pe = results[("retention end", "rust")]["per_event"]
        print(f"didit-edge   the record's end, {DEDUP_TTL_DAYS:g} days later, per event: {pe['do_requests']:.2f} DO requests, "
              f"{pe['rows_read']:.1f} rows read, {pe['rows_written']:.1f} rows written, {pe['set_alarm']:.2f} setAlarm, "
              f"{pe['delete_alarm']:.2f} deleteAlarm, {pe.get('delete_all', 0):.2f} deleteAll, {pe['active_ms']:.1f} ms active: "
              f"{sum(v for k, v in priced(pe).items() if k != 'storage'):.4f} $/M events")
    print("\n== summary: $ per million events (sweeps: per million sessions swept)")
    print("   normal, two consumers, retried, duplicate: with the first 30 days of storage and, for didit-edge, the record's end")
    print(f"{'scenario':16} {'didit-edge':>11} {'JS baseline':>12} {'ratio':>7}  dominant term: didit-edge / JS")
    delivered = ("normal", "two consumers", "retried", "duplicate")
    end_terms = {}
    if ("retention end", "rust") in results:
        end_terms = priced(results[("retention end", "rust")]["per_event"])
    for name, pa, pb, ta, tb in summary:
        terms = []
        for target, p in (("rust", pa), ("js", pb)):
            if p is None:
                terms.append(None)
                continue
            p = dict(p)
            if name in delivered:
                p["storage"] = storage.get(target, {}).get("usd_first_30_days", 0.0) * 1e6
                if target == "rust":
                    for k, v in end_terms.items():
                        p[k] = p.get(k, 0.0) + v
            terms.append(p)
        a = sum(terms[0].values()) if terms[0] else None
        b = sum(terms[1].values()) if terms[1] else None
        dom = [max(t, key=t.get) + f" ({t[max(t, key=t.get)] / sum(t.values()):.0%})" if t and sum(t.values()) else "n/a"
               for t in terms]
        ratio = f"{a / b:6.2f}x" if a is not None and b else "   n/a"
        print(f"{name:16} {fmt(a, 4):>11} {fmt(b, 4):>12} {ratio:>7}  {dom[0]} / {dom[1]}")
    print("\n" + json.dumps({f"{k[0]}:{k[1]}": {m: v for m, v in r["per_event"].items() if m != "sizes"}
                            for k, r in results.items()}))


def check(results, order):
    """The smoke check of --quick: counting works and every event was delivered."""
    problems = []
    for (name, target), r in results.items():
        if not r["delivered"]:
            problems.append(f"{name} ({target}): not every event was delivered")
        t = r["totals"]
        if name in ("normal", "two consumers", "retried", "duplicate", "sweep") and t["do_requests"] == 0:
            problems.append(f"{name} ({target}): no Durable Object request counted")
        if name in ("normal", "two consumers", "retried", "duplicate", "forged") and t["worker_invocations"] == 0:
            problems.append(f"{name} ({target}): no Worker invocation counted")
        if name in ("normal", "two consumers", "retried") and (t["rows_written"] == 0 or t["subrequests"] == 0):
            problems.append(f"{name} ({target}): no rows written or no subrequest counted")
        if name == "normal" and not t["sizes"]:
            problems.append(f"{name} ({target}): no database size read")
    return problems


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=100, help="events per scenario")
    parser.add_argument("--retried", type=int, default=20, help="events of the retry scenario (each waits a retry)")
    parser.add_argument("--sessions", type=int, default=1000, help="sessions of the reconciliation sweep")
    parser.add_argument("--expiring", type=int, default=20, help="events whose record end is counted")
    parser.add_argument("--warmup", type=int, default=30, help="deliveries before measuring, per Worker")
    parser.add_argument("--quick", action="store_true",
                        help="a smoke check (few events, 50 sessions, no CPU pass); fails if counting breaks")
    parser.add_argument("--no-cpu", action="store_true", help="skip the uninstrumented CPU pass")
    parser.add_argument("--only-reconcile", action="store_true",
                        help="measure only the sweeps and merge them into the saved counts of the last full run")
    parser.add_argument("--report", metavar="JSON", help="print the report of an earlier run's saved counts again")
    args = parser.parse_args()
    if args.report:
        saved = json.loads(pathlib.Path(args.report).read_text())
        unkey = lambda d: {tuple(k.split("|")): v for k, v in d.items()}  # noqa: E731
        results, cpu = unkey(saved["results"]), unkey(saved["cpu"])
        report(results, cpu, saved["order"], args)
        return
    if args.quick:
        args.events, args.retried, args.sessions, args.expiring, args.warmup, args.no_cpu = 6, 2, 50, 3, 3, True
    started = time.time()
    results, cpu, order = {}, {}, []
    saved = GENERATED / ("last-quick.json" if args.quick else "last.json")
    unkey = lambda d: {tuple(k.split("|")): v for k, v in d.items()}  # noqa: E731
    if args.only_reconcile:
        previous = json.loads(saved.read_text())
        results, cpu, order = unkey(previous["results"]), unkey(previous["cpu"]), previous["order"]
        order = [name for name in order if name != "recheck"] + ["recheck"]
    else:
        for target in ("rust", "js"):
            main_instance(target, True, args, results, order)
            two_consumers(target, True, args, results, order)
        order.insert(1, "two consumers")
        order = list(dict.fromkeys(order)) + ["sweep", "next sweep"] + ([] if args.quick else ["recheck"])
    reconciliation(True, args, results)
    if not args.only_reconcile:
        retention_end(args, results)
    if not args.no_cpu:
        if not args.only_reconcile:
            for target in ("rust", "js"):
                main_instance(target, False, args, cpu, [])
                two_consumers(target, False, args, cpu, [])
        reconciliation(False, args, cpu)
    GENERATED.mkdir(parents=True, exist_ok=True)
    key = lambda d: {"|".join(k): v for k, v in d.items()}  # noqa: E731
    saved.write_text(json.dumps({"results": key(results), "cpu": key(cpu), "order": order}))
    report(results, cpu, order, args)
    print(f"\n({time.time() - started:.0f} s; counts saved in {saved.relative_to(ROOT)})")
    problems = check(results, order)
    if problems:
        print("\nCOUNTING BROKE:\n  " + "\n  ".join(problems))
        sys.exit(1)


if __name__ == "__main__":
    main()
