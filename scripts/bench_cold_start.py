#!/usr/bin/env python3
"""Cold start: didit-edge against the JS Worker a user would otherwise write (bench/js-baseline),
both under `wrangler dev` on this machine, in one run: the first request on a fresh isolate.

Under `wrangler dev` the user Worker runs in its own workerd process, behind a second workerd
that holds the public port (wrangler's proxy). A fresh isolate is had in one of two ways:

  reload   (default) append a comment to the Worker's main module (in a private copy of the
           Worker as built, see private_copy); wrangler re-bundles it and starts a new workerd
           process for it, then logs "Local server updated and ready". The first request goes
           out as soon as the log says so. wrangler, esbuild and the proxy stay up, so little
           but the Worker's own start is measured.
  restart  a new `wrangler dev` every time; the first request goes out when wrangler logs
           "Ready on …". Includes wrangler's own start (node, bundling, two workerd processes).

Per repetition, target and request kind (a signed Didit webhook POST, which also creates an
Inbox Durable Object, or GET /healthz) it records:
  - how long the fresh workerd took to be ready (touch or spawn → the log line),
  - the CPU the fresh user workerd had spent when ready (loading: wasm compile, module
    evaluation, workerd's own start),
  - the first request's latency and the user workerd's CPU during it,
  - a second, identical request right after it (warm), for comparison.
CPU is read from /proc/<pid>/task/*/schedstat (nanoseconds, every thread of the process).
Targets and request kinds alternate, so a noisy minute on this shared machine lands on both.
It prints p50/p90 for both targets and the Rust/JS ratios of the medians.

    .tools/venv/bin/python scripts/bench_cold_start.py [--reps 15] [--mode reload|restart]

With --check-startup N it runs `wrangler check startup` N times per Worker instead (on the bundle
`wrangler deploy --dry-run --outfile` makes, built once), which profiles the evaluation of the
main module in workerd (the glue's top level, wasm instantiation, the start function) and
prints, per Worker, the median active time and the profiles' self time summed by function.

    .tools/venv/bin/python scripts/bench_cold_start.py --check-startup 10
"""

import argparse
import json
import os
import pathlib
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "scripts"))
import didit  # noqa: E402
from bench_compare import FastOrigin  # noqa: E402
from harness import LOG_DIR, DIDIT_SECRET, SIGNING_SECRET, WranglerDev, base_config, free_port, tool_env  # noqa: E402

READY_AFTER_RELOAD = "Local server updated and ready"
READY_AFTER_START = "Ready on http"


def process_cpu_ns(pid):
    """CPU time of every live thread of one process, in nanoseconds (schedstat's first field)."""
    total = 0
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return 0
    for task in tasks:
        try:
            total += int(pathlib.Path(f"/proc/{pid}/task/{task}/schedstat").read_text().split()[0])
        except (OSError, ValueError, IndexError):
            pass
    return total


def user_workerd(process_group):
    """The pid of the workerd that runs the Worker itself (not wrangler's proxy, which holds the
    public port): the newest workerd of the group whose entry socket is on port 0."""
    found = []
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            if os.getpgid(int(pid)) != process_group:
                continue
            argv = pathlib.Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
            started = int(pathlib.Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19])
        except (OSError, ProcessLookupError, ValueError, IndexError):
            continue
        if argv and argv[0].endswith(b"workerd") and b"--socket-addr=entry=127.0.0.1:0" in argv:
            found.append((started, int(pid)))
    return max(found)[1] if found else None


def percentile(values, fraction):
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def private_copy(key, scratch):
    """A copy of one Worker, as built, in a scratch directory: (its wrangler config, its main
    module). Reloads append a comment to the copy's main module, so the repository's files are
    never touched; a touch alone is not enough, wrangler's bundler compares contents. The copy of
    didit-edge has no [build] command (its build is already done), like the JS Worker."""
    directory = pathlib.Path(scratch) / key
    if key == "js":
        shutil.copytree(ROOT / "bench" / "js-baseline", directory)
        return directory / "wrangler.toml", directory / "src" / "index.js"
    shutil.copytree(ROOT / "edge-worker" / "build", directory / "build")
    text = (ROOT / "wrangler.toml").read_text()
    text, builds = re.subn(r"\n\[build\]\n.*?\n\n", "\n", text, flags=re.S)
    assert builds == 1 and 'main = "edge-worker/build/index.js"' in text, "wrangler.toml changed shape"
    (directory / "wrangler.toml").write_text(text.replace('main = "edge-worker/build/index.js"', 'main = "build/index.js"'))
    return directory / "wrangler.toml", directory / "build" / "index.js"


class Target:
    """One Worker under `wrangler dev` that can be given a fresh isolate on demand."""

    def __init__(self, key, origin, mode, scratch):
        self.key, self.origin, self.mode = key, origin, mode
        self.reloads = 0
        wrangler_config, self.main_module = private_copy(key, scratch)
        if key == "js":
            config = {"DIDIT_WEBHOOK_SECRET": DIDIT_SECRET, "ORIGIN_SIGNING_SECRET": SIGNING_SECRET, "ORIGIN_URL": origin.url}
        else:
            origins = json.dumps([{"name": "origin", "url": origin.url, "timeout_ms": 30000}])
            config = base_config(origin.url, ORIGINS=origins)
        self.edge = WranglerDev(f"cold-{key}", config, wrangler_config=wrangler_config)

    def start(self):
        if self.mode == "reload":
            self.edge.start()

    def stop(self):
        self.edge.stop()

    def fresh(self):
        """A fresh isolate (a new user workerd process): returns (ms until it is ready by the log,
        its pid)."""
        if self.mode == "reload":
            log = self.edge.log_path
            seen = log.read_text(errors="replace").count(READY_AFTER_RELOAD)
            before = user_workerd(self.edge.process.pid)
            started = time.perf_counter()
            self.reloads += 1
            with open(self.main_module, "a") as module:
                module.write(f"\n// cold-start reload {self.reloads}\n")
            deadline = time.time() + 180
            while log.read_text(errors="replace").count(READY_AFTER_RELOAD) <= seen:
                if time.time() > deadline:
                    raise SystemExit(f"{self.key}: no reload within 180 s; see {log}")
                time.sleep(0.005)
            ready_ms = (time.perf_counter() - started) * 1000
            pid = user_workerd(self.edge.process.pid)
            if pid is None or pid == before:
                raise SystemExit(f"{self.key}: the reload did not start a new workerd ({before} → {pid})")
            return ready_ms, pid
        # restart: a new wrangler dev, waited for by its log line only (no request before ours).
        self.edge.stop()
        self.edge.port = free_port()
        LOG_DIR.mkdir(parents=True, exist_ok=True)
        self.edge.starts += 1
        self.edge.log_path = LOG_DIR / f"{self.edge.name}-{self.edge.starts}.log"
        command = [str(ROOT / "node_modules" / ".bin" / "wrangler"), "dev", "--ip", "127.0.0.1",
                   "--port", str(self.edge.port), "--inspector-port", str(free_port()),
                   "--persist-to", self.edge.persist_dir, "--show-interactive-dev-session=false",
                   "--config", str(self.edge.wrangler_config)]
        for key, value in self.edge.config.items():
            command += ["--var", f"{key}:{value}"]
        started = time.perf_counter()
        self.edge.process = subprocess.Popen(command, cwd=ROOT, env=tool_env(), stdout=open(self.edge.log_path, "w"),
                                             stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)
        deadline = time.time() + 180
        while READY_AFTER_START not in self.edge.log_path.read_text(errors="replace"):
            if time.time() > deadline or self.edge.process.poll() is not None:
                raise SystemExit(f"{self.key}: wrangler dev did not start; see {self.edge.log_path}")
            time.sleep(0.005)
        return (time.perf_counter() - started) * 1000, user_workerd(self.edge.process.pid)

    def request(self, kind):
        if kind == "healthz":
            status, _, _ = self.edge.request("GET", "/healthz", timeout=120)
            if status != 200:
                raise SystemExit(f"{self.key}: /healthz answered {status}")
            return None
        payload = didit.session_payload()
        body = didit.encode(payload)
        headers = didit.signed_headers(body, payload, DIDIT_SECRET, kinds=("raw", "v2", "simple"))
        status, _, raw = self.edge.request("POST", "/webhooks/didit", body, headers, timeout=120)
        reply = json.loads(raw)
        if status != 200 or reply.get("status") != "accepted":
            raise SystemExit(f"{self.key}: unexpected answer {status}: {reply}")
        return reply["id"]

    def measure(self, kind):
        ready_ms, pid = self.fresh()
        load_cpu = process_cpu_ns(pid) / 1e6 if pid else float("nan")
        figures = {"ready_ms": ready_ms, "load_cpu_ms": load_cpu}
        ids = []
        for label in ("first", "warm"):
            cpu = process_cpu_ns(pid)
            started = time.perf_counter()
            ids.append(self.request(kind))
            figures[f"{label}_ms"] = (time.perf_counter() - started) * 1000
            figures[f"{label}_cpu_ms"] = (process_cpu_ns(pid) - cpu) / 1e6
        # Let the alarms deliver before the next reload, so that none is left for the next isolate.
        deadline = time.time() + 60
        while any(i and i not in self.origin.arrived for i in ids) and time.time() < deadline:
            time.sleep(0.02)
        time.sleep(0.3)
        return figures


def profile_self_time(profile):
    """Self time per (where, function) of one .cpuprofile, in microseconds, attributing each
    sample's time delta to its node (as `wrangler check startup` does for its summary)."""
    nodes = {node["id"]: node["callFrame"] for node in profile["nodes"]}
    totals = {}
    for node_id, delta in zip(profile.get("samples", []), profile.get("timeDeltas", [])):
        frame = nodes[node_id]
        url = frame.get("url") or ""
        where = "wasm" if url.startswith("wasm://") else ("js" if url else "")
        function = frame.get("functionName") or "(top level)"
        if where == "js":  # the glue is minified: its names say little without the line
            function += f" {pathlib.PurePosixPath(url).name}:{frame.get('lineNumber', -1) + 1}"
        key = (where, function)
        totals[key] = totals.get(key, 0) + delta
    return totals


def check_startup(runs):
    """`wrangler check startup`, `runs` times per Worker, alternating."""
    scratch = pathlib.Path(tempfile.mkdtemp(prefix="didit-edge-startup-"))
    wrangler = str(ROOT / "node_modules" / ".bin" / "wrangler")
    configs = {"rust": ROOT / "wrangler.toml", "js": ROOT / "bench" / "js-baseline" / "wrangler.toml"}
    found = {}
    try:
        for key, config in configs.items():
            bundle = scratch / f"{key}.bundle"
            subprocess.run([wrangler, "deploy", "--dry-run", "--config", str(config), "--outfile", str(bundle)],
                           cwd=ROOT, env=tool_env(), check=True, capture_output=True)
        for run in range(runs):
            for key in (configs if run % 2 == 0 else list(configs)[::-1]):
                outfile = scratch / f"{key}-{run}.cpuprofile"
                done = subprocess.run([wrangler, "check", "startup", "--worker", str(scratch / f"{key}.bundle"),
                                       "--outfile", str(outfile)], cwd=ROOT, env=tool_env(), capture_output=True, text=True)
                if done.returncode != 0:
                    raise SystemExit(f"wrangler check startup failed for {key}:\n{done.stdout}{done.stderr}")
                figures = dict(re.findall(r"(Profile window|Sampled time|Active|Idle): ([0-9.]+) ms", done.stdout))
                bundle_size = re.search(r"Bundle: .*", done.stdout).group(0)
                found.setdefault(key, []).append((figures, profile_self_time(json.loads(outfile.read_text())), bundle_size))
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    names = {"rust": "didit-edge (Rust)", "js": "JS Worker"}
    print(f"wrangler check startup, {runs} runs per Worker; medians")
    summary = {}
    for key, results in found.items():
        row = {name: statistics.median(float(f[name]) for f, _, _ in results)
               for name in ("Profile window", "Sampled time", "Active", "Idle")}
        summary[key] = row
        print(f"\n{names[key]}: {results[0][2]}")
        print("  " + ", ".join(f"{name} {value:.1f} ms" for name, value in row.items()))
        totals = {}
        for _, self_time, _ in results:
            for frame, micros in self_time.items():
                totals[frame] = totals.get(frame, 0) + micros
        everything = sum(totals.values()) or 1
        print(f"  self time summed over the {runs} profiles ({everything / 1000:.1f} ms):")
        for (where, function), micros in sorted(totals.items(), key=lambda item: -item[1])[:12]:
            print(f"    {micros / 1000:8.1f} ms {100 * micros / everything:5.1f}%  {where or '-':4} {function}")
    if len(summary) == 2:
        print(f"\nRust / JS, median active: {summary['rust']['Active']:.1f} / {summary['js']['Active']:.1f} ms")
    print("\n" + json.dumps(summary))


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--reps", type=int, default=15, help="fresh isolates per target and request kind")
    parser.add_argument("--mode", choices=("reload", "restart"), default="reload")
    parser.add_argument("--kinds", default="webhook,healthz", help="first requests to time, comma-separated")
    parser.add_argument("--only", choices=("rust", "js"))
    parser.add_argument("--check-startup", type=int, metavar="N",
                        help="run `wrangler check startup` N times per Worker instead")
    args = parser.parse_args()
    if args.check_startup:
        check_startup(args.check_startup)
        return
    if not (ROOT / "edge-worker" / "build" / "index.js").exists():
        raise SystemExit("build the worker first: bash scripts/build.sh")
    kinds = args.kinds.split(",")
    keys = [k for k in ("rust", "js") if args.only in (None, k)]
    origin = FastOrigin()
    scratch = tempfile.mkdtemp(prefix="didit-edge-cold-")
    targets = {key: Target(key, origin, args.mode, scratch) for key in keys}
    results = {}
    try:
        for target in targets.values():
            target.start()
        for rep in range(args.reps):
            for kind in kinds:
                order = keys if rep % 2 == 0 else keys[::-1]
                for key in order:
                    figures = targets[key].measure(kind)
                    results.setdefault((key, kind), []).append(figures)
                    print(f"rep {rep + 1:2} {key:4} {kind:8} " + " ".join(f"{m}={v:.1f}" for m, v in figures.items()),
                          file=sys.stderr, flush=True)
    finally:
        for target in targets.values():
            target.stop()
            shutil.rmtree(target.edge.persist_dir, ignore_errors=True)
        origin.stop()
        shutil.rmtree(scratch, ignore_errors=True)

    names = {"rust": "didit-edge (Rust)", "js": "JS Worker"}
    metrics = [("ready_ms", "fresh → ready ms"), ("load_cpu_ms", "load CPU ms"), ("first_ms", "first req ms"),
               ("first_cpu_ms", "first req CPU ms"), ("warm_ms", "2nd req ms"), ("warm_cpu_ms", "2nd req CPU ms")]
    print(f"wrangler dev on 127.0.0.1, mode {args.mode}, {args.reps} fresh isolates per row; p50 / p90")
    summary = {}
    for kind in kinds:
        print(f"\nfirst request: {'signed Didit webhook POST (accepted)' if kind == 'webhook' else 'GET /healthz'}")
        print(f"{'':20}" + "".join(f"{title:>20}" for _, title in metrics))
        for key in keys:
            runs = results[(key, kind)]
            row = {m: (statistics.median(r[m] for r in runs), percentile([r[m] for r in runs], 0.9)) for m, _ in metrics}
            summary[f"{kind}:{key}"] = row
            print(f"{names[key]:20}" + "".join(f"{row[m][0]:10.1f} /{row[m][1]:8.1f}" for m, _ in metrics))
        if len(keys) == 2:
            rust, js = summary[f"{kind}:rust"], summary[f"{kind}:js"]
            print(f"{'Rust / JS (p50)':20}" + "".join(f"{rust[m][0] / js[m][0]:17.2f}x  " for m, _ in metrics))
    print("\n" + json.dumps({"mode": args.mode, "reps": args.reps, "p50_p90": summary}))


if __name__ == "__main__":
    main()
