"""Failover within one delivery attempt: a consumer's origins are tried by priority until one
takes the event, each with its own timeout, with the same webhook-id everywhere."""

import json
import time

import didit
from harness import ADMIN_TOKEN, DIDIT_SECRET, base_config


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


def origin_health(edge):
    status, _, raw = edge.request("GET", "/admin/origins", headers={"Authorization": f"Bearer {ADMIN_TOKEN}"})
    assert status == 200, raw
    return {o["name"]: o["health"]["state"] for o in json.loads(raw)["origins"]}


def test_admin_api_needs_the_token(make_edge, make_origin):
    origin = make_origin()
    edge = make_edge("admin", base_config(origin.url, ADMIN_TOKEN=ADMIN_TOKEN))
    for headers in ({}, {"Authorization": "Bearer wrong-token"}, {"Authorization": ADMIN_TOKEN}):
        status, _, raw = edge.request("GET", "/admin/origins", headers=headers)
        assert (status, json.loads(raw)["error"]["code"]) == (401, "unauthorized")
        assert ADMIN_TOKEN not in raw.decode()
    status, _, raw = edge.request("GET", "/admin/origins", headers={"Authorization": f"Bearer {ADMIN_TOKEN}"})
    [entry] = json.loads(raw)["origins"]
    assert status == 200 and entry["name"] == "test-origin" and entry["health"]["state"] == "closed"
    assert "url" not in entry, "origin URLs may carry credentials"


def test_breaker_opens_on_a_failing_primary_and_closes_when_it_recovers(make_edge, make_origin):
    primary, secondary = make_origin(), make_origin()
    primary.status = 500
    config = two_clouds(primary, secondary)
    config["ADMIN_TOKEN"] = ADMIN_TOKEN
    edge = make_edge("breaker", config)
    first = [send(edge) for _ in range(3)]
    assert secondary.wait_for(lambda o: set(first) <= set(o.delivered_ids()), timeout=30)
    assert len(primary.deliveries()) == 3
    assert origin_health(edge) == {"aws-eu": "open", "gcp-us": "closed"}
    # While open, the primary is not hammered: new events go straight to the secondary.
    during = [send(edge) for _ in range(3)]
    assert secondary.wait_for(lambda o: set(during) <= set(o.delivered_ids()), timeout=30)
    assert len(primary.deliveries()) == 3
    # Recovered: after the cool-down (10 s by default) probes succeed and traffic returns.
    primary.status = 204
    time.sleep(10.5)
    after = [send(edge) for _ in range(4)]
    assert primary.wait_for(lambda o: set(after) <= set(o.delivered_ids()) | set(secondary.delivered_ids()), timeout=30)
    assert set(after) & set(primary.delivered_ids()), "traffic returns to the primary"
    assert origin_health(edge)["aws-eu"] == "closed"
    assert after[-1] in primary.delivered_ids()


def test_retry_after_is_honoured(make_edge, make_origin):
    primary, secondary = make_origin(), make_origin()
    primary.status, primary.retry_after = 429, 30
    config = two_clouds(primary, secondary)
    config["ADMIN_TOKEN"] = ADMIN_TOKEN
    edge = make_edge("retry-after", config)
    first = send(edge)
    assert secondary.wait_for(lambda o: first in o.delivered_ids(), timeout=30)
    assert origin_health(edge)["aws-eu"] == "open", "one 429 with Retry-After opens the breaker at once"
    later = [send(edge) for _ in range(3)]
    assert secondary.wait_for(lambda o: set(later) <= set(o.delivered_ids()), timeout=30)
    assert len(primary.deliveries()) == 1, "no request during the 30 s the origin asked for"


def test_cron_probes_open_and_close_the_breaker_without_traffic(make_edge, make_origin):
    primary, secondary = make_origin(), make_origin()
    config = base_config(primary.url, ADMIN_TOKEN=ADMIN_TOKEN, ORIGINS=json.dumps([
        {"name": "aws-eu", "url": primary.url, "priority": 0, "timeout_ms": 1500, "health_url": primary.health_url,
         "region": "eu-west-1", "cloud": "aws"},
        {"name": "gcp-us", "url": secondary.url, "priority": 1, "timeout_ms": 1500, "weight": 2},
    ]))
    edge = make_edge("probes", config)
    primary.health_status = 503
    for _ in range(3):
        edge.run_cron()
    assert primary.probes == 3 and secondary.probes == 0, "only origins with a health_url are probed"
    assert origin_health(edge) == {"aws-eu": "open", "gcp-us": "closed"}
    # Events now skip the primary without trying it.
    event = send(edge)
    assert secondary.wait_for(lambda o: event in o.delivered_ids(), timeout=30)
    assert primary.deliveries() == []
    status, _, raw = edge.request("GET", "/admin/origins", headers={"Authorization": f"Bearer {ADMIN_TOKEN}"})
    entry = json.loads(raw)["origins"][0]
    assert (entry["region"], entry["cloud"], entry["probed"]) == ("eu-west-1", "aws", True)
    # Healthy again: after the cool-down two good probes close it.
    primary.health_status = 200
    time.sleep(10.5)
    edge.run_cron()
    edge.run_cron()
    assert origin_health(edge)["aws-eu"] == "closed"
