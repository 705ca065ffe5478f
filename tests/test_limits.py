"""An origin with `max_concurrency` and `max_per_second` (docs/origins.md#limits): after an
outage every inbox's retries together stay within them, and nothing is lost, duplicated or
reordered. Through the real worker under `wrangler dev`, the origin's gate (the `Health`
instance `gate:<origin>`), and a real origin on 127.0.0.1 that counts the requests it is
handling at once."""

import json
import math
import time

from harness import ADMIN_TOKEN, base_config
from test_outages import assert_exactly_once_in_order, send_subjects, wait_for_all

MAX_CONCURRENCY = 2
MAX_PER_SECOND = 5
# The design's bound (core::origin_gate): grants at least ⌈1000 / rate⌉ ms apart, each request
# started within GRANT_FRESH_MS of asking for it.
INTERVAL_SECS = math.ceil(1000 / MAX_PER_SECOND) / 1000
GRANT_FRESH_SECS = 0.5
# What the edge's start of a request and its arrival at the origin may be apart on a loaded
# machine: only ever loosens the bounds below, never tightens them.
ARRIVAL_SLACK_SECS = 1.0


def test_after_an_outage_a_limited_origin_gets_no_more_than_its_limits(make_edge, make_origin):
    origin = make_origin()
    with origin.lock:
        origin.status = 503  # the outage: every request answered, and counted
        # Each answer takes longer than the rate's interval: at 5 a second, three requests would
        # overlap if max_concurrency did not hold them back.
        origin.delay_secs = 0.5
    edge = make_edge("limits", base_config(origin.url, ADMIN_TOKEN=ADMIN_TOKEN, ORIGINS=json.dumps([
        {"name": "limited", "url": origin.url, "timeout_ms": 2000,
         "max_concurrency": MAX_CONCURRENCY, "max_per_second": MAX_PER_SECOND},
    ])))
    sent = send_subjects(edge, subjects=20, per_subject=2, workers=8)  # 40 events
    time.sleep(6)  # retries every second from every inbox, all failing
    during_outage = len(origin.received)
    with origin.lock:
        origin.status = 204
    wait_for_all(sent, [origin], timeout=240)
    time.sleep(3)

    # Nothing lost, nothing twice (the origin always answered well within its timeout), each
    # subject's events in order; nothing became a dead letter.
    assert_exactly_once_in_order(sent, origin)
    status, page = edge.admin("GET", "/admin/dead-letters")
    assert status == 200 and page["dead_letters"] == [], page

    starts = sorted(r["at"] for r in origin.received)
    print(f"limited origin: at most {origin.peak_in_flight} at once, {len(starts)} requests "
          f"({during_outage} during the outage) over {starts[-1] - starts[0]:.1f} s")
    # Never more than max_concurrency requests at once, from the origin's own count.
    assert origin.peak_in_flight <= MAX_CONCURRENCY, origin.peak_in_flight
    # The rate, counted: N requests need at least (N - 1) intervals between their grants.
    n = len(starts)
    assert n >= 40 and during_outage > 0
    assert starts[-1] - starts[0] >= (n - 1) * INTERVAL_SECS - GRANT_FRESH_SECS - ARRIVAL_SLACK_SECS, \
        f"{n} requests in {starts[-1] - starts[0]:.2f} s"
    # In any window of W seconds at most ⌈(W + GRANT_FRESH + slack) / interval⌉ requests.
    for window in (1.0, 5.0):
        bound = math.ceil((window + GRANT_FRESH_SECS + ARRIVAL_SLACK_SECS) / INTERVAL_SECS)
        most = max(sum(1 for t in starts[i:] if t < start + window) for i, start in enumerate(starts))
        assert most <= bound, f"{most} requests within {window} s (at most {bound})"
