#!/usr/bin/env python3
"""Where an event's time goes inside the isolate: V8's own sampling profiler, through wrangler
dev's inspector, over the same deliveries for didit-edge and the JS Worker
(bench/js-baseline), one client at a time, ~3 KB bodies, in one run.

`perf` sees workerd from outside, where the Worker's wasm is anonymous JIT code; the
inspector's profile names what the isolate was doing at each sample: the Worker's own code
(wasm functions, or the JS Worker's functions), the glue between them and the runtime (the
wasm-bindgen module, workers-rs' shim), the runtime's APIs called from it (fetch, SQLite,
WebCrypto, Response, ...: native functions), V8 itself (`(program)`, `(garbage collector)`),
and `(idle)`, when the isolate waited for I/O. Each category's samples are turned into
milliseconds of isolate time per event.

    .tools/venv/bin/python scripts/profile_worker.py [--events 300] [--interval-us 100] [--names]

With --names didit-edge runs a build that keeps its wasm function names (`scripts/build.sh
--names`, into edge-worker/build-names; the same code, optimized the same way), so the wasm's
self time is listed by Rust function instead of `wasm-function[N]`.

The profiles are kept under .tools/profiles/ (open them in Chrome DevTools' Performance panel);
`--top N` prints the N functions with most self time per target.
"""

import argparse
import collections
import json
import pathlib
import sys
import time
import urllib.request

import websocket

ROOT = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "scripts"))
sys.path.insert(0, str(ROOT / "tests"))
import didit  # noqa: E402
from bench_compare import FastOrigin, payload_of_size, start  # noqa: E402
from harness import DIDIT_SECRET, test_wrangler_config  # noqa: E402

PROFILES = ROOT / ".tools" / "profiles"

# What the isolate was doing, from a profile node's call frame and the target; first match
# wins. Both Workers are bundled into `index.js`: for the JS Worker that is its own code, for
# didit-edge the wasm-bindgen glue and workers-rs' shim around the wasm.
CATEGORIES = [
    ("idle", lambda f, js: f["functionName"] == "(idle)"),
    ("V8: garbage collector", lambda f, js: f["functionName"] == "(garbage collector)"),
    ("V8: compiling and other", lambda f, js: f["functionName"] in ("(program)", "(root)")),
    ("own code: wasm", lambda f, js: f["url"].startswith("wasm://")),
    ("own code: JS Worker", lambda f, js: js and f["url"] == "index.js"),
    ("glue: wasm-bindgen and workers-rs shim", lambda f, js: f["url"] == "index.js"),
    ("runtime: miniflare's and node's JS", lambda f, js: f["url"] != ""),
    ("runtime APIs (native: fetch, SQLite, crypto, ...)", lambda f, js: True),
]


class Inspector:
    """One Chrome DevTools Protocol session with the Worker's isolate."""

    def __init__(self, port):
        deadline = time.time() + 30
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/json", timeout=5) as answer:
                    targets = json.loads(answer.read())
                if targets:
                    break
            except OSError:
                pass
            if time.time() > deadline:
                raise SystemExit(f"no inspector target on port {port}")
            time.sleep(0.5)
        self.socket = websocket.create_connection(targets[0]["webSocketDebuggerUrl"], timeout=120)
        self.next_id = 0

    def call(self, method, **params):
        self.next_id += 1
        self.socket.send(json.dumps({"id": self.next_id, "method": method, "params": params}))
        while True:
            message = json.loads(self.socket.recv())
            if message.get("id") == self.next_id:
                if "error" in message:
                    raise SystemExit(f"{method}: {message['error']}")
                return message.get("result", {})

    def close(self):
        self.socket.close()


def deliveries(count):
    made = []
    for _ in range(count):
        payload = payload_of_size(3_000)
        body = didit.encode(payload)
        made.append((body, didit.signed_headers(body, payload, DIDIT_SECRET, kinds=("raw", "v2", "simple"))))
    return made


def profile(edge, origin, events, interval_us):
    inspector = Inspector(edge.inspector_port)
    try:
        inspector.call("Profiler.enable")
        inspector.call("Profiler.setSamplingInterval", interval=interval_us)
        sent = deliveries(events)
        before = len(origin.arrived)
        inspector.call("Profiler.start")
        for body, headers in sent:
            status, _ = edge.post_webhook(body, headers)
            if status != 200:
                raise SystemExit(f"delivery answered {status}")
        deadline = time.time() + 60
        while time.time() < deadline and len(origin.arrived) < before + events:
            time.sleep(0.02)
        return inspector.call("Profiler.stop")["profile"]
    finally:
        inspector.close()


def self_times(profile):
    """Milliseconds of self time per node id, from the samples and their time deltas."""
    spent = collections.Counter()
    for node_id, delta in zip(profile["samples"], profile["timeDeltas"]):
        spent[node_id] += delta / 1000
    return spent


def summarize(profile, events, js):
    nodes = {node["id"]: node for node in profile["nodes"]}
    by_category, by_function = collections.Counter(), collections.Counter()
    for node_id, ms in self_times(profile).items():
        frame = nodes[node_id]["callFrame"]
        category = next(name for name, matches in CATEGORIES if matches(frame, js))
        by_category[category] += ms / events
        name = frame["functionName"] or "(anonymous)"
        where = frame["url"].rsplit("/", 1)[-1]
        by_function[(category, f"{name} {where}".strip())] += ms / events
    return by_category, by_function


def names_config():
    """The tests' wrangler configuration, running `scripts/build.sh --names`'s build."""
    text = test_wrangler_config().read_text()
    for old, new in (("edge-worker/build/index.js", "edge-worker/build-names/index.js"),
                     ("scripts/build.sh\"", "scripts/build.sh --names\"")):
        assert old in text, f"the tests' wrangler configuration no longer has {old!r}"
        text = text.replace(old, new)
    target = ROOT / ".tools" / "wrangler-names.toml"
    target.write_text(text)
    return target


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=300)
    parser.add_argument("--warmup", type=int, default=200)
    parser.add_argument("--interval-us", type=int, default=100, help="sampling interval in microseconds")
    parser.add_argument("--names", action="store_true", help="profile didit-edge's build with function names")
    parser.add_argument("--top", type=int, default=15, help="functions with most self time to print per target")
    args = parser.parse_args()
    PROFILES.mkdir(parents=True, exist_ok=True)
    results = {}
    for target in ("rust", "js"):
        origin = FastOrigin()
        config = names_config() if args.names and target == "rust" else None
        edge = start(f"profile-{target}", origin, target == "js", args.warmup, wrangler_config=config)
        try:
            taken = profile(edge, origin, args.events, args.interval_us)
        finally:
            edge.stop()
            origin.stop()
        (PROFILES / f"{target}.cpuprofile").write_text(json.dumps(taken))
        results[target] = summarize(taken, args.events, target == "js")

    labels = [name for name, _ in CATEGORIES]
    print(f"\nIsolate time per event, ms ({args.events} events of ~3 KB, one at a time, sampled every "
          f"{args.interval_us} µs)")
    print(f"{'':52} {'didit-edge':>11} {'JS Worker':>10} {'diff':>7}")
    busy = {}
    for target in ("rust", "js"):
        busy[target] = sum(ms for name, ms in results[target][0].items() if name != "idle")
    for name in labels:
        a, b = results["rust"][0].get(name, 0.0), results["js"][0].get(name, 0.0)
        print(f"{name:52} {a:11.3f} {b:10.3f} {a - b:+7.3f}")
    a, b = busy["rust"], busy["js"]
    print(f"{'busy (all but idle)':52} {a:11.3f} {b:10.3f} {a - b:+7.3f}   ratio {a / b:.2f}x")
    for target in ("rust", "js"):
        print(f"\n{target}: the {args.top} functions with most self time, ms per event")
        for (category, function), ms in results[target][1].most_common(args.top):
            print(f"  {ms:7.3f}  {function[:70]:70} [{category}]")
    print(f"\nprofiles: {PROFILES.relative_to(ROOT)}/rust.cpuprofile, js.cpuprofile")


if __name__ == "__main__":
    main()
