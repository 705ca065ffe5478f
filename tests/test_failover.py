"""Failover within one delivery attempt: a consumer's origins are tried by priority until one
takes the event, each with its own timeout, with the same webhook-id everywhere."""

import json
import time

import didit
from harness import DIDIT_SECRET, base_config


def two_clouds(primary, secondary):
    return base_config(primary.url, ORIGINS=json.dumps([
        {"name": "aws-eu", "url": primary.url, "priority": 0, "timeout_ms": 1500},
        {"name": "gcp-us", "url": secondary.url, "priority": 1, "timeout_ms": 1500},
    ]))


def send(edge):
    payload = didit.session_payload()
    body = didit.encode(payload)
    status, reply = edge.post_webhook(body, didit.signed_headers(body, payload, DIDIT_SECRET))
    assert (status, reply["status"]) == (200, "accepted"), reply
    return reply["id"]


def test_primary_down_then_back(make_edge, make_origin):
    primary, secondary = make_origin(start=False), make_origin()
    edge = make_edge("failover-down", two_clouds(primary, secondary))
    first = send(edge)
    assert secondary.wait_for(lambda o: first in o.delivered_ids(), timeout=30)
    primary.start()
    second = send(edge)
    assert primary.wait_for(lambda o: second in o.delivered_ids(), timeout=30)
    time.sleep(2)
    assert secondary.delivered_ids() == [first], "each event reaches exactly one origin of the consumer"
    assert primary.delivered_ids() == [second]


def test_slow_or_failing_primary_fails_over_in_the_same_attempt(make_edge, make_origin):
    primary, secondary = make_origin(), make_origin()
    primary.delay_secs = 3  # over its 1.5 s timeout
    edge = make_edge("failover-slow", two_clouds(primary, secondary))
    slow = send(edge)
    assert secondary.wait_for(lambda o: slow in o.delivered_ids(), timeout=30)
    primary.delay_secs, primary.status = 0, 503
    failing = send(edge)
    assert secondary.wait_for(lambda o: failing in o.delivered_ids(), timeout=30)
    # Both reached the primary first, with the same webhook-id the secondary then got.
    assert [d["headers"]["webhook-id"] for d in primary.deliveries()] == [slow, failing]
    time.sleep(2)
    assert secondary.delivered_ids() == [slow, failing]
