"""Delivery metrics per origin (`GET /admin/metrics`, `didit-edge admin metrics`): a real worker
under `wrangler dev`, two real origins on 127.0.0.1, the primary slowed, then answering 503 for a
while so the backup takes those events. The counts reach the `Health` object with an isolate's
next breaker refresh (docs/operations.md#delivery-metrics), so the test keeps traffic flowing
until the counts it knows of have arrived, and allows for the ones it sent to get them there."""

import json
import os
import pathlib
import subprocess
import time

from harness import ADMIN_TOKEN, base_config
from test_failover import send

READ_TOKEN = "test-metrics-read-only-token-0123456789"

CLI = pathlib.Path(__file__).resolve().parent.parent / "target" / "debug" / "didit-edge"


def metrics(edge, token=ADMIN_TOKEN):
    status, _, raw = edge.request("GET", "/admin/metrics", headers={"Authorization": f"Bearer {token}"})
    assert status == 200, raw
    return json.loads(raw)


def by_origin(view):
    return {o["origin"]: o for o in view["origins"]}


def test_metrics_count_each_origins_attempts_and_latency(make_edge, make_origin):
    primary, backup = make_origin(), make_origin()
    config = base_config(primary.url, ADMIN_TOKEN=ADMIN_TOKEN, ADMIN_READ_TOKEN=READ_TOKEN, ORIGINS=json.dumps([
        {"name": "primary", "url": primary.url, "priority": 0, "timeout_ms": 3000},
        {"name": "backup", "url": backup.url, "priority": 1, "timeout_ms": 3000},
    ]))
    edge = make_edge("metrics", config)
    empty = by_origin(metrics(edge))
    assert list(empty) == ["primary", "backup"], "configured origins are listed before any attempt"
    assert empty["primary"]["hour"] == {"attempts": 0, "delivered": 0, "refused": 0, "timeouts": 0,
                                        "network": 0, "success_per_mille": None, "p50_ms": None, "p95_ms": None}

    primary.delay_secs = 0.15
    delivered = [send(edge) for _ in range(4)]
    assert primary.wait_for(lambda o: set(delivered) <= set(o.delivered_ids()), timeout=30)
    primary.delay_secs, primary.status = 0, 503
    # Two failures in a row leave the breaker closed (three open it): both events try the
    # primary first, then the backup within the same attempt.
    failed_over = [send(edge) for _ in range(2)]
    assert backup.wait_for(lambda o: set(failed_over) <= set(o.delivered_ids()), timeout=30)
    primary.status = 204

    # Each extra event goes to the primary and makes its isolate refresh the breakers (after
    # the 2 s cache), which carries the counts so far.
    extra = 0
    deadline = time.time() + 60
    while True:
        view = by_origin(metrics(edge, token=READ_TOKEN))
        if view["primary"]["hour"]["refused"] == 2 and view["backup"]["hour"]["attempts"] == 2 \
                and view["primary"]["hour"]["delivered"] >= 4:
            break
        assert time.time() < deadline, view
        time.sleep(2.2)
        send(edge)
        extra += 1

    primary_hour, backup_hour = view["primary"]["hour"], view["backup"]["hour"]
    assert 4 <= primary_hour["delivered"] <= 4 + extra
    assert primary_hour["attempts"] == primary_hour["delivered"] + 2
    assert (primary_hour["timeouts"], primary_hour["network"]) == (0, 0)
    assert primary_hour["success_per_mille"] == primary_hour["delivered"] * 1000 // primary_hour["attempts"]
    assert backup_hour == {"attempts": 2, "delivered": 2, "refused": 0, "timeouts": 0, "network": 0,
                           "success_per_mille": 1000, "p50_ms": backup_hour["p50_ms"],
                           "p95_ms": backup_hour["p95_ms"]}
    # The four slowed answers took 150 ms or more: the p95 bucket is above 128 ms; nothing took
    # seconds on loopback.
    assert 256 <= primary_hour["p95_ms"] <= 2048, primary_hour
    assert primary_hour["p50_ms"] <= primary_hour["p95_ms"]
    assert 8 <= backup_hour["p50_ms"] <= 1024, backup_hour
    for name in ("primary", "backup"):
        assert view[name]["day"] == view[name]["hour"], "nothing older than the hour here"

    # The CLI reads the same answer into a table.
    if CLI.is_file():
        env = {k: v for k, v in os.environ.items() if k not in ("ADMIN_TOKEN", "DIDIT_EDGE_URL")}
        env.update(ADMIN_TOKEN=READ_TOKEN, DIDIT_EDGE_URL=edge.url)
        table = subprocess.run([str(CLI), "admin", "metrics"], env=env, capture_output=True, text=True, timeout=60)
        assert table.returncode == 0, table.stderr
        lines = table.stdout.splitlines()
        assert lines[0].split()[:3] == ["ORIGIN", "WINDOW", "ATTEMPTS"]
        backup_row = next(line.split() for line in lines if line.startswith("backup") and " hour " in line)
        assert backup_row[2:8] == ["2", "2", "0", "0", "0", "100.0%"], lines

    # Wrong method and no token are refused with stable codes.
    status, _, raw = edge.request("POST", "/admin/metrics", headers={"Authorization": f"Bearer {ADMIN_TOKEN}"})
    assert (status, json.loads(raw)["error"]["code"]) == (405, "method_not_allowed")
    status, _, raw = edge.request("GET", "/admin/metrics")
    assert (status, json.loads(raw)["error"]["code"]) == (401, "unauthorized")


def test_the_last_health_probe_is_kept_per_origin(make_edge, make_origin):
    probed, unprobed = make_origin(), make_origin()
    config = base_config(probed.url, ADMIN_TOKEN=ADMIN_TOKEN, ORIGINS=json.dumps([
        {"name": "probed", "url": probed.url, "health_url": probed.health_url, "timeout_ms": 3000},
        {"name": "unprobed", "url": unprobed.url, "priority": 1, "timeout_ms": 3000},
    ]))
    edge = make_edge("metrics-probe", config)
    before = by_origin(metrics(edge))
    assert (before["probed"]["last_probe"], before["unprobed"]["last_probe"]) == (None, None)

    started = time.time() * 1000
    edge.run_cron()
    up = by_origin(metrics(edge))["probed"]["last_probe"]
    assert up["up"] is True and started - 1000 <= up["at_ms"] <= time.time() * 1000 + 1000, up
    assert probed.probes == 1

    probed.health_status = 503
    edge.run_cron()
    view = by_origin(metrics(edge))
    down = view["probed"]["last_probe"]
    assert down["up"] is False and down["at_ms"] >= up["at_ms"], down
    assert view["unprobed"]["last_probe"] is None, "an origin without a health_url is never probed"
    assert view["probed"]["hour"]["attempts"] == 0, "a probe is not a delivery attempt"

    if CLI.is_file():
        env = {k: v for k, v in os.environ.items() if k not in ("ADMIN_TOKEN", "DIDIT_EDGE_URL")}
        env.update(ADMIN_TOKEN=ADMIN_TOKEN, DIDIT_EDGE_URL=edge.url)
        table = subprocess.run([str(CLI), "admin", "metrics"], env=env, capture_output=True, text=True, timeout=60)
        assert table.returncode == 0, table.stderr
        rows = [line.split() for line in table.stdout.splitlines()]
        assert rows[0][-2:] == ["LAST", "PROBE"], rows[0]
        probed_hour = next(row for row in rows if row[:2] == ["probed", "hour"])
        assert probed_hour[-4] == "down" and probed_hour[-3].isdigit() and probed_hour[-2:] == ["s", "ago"], \
            probed_hour
        assert next(row for row in rows if row[:2] == ["unprobed", "hour"])[-1] == "-"
