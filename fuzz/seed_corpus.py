"""Seeds the fuzz corpus from the project's fixtures: every fixture payload (signed and not),
the canonical-JSON vectors, tokens, settings and query strings. Run from the repo root;
`cargo fuzz` grows the corpus from here, and core/tests/fuzz_corpus.rs replays it on stable."""

import base64
import hashlib
import hmac
import json
import pathlib

ROOT = pathlib.Path(__file__).resolve().parent.parent
CORPUS = ROOT / "fuzz" / "corpus"
SEP = b"\xff"


def put(target, data):
    folder = CORPUS / target
    folder.mkdir(parents=True, exist_ok=True)
    (folder / hashlib.sha1(data).hexdigest()).write_bytes(data)


def b64url(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=")


def token(claims, header=None, key=b"fuzz-stream-secret-0123456789-abcdefghij"):
    signing = b64url(json.dumps(header or {"alg": "HS256", "typ": "JWT"}).encode()) + b"." + \
        b64url(json.dumps(claims).encode())
    return signing + b"." + b64url(hmac.new(key, signing, hashlib.sha256).digest())


def main():
    events = json.loads((ROOT / "tests" / "fixtures" / "events.json").read_text())
    vectors = json.loads((ROOT / "core" / "tests" / "vectors.json").read_text())
    for case in events["cases"]:
        body = json.dumps(case["payload"], sort_keys=True, separators=(",", ":")).encode()
        put("envelope", body)
        put("canonical", body)
        put("intake", body)
        signature = hmac.new(b"fuzz-didit-secret", body, hashlib.sha256).hexdigest().encode()
        put("intake", body + SEP + signature + SEP + SEP + SEP + str(events["timestamp"]).encode())
        put("intake", body + SEP + b"0" * 64 + SEP + signature + SEP + signature + SEP + b"x")
    for vector in vectors["canonical"]:
        put("canonical", vector["body"].encode())
        put("envelope", vector["body"].encode())
    put("intake", b'{"webhook_type":"user.status.updated","vendor_data":"a\\"b\\\\c","timestamp":1763784000,"status":"ACTIVE"}')
    put("intake", b'[1,2]')
    put("intake", b'{"webhook_type":5,"session_id":{"a":1},"timestamp":"2025-11-22T04:00:00Z"}')
    now = 1_763_784_000
    claims = {"sub": "user-42", "scope": "self", "aud": "didit-edge", "iat": now - 10, "exp": now + 600, "jti": "j"}
    put("stream_token", token(claims))
    put("stream_token", token(dict(claims, scope="admin", sessions=["s-1", "s-2"], nbf=now - 5)))
    put("stream_token", token(dict(claims, aud=["x", "didit-edge"])))
    put("stream_token", token(claims, header={"alg": "none"}))
    put("stream_token", token(claims, key=b"another-key"))
    put("stream_token", b"a.b.c")
    sep = "\u0001"
    origins = [
        '[{"name":"aws","url":"https://a.example/","priority":0,"weight":3,"timeout_ms":2000}]',
        '[{"name":"crm","url":"https://c.example/","consumer":"crm","event_types":["user.*"],"risk_levels":["high"]}]',
        '[{"name":"a","url":"https://a","priorty":1}]',
    ]
    rules = ['[{"code":"x","level":"high","when":{"status":["declined"]}}]', "not json", "[]"]
    schedules = ["5,30,120,600,1800,3600,7200,14400,28800,43200x7", "1x1000", "5,0", "1x4294967295,1"]
    for o, r, s in zip(origins, rules, schedules):
        put("config", sep.join(["old", o, r, s, "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", "600"]).encode())
        put("config", o.encode())
        put("config", s.encode())
    for query in ["consumer=crm&limit=10&after=5", "limit=0", "consumers=x", "workflow=wf&type=user.*&risk=high",
                  "access_token=abc&risk=severe", "&&=&"]:
        put("admin_query", query.encode())
    # Erasure bodies (the same target reads its bytes as one) and the old path form.
    for body in [{"subject_kind": "user", "subject_id": ".."}, {"subject_kind": "session", "subject_id": "a/../b%2F"},
                 {"subject_kind": "user", "subject_id": "Zo\u00eb \u65e5\u672c"}, {"subject_kind": "person", "subject_id": "x"},
                 {"subject_kind": "user", "subject_id": " "}, {"subject_kind": "user"}]:
        put("admin_query", json.dumps(body).encode())
    put("admin_query", b"/admin/subjects/user/%2E%2E")
    pages = [
        {"count": 2, "next": None, "previous": None, "results": [
            {"session_id": "5b3720ed-d429-42ef-b67f-37ea805f48ee", "session_number": 720, "status": "Approved",
             "full_name": "Zoë Ångström", "vendor_data": "user-1", "created_at": "2025-06-09T12:26:54.328364Z",
             "session_kind": "user"},
            {"session_id": "s-2", "status": "In Progress", "created_at": 1763784000.5, "session_kind": "business"}]},
        {"count": 150, "next": "https://verification.didit.me/v3/sessions/?offset=100", "results": [
            {"session_id": "", "status": "Declined", "created_at": "yesterday"}]},
        {"count": 0, "next": "x", "results": []},
    ]
    decisions = [
        {"session_id": "s-1", "status": "Declined", "vendor_data": "user-1", "workflow_id": "wf", "workflow_version": 3,
         "metadata": {"plan": "gold"}, "id_verifications": [{"node_id": "n", "status": "Declined", "warnings": [
             {"risk": "DOCUMENT_EXPIRED", "log_type": "error"}]}], "aml_screenings": [{"status": "Approved"}]},
        {"session_id": "s-1", "session_kind": "business", "status": "APPROVED", "registry_checks": []},
        {"session_id": "other", "status": "Approved"},
        {"status": "In Progress"},
    ]
    retry_afters = [b"120", b"Sun, 06 Nov 1994 08:49:37 GMT", b"soon", b"99999999999999999999"]
    for page, decision, retry_after in zip(pages + pages[:1], decisions, retry_afters):
        put("didit_api", json.dumps(page).encode() + SEP + json.dumps(decision).encode() + SEP + retry_after)

    destinations = [
        [{"uuid": "d-edge", "label": "edge", "url": "https://u:p@edge.example/webhooks/didit?t=1", "enabled": True,
          "webhook_version": "v3", "subscribed_events": ["status.updated"], "deliveries_count": 3,
          "failed_deliveries_count": 1, "average_response_time_ms": 41.5, "error_rate_percentage": 33.3,
          "last_delivery_at": "2025-11-22T03:59:00Z", "health_status": "healthy", "daily_points": []}],
        [{"uuid": "a/../b", "url": "ftp://x", "enabled": "yes"}, 3, None],
        {"results": []},
    ]
    deliveries = [
        {"count": 2, "next": "https://verification.didit.me/v3/webhook/destinations/d-edge/deliveries/?offset=1",
         "previous": None, "results": [
             {"uuid": "a1", "session_id": "s1", "request_url": "https://edge.example/webhooks/didit",
              "response_status": 503, "response_time_ms": 12, "status": "failed",
              "webhook_type": "status.updated", "created_at": "2025-11-22T03:58:00.123456Z"},
             {"session_id": "s2", "response_status": 200, "created_at": "2025-11-22T03:59:00Z"}]},
        {"next": "https://evil.example/v3/x", "results": [{"session_id": "s1", "response_time_ms": 1e300}]},
        [],
    ]
    lookups = [
        {"subject_kind": "session", "events": [{"created_at": 1763783000, "received": {"at_ms": 1763783100000}}]},
        {"events": [{"created_at": -99999999999999, "received": {"at_ms": 9223372036854775807}}]},
        "subject_not_found",
    ]
    for listed, page, lookup in zip(destinations, deliveries, lookups):
        put("didit_view", json.dumps(listed).encode() + SEP + json.dumps(page).encode() + SEP + json.dumps(lookup).encode())

    access = {"iss": "https://team.cloudflareaccess.com", "aud": ["aud-1"], "exp": now + 300,
              "iat": now - 5, "nbf": now - 5, "email": "ops@example.com", "type": "app"}
    rs256 = {"alg": "RS256", "kid": "k1", "typ": "JWT"}
    put("access", token(access, header=rs256))
    put("access", token(dict(access, aud="aud-1", email="reader@example.com"), header=rs256))
    put("access", token(dict(access, aud=["other"]), header=rs256))
    put("access", token({k: v for k, v in access.items() if k != "email"} | {"common_name": "svc.access"}, header=rs256))
    put("access", token(access, header={"alg": "HS256", "kid": "k1"}))
    put("access", json.dumps({"keys": [{"kid": "k1", "kty": "RSA", "alg": "RS256", "use": "sig", "n": "sXch", "e": "AQAB"},
                                        {"kid": "e1", "kty": "EC", "crv": "P-256", "x": "a", "y": "b"}]}).encode())


if __name__ == "__main__":
    main()
