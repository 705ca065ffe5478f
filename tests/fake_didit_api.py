"""Didit's API on 127.0.0.1, as reconciliation uses it, written for the tests from Didit's
documentation and its Python SDK (`didit-sdk`):

- `GET /v3/sessions/?session_kind=&date_from=&date_to=&limit=&offset=`: newest first, filtered on
  the session's *creation* date, `{"count", "next", "previous", "results"}`; rows carry identity
  data (name, portrait, email) the way Didit's do; a KYB count is capped at 100; the route
  without its trailing slash answers 301, as Didit's does;
- `GET /v3/session/{id}/decision/`: the v3 decision, 404 for an unknown session;
- `GET /v3/webhook/destinations/`: the webhook destinations, oldest first, unpaginated, with the
  delivery health Didit reports, computed from the attempts recorded here (no secret: the list
  has none);
- `GET /v3/webhook/destinations/{uuid}/deliveries/?limit=&offset=&date_from=&date_to=`: every
  attempt its own row, newest first, filtered on UTC days (inclusive), `count` capped at 100 as
  Didit's is, `next` an absolute URL; `max_page` caps the rows of a page whatever `limit` asks;
- `x-api-key` is required (403 otherwise).

Like Didit, it also sends webhooks (`send_webhook`): a signed POST to a destination's URL (the
worker under test), recorded with the status the worker answered and how long it took, which
is what the deliveries list then serves.

Faults are switched while a test runs: `outage` (every request answered with that status),
`queue_faults` (the next requests answered with given statuses and headers), `delay_secs`
(slow answers), `poison` (one session's decision answers a status, too much, something that is
not JSON, or too late, every time). Creation times are kept to the microsecond, as Didit's are.
Each request is recorded with when it started and when it was answered.
"""

import json
import threading
import uuid
import time
import urllib.parse
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


def iso(unix_secs):
    return datetime.fromtimestamp(unix_secs, timezone.utc).isoformat(timespec="microseconds").replace("+00:00", "Z")


def iso_us(unix_us):
    """Unix microseconds as Didit writes them, exactly (no float rounding)."""
    secs, micros = divmod(unix_us, 1_000_000)
    return datetime.fromtimestamp(secs, timezone.utc).replace(microsecond=micros) \
        .isoformat(timespec="microseconds").replace("+00:00", "Z")


def parse_iso(text):
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def parse_iso_us(text):
    moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    return int(moment.replace(microsecond=0).timestamp()) * 1_000_000 + moment.microsecond


class FakeDiditApi:
    def __init__(self, port, api_key):
        self.port = port
        self.api_key = api_key
        self.lock = threading.Lock()
        self.sessions = {}  # session id -> session dict
        self.number = 0
        self.requests = []  # [start time, path, query dict, key_ok, answered time, status]
        self.outage = None  # a status answered to every request while set
        self.faults = []  # (status, headers) answered to the next requests, in order
        self.delay_secs = 0.0
        self.poisoned = {}  # session id -> ("status", n) | ("huge",) | ("garbage",) | ("slow", secs)
        self.planned = []  # [path prefix, requests to let through first, (status, headers)]
        self.destinations = []  # {uuid, label, url, enabled, created_us}, oldest first
        self.deliveries = []  # one row per attempt, in the order they were made
        self.max_page = None  # most rows per deliveries page, whatever `limit` asks
        self.server = None

    @property
    def base_url(self):
        return f"http://127.0.0.1:{self.port}/v3"

    def add_session(self, session_id, status, created_at=None, kind="user", vendor_data="user-42",
                    created_us=None):
        """A session created at `created_us` (Unix microseconds), or `created_at` (seconds), or now."""
        if created_us is None:
            created_us = round((time.time() if created_at is None else created_at) * 1_000_000)
        with self.lock:
            self.number += 1
            self.sessions[session_id] = {
                "session_id": session_id,
                "session_number": self.number,
                "status": status,
                "created_us": created_us,
                "session_kind": kind,
                "vendor_data": vendor_data,
            }

    def add_destination(self, url, label="edge", enabled=True):
        """A webhook destination posting to `url`; its uuid."""
        with self.lock:
            destination = {"uuid": str(uuid.uuid4()), "label": label, "url": url, "enabled": enabled,
                           "created_us": round(time.time() * 1_000_000)}
            self.destinations.append(destination)
        return destination["uuid"]

    def send_webhook(self, destination_uuid, payload, secret, kinds=("raw",)):
        """Posts `payload` to the destination as Didit does (signed with `secret`, timeout 5 s),
        and records the attempt with the answer's status and time; returns the status (None
        when nothing answered)."""
        import didit
        import urllib.error
        import urllib.request
        with self.lock:
            [destination] = [d for d in self.destinations if d["uuid"] == destination_uuid]
        body = didit.encode(payload)
        request = urllib.request.Request(destination["url"], data=body, method="POST",
                                         headers=didit.signed_headers(body, payload, secret, kinds=kinds))
        started = time.time()
        try:
            with urllib.request.urlopen(request, timeout=5) as response:
                status = response.status
        except urllib.error.HTTPError as error:
            status = error.code
        except OSError:
            status = None
        elapsed_ms = round((time.time() - started) * 1000)
        with self.lock:
            self.deliveries.append({
                "uuid": str(uuid.uuid4()), "destination": destination_uuid,
                "session_id": payload.get("session_id"), "request_url": destination["url"],
                "response_status": status, "response_time_ms": elapsed_ms,
                "status": "success" if status is not None and 200 <= status < 300 else "failed",
                "webhook_type": payload.get("webhook_type"), "created_us": round(started * 1_000_000),
            })
        return status

    def attempts_of(self, session_id):
        with self.lock:
            return [dict(d) for d in self.deliveries if d["session_id"] == session_id]

    def destination_row(self, destination):
        rows = [d for d in self.deliveries if d["destination"] == destination["uuid"]]
        failed = [d for d in rows if d["status"] != "success"]
        times = [d["response_time_ms"] for d in rows]
        return {
            "uuid": destination["uuid"], "label": destination["label"], "url": destination["url"],
            "enabled": destination["enabled"], "webhook_version": "v3",
            "subscribed_events": ["status.updated", "data.updated"], "subscribed_events_count": 2,
            "deliveries_count": len(rows), "failed_deliveries_count": len(failed),
            "average_response_time_ms": sum(times) / len(times) if times else None,
            "error_rate_percentage": round(100 * len(failed) / len(rows), 2) if rows else 0.0,
            "last_delivery_at": iso_us(rows[-1]["created_us"]) if rows else None,
            "created_at": iso_us(destination["created_us"]), "updated_at": iso_us(destination["created_us"]),
            "health_status": "healthy" if not rows or len(failed) * 2 < len(rows) else "unhealthy",
            "daily_points": [],
        }

    def deliveries_page(self, destination_uuid, query):
        limit = int(query.get("limit", "20"))
        if self.max_page is not None:
            limit = min(limit, self.max_page)
        offset = int(query.get("offset", "0"))

        def day(row):
            return datetime.fromtimestamp(row["created_us"] / 1_000_000, timezone.utc).date().isoformat()

        with self.lock:
            rows = [d for d in self.deliveries if d["destination"] == destination_uuid
                    and query.get("date_from", "0000") <= day(d) <= query.get("date_to", "9999")]
        rows.reverse()  # newest first
        chunk = rows[offset:offset + limit]
        more = offset + len(chunk) < len(rows)
        after = dict(query, offset=str(offset + limit))
        return {
            "count": min(len(rows), 100),
            "next": f"{self.base_url}/webhook/destinations/{destination_uuid}/deliveries/?"
                    f"{urllib.parse.urlencode(after)}" if more else None,
            "previous": None,
            "results": [{k: v for k, v in d.items() if k not in ("destination", "created_us")}
                        | {"created_at": iso_us(d["created_us"])} for d in chunk],
        }

    def poison(self, session_id, *how):
        """Makes one session's decision fail the same way every time (see the module's doc)."""
        with self.lock:
            self.poisoned[session_id] = how

    def heal(self, session_id):
        with self.lock:
            self.poisoned.pop(session_id, None)

    def set_status(self, session_id, status):
        with self.lock:
            self.sessions[session_id]["status"] = status

    def queue_faults(self, *faults):
        with self.lock:
            self.faults.extend(faults)

    def plan_fault(self, prefix, skip, status, headers):
        """Lets `skip` requests whose path starts with `prefix` through, then answers the next
        one with `status` and `headers`."""
        with self.lock:
            self.planned.append([prefix, skip, (status, headers)])

    def requests_for(self, prefix):
        with self.lock:
            return [r for r in self.requests if r[1].startswith(prefix)]

    def decision_fetches(self, session_id):
        return len(self.requests_for(f"/v3/session/{session_id}/decision/"))

    def list_requests(self):
        return self.requests_for("/v3/sessions")

    def decision(self, session):
        status = session["status"]
        feature = "Declined" if status == "Declined" else "Approved"
        body = {
            "session_id": session["session_id"],
            "session_number": session["session_number"],
            "session_url": "https://verify.didit.me/example",
            "status": status,
            "workflow_id": "wf-kyc-basic",
            "vendor_data": session["vendor_data"],
            "metadata": {"plan": "gold"},
            "created_at": iso_us(session["created_us"]),
            "reviews": [],
        }
        if session["session_kind"] == "business":
            body["session_kind"] = "business"
            body["registry_checks"] = [{"node_id": "reg-1", "status": feature, "company_name": "Acme Ltd"}]
            body["aml_screenings"] = []
        else:
            body["id_verifications"] = [{
                "node_id": "id-1", "status": feature, "first_name": "Zoë", "last_name": "Ångström",
                "document_type": "Passport", "warnings": [] if feature == "Approved" else [
                    {"risk": "DOCUMENT_EXPIRED", "log_type": "error", "short_description": "expired"}],
            }]
            body["liveness_checks"] = [{"node_id": "live-1", "status": "Approved", "score": 99.5}]
            body["face_matches"] = [{"node_id": "face-1", "status": "Approved", "score": 97.0}]
            body["aml_screenings"] = [{"node_id": "aml-1", "status": "Approved", "total_hits": 0}]
        return body

    def page(self, query):
        kind = query.get("session_kind", "user")
        limit = int(query.get("limit", "50"))
        offset = int(query.get("offset", "0"))
        date_from = parse_iso_us(query["date_from"]) if "date_from" in query else None
        date_to = parse_iso_us(query["date_to"]) if "date_to" in query else None
        with self.lock:
            rows = [s for s in self.sessions.values()
                    if s["session_kind"] == kind
                    and (date_from is None or s["created_us"] >= date_from)
                    and (date_to is None or s["created_us"] <= date_to)]
        rows.sort(key=lambda s: s["session_number"], reverse=True)
        chunk = rows[offset:offset + limit]
        count = len(rows) if kind == "user" else min(len(rows), 100)
        after = dict(query, offset=str(offset + limit))
        results = []
        for s in chunk:
            row = {
                "session_id": s["session_id"], "session_number": s["session_number"],
                "session_url": "https://verify.didit.me/example", "status": s["status"],
                "vendor_data": s["vendor_data"], "created_at": iso_us(s["created_us"]),
                "session_kind": kind, "country": "ESP",
            }
            if kind == "user":
                row.update({"portrait_image": "https://example.com/portrait", "full_name": "Zoë Ångström",
                            "document_type": "P", "email_address": {"email": "zoe@example.com", "is_verified": True},
                            "features": [{"feature": "ID_VERIFICATION", "status": s["status"]}]})
            else:
                row.update({"company_name": "Acme Ltd"})
            results.append(row)
        more = offset + len(chunk) < len(rows)
        return {
            "count": count,
            "next": f"{self.base_url}/sessions/?{urllib.parse.urlencode(after)}" if more else None,
            "previous": None,
            "results": results,
        }

    def start(self):
        api = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def answer(self, status, body=None, headers=None, raw=None):
                self.record[5] = status
                if raw is None:
                    raw = json.dumps(body).encode() if body is not None else b""
                self.send_response(status)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(raw)))
                for name, value in (headers or {}).items():
                    self.send_header(name, value)
                self.end_headers()
                try:
                    self.wfile.write(raw)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the edge stopped reading (a body past its limit, or its timeout)
                with api.lock:
                    self.record[4] = time.time()

            def do_GET(self):
                url = urllib.parse.urlsplit(self.path)
                query = dict(urllib.parse.parse_qsl(url.query))
                key_ok = self.headers.get("x-api-key") == api.api_key
                self.record = [time.time(), url.path, query, key_ok, None, None]
                with api.lock:
                    planned = None
                    for plan in api.planned:
                        if url.path.startswith(plan[0]):
                            if plan[1] == 0:
                                planned = plan[2]
                                api.planned.remove(plan)
                            else:
                                plan[1] -= 1
                            break
                    api.requests.append(self.record)
                    outage = api.outage
                    fault = api.faults.pop(0) if api.faults and outage is None else None
                    fault = planned or fault
                    delay = api.delay_secs
                if delay:
                    time.sleep(delay)
                if outage is not None:
                    return self.answer(outage, {"detail": "unavailable"})
                if fault is not None:
                    return self.answer(fault[0], {"detail": "fault"}, fault[1])
                if not key_ok:
                    return self.answer(403, {"detail": "Invalid API key"})
                if url.path == "/v3/sessions":
                    return self.answer(301, None, {"location": f"/v3/sessions/?{url.query}"})
                if url.path == "/v3/sessions/":
                    return self.answer(200, api.page(query))
                if url.path == "/v3/webhook/destinations/":
                    with api.lock:
                        rows = [api.destination_row(d) for d in api.destinations]
                    return self.answer(200, rows)
                parts = url.path.split("/")
                if len(parts) == 7 and parts[:4] == ["", "v3", "webhook", "destinations"] \
                        and parts[5:] == ["deliveries", ""]:
                    destination = urllib.parse.unquote(parts[4])
                    with api.lock:
                        known = any(d["uuid"] == destination for d in api.destinations)
                    if not known:
                        return self.answer(404, {"detail": "Not found."})
                    return self.answer(200, api.deliveries_page(destination, query))
                parts = url.path.split("/")
                if len(parts) == 6 and parts[:3] == ["", "v3", "session"] and parts[4:] == ["decision", ""]:
                    session_id = urllib.parse.unquote(parts[3])
                    with api.lock:
                        session = api.sessions.get(session_id)
                        poison = api.poisoned.get(session_id)
                    if poison is not None:
                        return self.poisoned(session, poison)
                    if session is None:
                        return self.answer(404, {"detail": "Not found."})
                    return self.answer(200, api.decision(session))
                return self.answer(404, {"detail": "Not found."})

            def poisoned(self, session, how):
                if how[0] == "status":
                    return self.answer(how[1], {"detail": "poisoned"})
                if how[0] == "huge":
                    body = api.decision(session)
                    body["reviews"] = [{"note": "x" * 1024} for _ in range(1100)]  # over 1 MiB
                    return self.answer(200, body)
                if how[0] == "garbage":
                    return self.answer(200, raw=b'{"session_id": "truncated')
                if how[0] == "slow":
                    time.sleep(how[1])
                    return self.answer(200, api.decision(session))
                raise ValueError(how)

        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def stop(self):
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()
            self.server = None
