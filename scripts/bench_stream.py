#!/usr/bin/env python3
"""How long a status takes to reach a watcher, under `wrangler dev` (workerd) on this machine.

Sends events one after another while one `self` socket (the user's) and one `admin` socket are
connected, and prints, as median and p99: the time from the webhook's `200` reaching Didit (the
sender) to the status message arriving on each socket (negative when the message beats the
`200` back: it is published while Didit gets its answer), and from the POST being sent. The
baseline, measured in the same run, is `GET /healthz`, a round trip through the same worker that
does no work. Numbers are for comparison (ratios), not absolutes: this machine is shared and noisy.

    .tools/venv/bin/python scripts/bench_stream.py [--events 300]
"""

import argparse
import json
import pathlib
import sys
import threading
import time

ROOT = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
import didit  # noqa: E402
import stream_tokens  # noqa: E402
from harness import DIDIT_SECRET, SIGNING_SECRET, WranglerDev, base_config, free_port  # noqa: E402
from origin_server import Origin  # noqa: E402
from websockets.sync.client import connect  # noqa: E402
from benchstats import show  # noqa: E402


class Listener:
    """Records when each event id arrives on a socket."""

    def __init__(self, socket):
        self.socket, self.arrived = socket, {}
        self.thread = threading.Thread(target=self.run, daemon=True)
        self.thread.start()

    def run(self):
        try:
            for raw in self.socket:
                self.arrived[json.loads(raw)["event_id"]] = time.perf_counter()
        except Exception:
            pass

    def wait(self, event, timeout=10):
        deadline = time.time() + timeout
        while event not in self.arrived and time.time() < deadline:
            time.sleep(0.0005)
        return self.arrived.get(event)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=300)
    args = parser.parse_args()
    origin = Origin(free_port(), SIGNING_SECRET).start()
    edge = WranglerDev("bench-stream", base_config(origin.url, STREAM_TOKEN_SECRET=stream_tokens.STREAM_SECRET))
    edge.start()
    try:
        url = f"{edge.url.replace('http://', 'ws://')}/v1/stream"
        user = "bench-user"
        own = connect(url, subprotocols=["didit-edge.v1", stream_tokens.token(user)])
        admin = connect(url, subprotocols=["didit-edge.v1", stream_tokens.token("ops", scope="admin")])
        listeners = {"self": Listener(own), "admin": Listener(admin)}
        for _ in range(20):  # warm-up
            edge.request("GET", "/healthz")
        healthz = []
        for _ in range(args.events):
            start = time.perf_counter()
            edge.request("GET", "/healthz")
            healthz.append((time.perf_counter() - start) * 1000)
        after_200 = {name: [] for name in listeners}
        after_send = {name: [] for name in listeners}
        for _ in range(args.events):
            payload = didit.session_payload(vendor_data=user)
            body = didit.encode(payload)
            headers = didit.signed_headers(body, payload, DIDIT_SECRET)
            sent = time.perf_counter()
            status, reply = edge.post_webhook(body, headers)
            answered = time.perf_counter()
            assert status == 200, reply
            for name, listener in listeners.items():
                arrived = listener.wait(reply["id"])
                if arrived is None:
                    raise SystemExit(f"{name} socket never got {reply['id']}")
                after_200[name].append((arrived - answered) * 1000)
                after_send[name].append((arrived - sent) * 1000)
        print(f"wrangler dev on 127.0.0.1, {args.events} sequential events, one self and one admin socket")
        base = show("GET /healthz (baseline)", healthz, is_baseline=True)
        for name in listeners:
            show(f"POST sent → status on the {name} socket", after_send[name], base)
        for name in listeners:
            show(f"200 back at Didit → status on the {name} socket", after_200[name])
        own.close()
        admin.close()
    finally:
        edge.stop()
        origin.stop()


if __name__ == "__main__":
    main()
