"""Didit's API on 127.0.0.1, as reconciliation uses it, written for the tests from Didit's
documentation and its Python SDK (`didit-sdk`):

- `GET /v3/sessions/?session_kind=&date_from=&date_to=&limit=&offset=`: newest first, filtered on
  the session's *creation* date, `{"count", "next", "previous", "results"}`; rows carry identity
  data (name, portrait, email) the way Didit's do; a KYB count is capped at 100; the route
  without its trailing slash answers 301, as Didit's does;
- `GET /v3/session/{id}/decision/`: the v3 decision, 404 for an unknown session;
- `x-api-key` is required (403 otherwise).

Faults are switched while a test runs: `outage` (every request answered with that status),
`queue_faults` (the next requests answered with given statuses and headers), `delay_secs`
(slow answers).
"""

import json
import threading
import time
import urllib.parse
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


def iso(unix_secs):
    return datetime.fromtimestamp(unix_secs, timezone.utc).isoformat(timespec="microseconds").replace("+00:00", "Z")


def parse_iso(text):
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


class FakeDiditApi:
    def __init__(self, port, api_key):
        self.port = port
        self.api_key = api_key
        self.lock = threading.Lock()
        self.sessions = {}  # session id -> session dict
        self.number = 0
        self.requests = []  # (time, path, query dict, key_ok)
        self.outage = None  # a status answered to every request while set
        self.faults = []  # (status, headers) answered to the next requests, in order
        self.delay_secs = 0.0
        self.server = None

    @property
    def base_url(self):
        return f"http://127.0.0.1:{self.port}/v3"

    def add_session(self, session_id, status, created_at=None, kind="user", vendor_data="user-42"):
        with self.lock:
            self.number += 1
            self.sessions[session_id] = {
                "session_id": session_id,
                "session_number": self.number,
                "status": status,
                "created_at": time.time() if created_at is None else created_at,
                "session_kind": kind,
                "vendor_data": vendor_data,
            }

    def set_status(self, session_id, status):
        with self.lock:
            self.sessions[session_id]["status"] = status

    def queue_faults(self, *faults):
        with self.lock:
            self.faults.extend(faults)

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
            "created_at": iso(session["created_at"]),
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
        date_from = parse_iso(query["date_from"]) if "date_from" in query else None
        date_to = parse_iso(query["date_to"]) if "date_to" in query else None
        with self.lock:
            rows = [s for s in self.sessions.values()
                    if s["session_kind"] == kind
                    and (date_from is None or s["created_at"] >= date_from)
                    and (date_to is None or s["created_at"] <= date_to)]
        rows.sort(key=lambda s: s["session_number"], reverse=True)
        chunk = rows[offset:offset + limit]
        count = len(rows) if kind == "user" else min(len(rows), 100)
        after = dict(query, offset=str(offset + limit))
        results = []
        for s in chunk:
            row = {
                "session_id": s["session_id"], "session_number": s["session_number"],
                "session_url": "https://verify.didit.me/example", "status": s["status"],
                "vendor_data": s["vendor_data"], "created_at": iso(s["created_at"]),
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

            def answer(self, status, body=None, headers=None):
                raw = json.dumps(body).encode() if body is not None else b""
                self.send_response(status)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(raw)))
                for name, value in (headers or {}).items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(raw)

            def do_GET(self):
                url = urllib.parse.urlsplit(self.path)
                query = dict(urllib.parse.parse_qsl(url.query))
                key_ok = self.headers.get("x-api-key") == api.api_key
                with api.lock:
                    api.requests.append((time.time(), url.path, query, key_ok))
                    outage = api.outage
                    fault = api.faults.pop(0) if api.faults and outage is None else None
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
                parts = url.path.split("/")
                if len(parts) == 6 and parts[:3] == ["", "v3", "session"] and parts[4:] == ["decision", ""]:
                    with api.lock:
                        session = api.sessions.get(urllib.parse.unquote(parts[3]))
                    if session is None:
                        return self.answer(404, {"detail": "Not found."})
                    return self.answer(200, api.decision(session))
                return self.answer(404, {"detail": "Not found."})

        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def stop(self):
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()
            self.server = None
