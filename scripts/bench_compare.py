#!/usr/bin/env python3
"""didit-edge against the JS Worker a user would otherwise write (bench/js-baseline), both
under `wrangler dev` on this machine, in one run, with the same fast loopback origin and the
same client: Didit's deliveries from 8 concurrent clients, one new session each.

Per target and body size it prints: POST → 200 (accept) p50/p99, POST → origin has it p50/p99,
accepted per second, and workerd CPU milliseconds per event (user + system time of the
target's workerd processes, read from /proc, from the first delivery until the last event
reached the origin), then the Rust/JS ratios. Numbers are for comparison in one run, not
absolutes: this machine is shared and noisy.

    .tools/venv/bin/python scripts/bench_compare.py [--events 400] [--clients 8] [--rounds 3]

With --forged it measures instead what an unauthenticated delivery costs didit-edge: workerd CPU
per request for genuine ~1 MiB deliveries (accepted, stored and delivered), then for the same
bodies signed with a wrong secret, with only `X-Signature-V2` and with all three headers.

    .tools/venv/bin/python scripts/bench_compare.py --forged [--events 100]
"""

import argparse
import json
import os
import pathlib
import shutil
import statistics
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

ROOT = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
import didit  # noqa: E402
from harness import DIDIT_SECRET, SIGNING_SECRET, WranglerDev, base_config, free_port  # noqa: E402


class FastOrigin:
    """Answers every POST 204 at once and notes when each webhook-id first arrived."""

    def __init__(self):
        self.port = free_port()
        self.arrived = {}
        self.lock = threading.Lock()
        origin = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_POST(self):
                self.rfile.read(int(self.headers.get("content-length") or 0))
                event_id = self.headers.get("webhook-id")
                with origin.lock:
                    origin.arrived.setdefault(event_id, time.time())
                self.send_response(204)
                self.send_header("content-length", "0")
                self.end_headers()

        class Server(ThreadingHTTPServer):
            request_queue_size = 256
            daemon_threads = True

        self.server = Server(("127.0.0.1", self.port), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @property
    def url(self):
        return f"http://127.0.0.1:{self.port}/events"

    def stop(self):
        self.server.shutdown()
        self.server.server_close()


def workerd_cpu_ms(process_group):
    """User + system CPU time of the workerd processes of one wrangler process group."""
    ticks = 0
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            stat = pathlib.Path(f"/proc/{pid}/stat").read_text()
        except OSError:
            continue
        name = stat[stat.index("(") + 1:stat.rindex(")")]
        fields = stat[stat.rindex(")") + 2:].split()
        if int(fields[2]) == process_group and "workerd" in name:
            ticks += int(fields[11]) + int(fields[12])
    return ticks * 1000 / os.sysconf("SC_CLK_TCK")


def percentile(values, fraction):
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def payload_of_size(size):
    payload = didit.session_payload()
    base = len(didit.encode(payload))
    if size > base:
        payload["metadata"]["notes"] = "n" * (size - base - 12)
    return payload


def run(edge, origin, size, events, clients):
    """One measured batch; returns the figures."""
    deliveries = []
    for _ in range(events):
        payload = payload_of_size(size)
        body = didit.encode(payload)
        deliveries.append((body, didit.signed_headers(body, payload, DIDIT_SECRET, kinds=("raw", "v2", "simple"))))
    sent_at, accept_ms = {}, []
    lock = threading.Lock()

    def send(delivery):
        body, headers = delivery
        wall = time.time()
        start = time.perf_counter()
        status, reply = edge.post_webhook(body, headers)
        elapsed = (time.perf_counter() - start) * 1000
        if status != 200 or reply.get("status") != "accepted":
            raise SystemExit(f"unexpected answer {status}: {reply}")
        with lock:
            sent_at[reply["id"]] = wall
            accept_ms.append(elapsed)

    cpu_before = workerd_cpu_ms(edge.process.pid)
    started = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        list(pool.map(send, deliveries))
    sending_secs = time.perf_counter() - started
    deadline = time.time() + 120
    while time.time() < deadline:
        with origin.lock:
            if all(event_id in origin.arrived for event_id in sent_at):
                break
        time.sleep(0.05)
    else:
        raise SystemExit("not every event reached the origin within 120 s")
    cpu_after = workerd_cpu_ms(edge.process.pid)
    with origin.lock:
        to_origin = [(origin.arrived[event_id] - sent) * 1000 for event_id, sent in sent_at.items()]
    return {
        "accept_p50": statistics.median(accept_ms),
        "accept_p99": percentile(accept_ms, 0.99),
        "origin_p50": statistics.median(to_origin),
        "origin_p99": percentile(to_origin, 0.99),
        "per_sec": events / sending_secs,
        "cpu_ms": (cpu_after - cpu_before) / events,
    }


def run_forged(edge, size, events, clients, kinds):
    """Workerd CPU per refused delivery of `size` bytes signed with a wrong secret."""
    deliveries = []
    for _ in range(events):
        payload = payload_of_size(size)
        body = didit.encode(payload)
        deliveries.append((body, didit.signed_headers(body, payload, "not-the-didit-secret", kinds=kinds)))

    def send(delivery):
        status, reply = edge.post_webhook(*delivery)
        if status != 401:
            raise SystemExit(f"a forged delivery was answered {status}: {reply}")

    cpu_before = workerd_cpu_ms(edge.process.pid)
    with ThreadPoolExecutor(clients) as pool:
        list(pool.map(send, deliveries))
    return (workerd_cpu_ms(edge.process.pid) - cpu_before) / events


def forged(args):
    size = 1_040_000
    origin = FastOrigin()
    edge = start("bench-forged", origin, False, args.warmup)
    try:
        genuine = run(edge, origin, size, args.events, args.clients)["cpu_ms"]
        v2_only = run_forged(edge, size, args.events, args.clients, ("v2",))
        all_three = run_forged(edge, size, args.events, args.clients, ("raw", "v2", "simple"))
    finally:
        edge.stop()
        origin.stop()
        shutil.rmtree(edge.persist_dir, ignore_errors=True)
    print(f"didit-edge under wrangler dev, {args.events} deliveries of {size} bytes each from {args.clients} clients;"
          " workerd CPU ms per delivery (two Didit secrets configured)")
    print(f"{'genuine (accepted, stored, delivered)':44} {genuine:8.2f}")
    print(f"{'forged, X-Signature-V2 only (refused 401)':44} {v2_only:8.2f}  {v2_only / genuine:5.2f}x genuine")
    print(f"{'forged, all three headers (refused 401)':44} {all_three:8.2f}  {all_three / genuine:5.2f}x genuine")
    print("\n" + json.dumps({"genuine": genuine, "forged_v2_only": v2_only, "forged_all_three": all_three}))


def start(name, origin, js, warmup, wrangler_config=None):
    if js:
        config = {"DIDIT_WEBHOOK_SECRET": DIDIT_SECRET, "ORIGIN_SIGNING_SECRET": SIGNING_SECRET, "ORIGIN_URL": origin.url}
        edge = WranglerDev(name, config, wrangler_config=ROOT / "bench" / "js-baseline" / "wrangler.toml")
    else:
        # The JS Worker waits for its origin as long as it takes; so does this, within reason.
        origins = json.dumps([{"name": "origin", "url": origin.url, "timeout_ms": 30000}])
        edge = WranglerDev(name, base_config(origin.url, MAX_BODY_BYTES="1048576", ORIGINS=origins),
                           wrangler_config=wrangler_config)
    edge.start()
    # Warm-up: isolates, code paths (wasm is compiled, then optimized, as it runs), connections.
    for _ in range(warmup):
        payload = payload_of_size(3_000)
        body = didit.encode(payload)
        edge.post_webhook(body, didit.signed_headers(body, payload, DIDIT_SECRET))
    deadline = time.time() + 60
    while time.time() < deadline and len(origin.arrived) < warmup:
        time.sleep(0.05)
    return edge


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=400)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--sizes", default="3000,100000", help="body sizes in bytes, comma-separated")
    parser.add_argument("--only", choices=("rust", "js"), help="measure one target (no ratios)")
    parser.add_argument("--warmup", type=int, default=200, help="deliveries before measuring")
    parser.add_argument("--rounds", type=int, default=1,
                        help="measure each row this many times, alternating targets; print the medians")
    parser.add_argument("--forged", action="store_true", help="the cost of forged 1 MiB deliveries (Rust only)")
    args = parser.parse_args()
    if args.forged:
        forged(args)
        return
    sizes = [int(size) for size in args.sizes.split(",")]
    targets = [("didit-edge (Rust)", False), ("JS Worker, same path", True)]
    if args.only:
        targets = [t for t in targets if t[1] == (args.only == "js")]
    # Rounds alternate the targets so that a noisy minute on this shared machine lands on both.
    measured = {}
    for _ in range(args.rounds):
        for size in sizes:
            for label, js in targets:
                origin = FastOrigin()
                edge = start(f"bench-{'js' if js else 'rust'}-{size // 1000}k", origin, js, args.warmup)
                try:
                    measured.setdefault((size, label), []).append(
                        run(edge, origin, size, args.events, args.clients))
                finally:
                    edge.stop()
                    origin.stop()
                    shutil.rmtree(edge.persist_dir, ignore_errors=True)
    rows = {key: {metric: statistics.median(r[metric] for r in runs) for metric in runs[0]}
            for key, runs in measured.items()}
    print(f"wrangler dev on 127.0.0.1, {args.events} deliveries per row from {args.clients} clients, "
          "all three signatures, one new session each"
          + (f"; medians of {args.rounds} alternating rounds" if args.rounds > 1 else ""))
    header = f"{'':28} {'accept p50/p99 ms':>18} {'→origin p50/p99 ms':>20} {'accepted/s':>11} {'CPU ms/event':>13}"
    for size in sizes:
        print(f"\n~{size // 1000} KB body")
        print(header)
        for label, _ in targets:
            r = rows[(size, label)]
            print(f"{label:28} {r['accept_p50']:8.1f}/{r['accept_p99']:<8.1f} {r['origin_p50']:9.1f}/{r['origin_p99']:<9.1f}"
                  f" {r['per_sec']:11.1f} {r['cpu_ms']:13.2f}")
        if len(targets) < 2:
            continue
        rust, js = rows[(size, "didit-edge (Rust)")], rows[(size, "JS Worker, same path")]
        print(f"{'Rust / JS':28} {rust['accept_p50'] / js['accept_p50']:8.2f}x{'':9} {rust['origin_p50'] / js['origin_p50']:9.2f}x{'':10}"
              f" {rust['per_sec'] / js['per_sec']:10.2f}x {rust['cpu_ms'] / js['cpu_ms']:12.2f}x")
    print("\n" + json.dumps({f"{size}:{label}": r for (size, label), r in rows.items()}))


if __name__ == "__main__":
    main()
