#!/usr/bin/env python3
"""A retry storm, with and without an origin's limits (docs/origins.md#limits), under
`wrangler dev` (workerd) on this machine.

Didit's events arrive at a steady rate for the whole run; the origin is down (answers 503) for
the outage, then back. The origin is a small real server with a fixed pool of workers, like an
app server: requests beyond the pool queue, and each takes `--work-ms` once it has a worker.
A request the edge gave up on (its `timeout_ms` passed) is still worked on when its turn comes,
as a real app would, so an overloaded origin does the same event twice under one `webhook-id`.

For each pass (no limits, then `max_concurrency`/`max_per_second`), it prints:
- the most requests the origin received in any `--window` seconds after the outage ended;
- the most it was handling at once;
- the share of events it worked on more than once (the same `webhook-id` twice or more);
- how long after the outage the last event was worked on, and whether every event was.

    .tools/venv/bin/python scripts/bench_storm.py [--rate 65] [--outage 20] [--max-concurrency 4]
        [--max-per-second 90] [--pool 4] [--work-ms 40]

Numbers are for comparison between the passes of one run: this machine is shared and noisy.
"""

import argparse
import json
import pathlib
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

ROOT = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
import didit  # noqa: E402
from harness import DIDIT_SECRET, WranglerDev, base_config, free_port  # noqa: E402


class PooledOrigin:
    """An origin with `pool` workers: each POST waits for a worker, then takes `work_secs`."""

    def __init__(self, pool, work_secs):
        self.port = free_port()
        self.workers = threading.Semaphore(pool)
        self.work_secs = work_secs
        self.lock = threading.Lock()
        self.down = False
        self.arrivals = []  # (time a request arrived, webhook-id) while up
        self.worked = {}  # webhook-id -> times it was worked on
        self.in_flight = 0
        self.peak_in_flight = 0
        origin = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def do_POST(self):
                length = int(self.headers.get("content-length") or 0)
                self.rfile.read(length)
                webhook_id = self.headers.get("webhook-id", "")
                with origin.lock:
                    down = origin.down
                    if not down:
                        origin.arrivals.append((time.time(), webhook_id))
                        origin.in_flight += 1
                        origin.peak_in_flight = max(origin.peak_in_flight, origin.in_flight)
                if down:
                    self.answer(503)
                    return
                try:
                    with origin.workers:
                        time.sleep(origin.work_secs)
                        with origin.lock:
                            origin.worked[webhook_id] = origin.worked.get(webhook_id, 0) + 1
                finally:
                    with origin.lock:
                        origin.in_flight -= 1
                self.answer(204)

            def answer(self, status):
                try:
                    self.send_response(status)
                    self.send_header("content-length", "0")
                    self.end_headers()
                except OSError:
                    pass  # the edge gave up waiting

        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @property
    def url(self):
        return f"http://127.0.0.1:{self.port}/hooks"

    def stop(self):
        self.server.shutdown()
        self.server.server_close()


def send_steadily(edge, rate, seconds, accepted, errors):
    """Didit's side: `rate` signed events a second for `seconds`, each its own session."""
    interval = 1.0 / rate
    start = time.time()
    sent = 0
    lock = threading.Lock()

    def one():
        payload = didit.session_payload()
        body = didit.encode(payload)
        try:
            status, reply = edge.post_webhook(body, didit.signed_headers(body, payload, DIDIT_SECRET))
        except Exception as error:  # noqa: BLE001 (counted, the run goes on)
            with lock:
                errors.append(repr(error))
            return
        with lock:
            if status == 200 and reply.get("status") == "accepted":
                accepted.append(reply["id"])
            else:
                errors.append(f"{status} {reply}")

    threads = []
    while time.time() - start < seconds:
        due = start + sent * interval
        if due > time.time():
            time.sleep(due - time.time())
        thread = threading.Thread(target=one, daemon=True)
        thread.start()
        threads.append(thread)
        sent += 1
    for thread in threads:
        thread.join(timeout=30)


def one_pass(name, args, limits):
    origin = PooledOrigin(args.pool, args.work_ms / 1000)
    entry = {"name": "app", "url": origin.url, "timeout_ms": args.timeout_ms, **limits}
    edge = WranglerDev(f"storm-{name}", base_config(
        origin.url, ORIGINS=json.dumps([entry]), RETRY_SCHEDULE="2,4,8,15x100"))
    edge.start()
    accepted, errors = [], []
    try:
        origin.down = True
        sender = threading.Thread(target=send_steadily,
                                  args=(edge, args.rate, args.outage + args.after, accepted, errors))
        sender.start()
        time.sleep(args.outage)
        with origin.lock:
            origin.down = False
        recovered = time.time()
        sender.join()
        deadline = time.time() + args.settle
        while time.time() < deadline:
            with origin.lock:
                if all(origin.worked.get(id, 0) for id in accepted):
                    break
            time.sleep(0.5)
        with origin.lock:
            arrivals = sorted(at for at, _ in origin.arrivals if at >= recovered)
            worked = dict(origin.worked)
            peak = origin.peak_in_flight
        busiest, j = 0, 0
        for i, at in enumerate(arrivals):
            while arrivals[j] < at - args.window:
                j += 1
            busiest = max(busiest, i - j + 1)
        done = [id for id in accepted if worked.get(id, 0)]
        twice = [id for id in accepted if worked.get(id, 0) > 1]
        last = max((at for at, id in origin.arrivals if id in worked), default=recovered) - recovered
        first_at = {}
        for at, id in origin.arrivals:
            first_at.setdefault(id, at)
        per_window = [0] * (int((last + args.window) // args.window) + 1)
        for at in first_at.values():
            if at >= recovered:
                per_window[int((at - recovered) // args.window)] += 1
        return {
            "pass": name,
            "limits": limits or "none",
            "events accepted": len(accepted),
            "refused or failed sends": len(errors),
            f"most requests in {args.window:g} s after the outage": busiest,
            "most in flight at once": peak,
            "events worked on": f"{len(done)} of {len(accepted)}",
            "worked on more than once": f"{len(twice)} ({100 * len(twice) / max(1, len(accepted)):.1f}%)",
            "requests per event": round(len(origin.arrivals) / max(1, len(accepted)), 2),
            "last request, s after the outage": round(last, 1),
            f"events first worked on, per {args.window:g} s after the outage": per_window,
        }
    finally:
        edge.stop()
        origin.stop()


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rate", type=float, default=65, help="Didit's events a second")
    parser.add_argument("--outage", type=float, default=20, help="seconds the origin answers 503")
    parser.add_argument("--after", type=float, default=10, help="seconds events keep coming after it")
    parser.add_argument("--settle", type=float, default=240, help="longest wait for every event to be worked on")
    parser.add_argument("--pool", type=int, default=4, help="the origin's workers")
    parser.add_argument("--work-ms", type=float, default=40, help="each request's work, once it has a worker")
    parser.add_argument("--timeout-ms", type=int, default=2000, help="the origin's timeout_ms")
    parser.add_argument("--max-concurrency", type=int, default=4)
    parser.add_argument("--max-per-second", type=float, default=90)
    parser.add_argument("--window", type=float, default=10)
    parser.add_argument("--only", choices=["unlimited", "limited"], help="run one pass")
    args = parser.parse_args()
    passes = {
        "unlimited": {},
        "limited": {"max_concurrency": args.max_concurrency, "max_per_second": args.max_per_second},
    }
    results = [one_pass(name, args, limits) for name, limits in passes.items()
               if args.only in (None, name)]
    for result in results:
        print()
        for key, value in result.items():
            print(f"  {key:<44} {value}")


if __name__ == "__main__":
    main()
