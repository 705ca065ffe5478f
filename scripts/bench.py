#!/usr/bin/env python3
"""End-to-end latency of the receiver under `wrangler dev` (workerd) on this machine.

Prints, for small and large Didit bodies: how long Didit waits for its answer (POST → 200,
event stored), and how long until the origin has the event (POST sent → origin received it;
the inbox's alarm often delivers before the 200 has travelled back), as
median and p99, next to a baseline measured in the same run: `GET /healthz`, a round trip
through the same worker that does no verification and no storage. Numbers are for comparison
(ratios), not absolutes: this machine is shared and noisy.

    .tools/venv/bin/python scripts/bench.py [--events 300]
"""

import argparse
import pathlib
import sys
import time

ROOT = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
import didit  # noqa: E402
from harness import DIDIT_SECRET, SIGNING_SECRET, WranglerDev, base_config, free_port  # noqa: E402
from origin_server import Origin  # noqa: E402
from benchstats import show  # noqa: E402


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=300)
    args = parser.parse_args()

    origin = Origin(free_port(), SIGNING_SECRET).start()
    edge = WranglerDev("bench", base_config(origin.url, MAX_BODY_BYTES="1048576"))
    edge.start()
    try:
        for _ in range(30):  # warm-up: isolate, Durable Object code paths, connections
            payload = didit.session_payload()
            body = didit.encode(payload)
            edge.post_webhook(body, didit.signed_headers(body, payload, DIDIT_SECRET, kinds=("raw", "v2", "simple")))
            edge.request("GET", "/healthz")

        health = []
        for _ in range(args.events):
            start = time.perf_counter()
            edge.request("GET", "/healthz")
            health.append((time.perf_counter() - start) * 1000)
        print(f"wrangler dev on 127.0.0.1, {args.events} sequential requests per row, one new session each")
        baseline = show("GET /healthz (baseline)", health, is_baseline=True, width=46)

        for label, padding in (("~1.5 KB body", 0), ("~100 KB body", 100_000)):
            acks, deliveries = [], []
            for _ in range(args.events):
                payload = didit.session_payload(padding="p" * padding) if padding else didit.session_payload()
                body = didit.encode(payload)
                headers = didit.signed_headers(body, payload, DIDIT_SECRET, kinds=("raw", "v2", "simple"))
                start = time.perf_counter()
                wall_start = time.time()
                status, reply = edge.post_webhook(body, headers)
                acked = time.perf_counter()
                if status != 200:
                    raise SystemExit(f"unexpected {status}: {reply}")
                acks.append((acked - start) * 1000)
                event_id = reply["id"]
                if not origin.wait_for(lambda o: event_id in o.delivered_ids(), timeout=30):
                    raise SystemExit(f"{event_id} was not delivered")
                received = next(d["at"] for d in origin.deliveries() if d["headers"].get("webhook-id") == event_id)
                deliveries.append((received - wall_start) * 1000)
            show(f"POST /webhooks/didit → 200 ({label})", acks, baseline, width=46)
            show(f"POST sent → origin has it ({label})", deliveries, baseline, width=46)
    finally:
        edge.stop()
        origin.stop()


if __name__ == "__main__":
    main()
