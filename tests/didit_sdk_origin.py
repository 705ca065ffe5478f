"""An app on 127.0.0.1 that takes Didit webhooks the way Didit's official Python SDK
(`didit-sdk`, pinned in requirements.txt) tells apps to: `didit.webhooks.parse_webhook_payload`
(which every one of the SDK's FastAPI, Django and Flask helpers calls with the raw body and all
headers, and which runs `verify_webhook_signature`), then the SDK's own dedup store keyed by
`compute_dedup_key` (the body's `event_id`), releasing the claim when the app fails, as the
helpers do. The drop-in format's integration tests point an origin of `"format": "didit"` here.

Run as its own process with `python -I` (tests/didit.py, the tests' Didit sender, would shadow
the SDK's `didit` package in the tests' own interpreter):

    python -I tests/didit_sdk_origin.py PORT SECRET

`GET /log` lists every request (verified or not); `POST /fail` {"count": n} makes the next n
verified requests answer 503; `POST /check` {"body", "headers", "now", "secret"} asks the SDK's
`verify_webhook_signature` about a request with the SDK's clock frozen at `now`; `POST
/fastapi` {"secret", "requests": [{"body", "headers", "now"}, …]} sends those requests, in
order and with the clock frozen at each `now`, to a FastAPI app guarded by the SDK's
`DiditWebhookGuard` with an in-memory dedup store, and answers each one's status and
`is_duplicate`.
"""

import base64
import json
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from unittest import mock

import didit.webhooks
from didit.dedup import InMemoryWebhookDedupStore, compute_dedup_key
from didit.errors import DiditSignatureError


def main():
    port, secret = int(sys.argv[1]), sys.argv[2]
    lock = threading.Lock()
    log = []
    failing = [0]
    store = InMemoryWebhookDedupStore()

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def reply(self, status, payload=None):
            body = json.dumps(payload).encode() if payload is not None else b""
            self.send_response(status)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self):
            with lock:
                self.reply(200, list(log))

        def do_POST(self):
            raw = self.rfile.read(int(self.headers.get("content-length") or 0))
            if self.path == "/fail":
                with lock:
                    failing[0] = json.loads(raw)["count"]
                return self.reply(200, {})
            if self.path == "/check":
                return self.reply(200, {"verified": check(json.loads(raw))})
            if self.path == "/fastapi":
                return self.reply(200, fastapi_app(json.loads(raw)))
            headers = dict(self.headers.items())
            entry = {"path": self.path, "headers": {k.lower(): v for k, v in headers.items()},
                     "body": base64.b64encode(raw).decode(), "at": time.time()}
            try:
                payload = didit.webhooks.parse_webhook_payload(raw, headers, secret)
            except DiditSignatureError as error:
                entry.update(verified=False, error=str(error), answered=401)
                with lock:
                    log.append(entry)
                return self.reply(401, {"detail": "Invalid webhook signature or expired timestamp"})
            except Exception as error:  # noqa: BLE001 - the SDK's model refused a verified body
                # (its helpers let this escape: a 500 from the framework).
                entry.update(verified=None, error=repr(error), answered=500)
                with lock:
                    log.append(entry)
                return self.reply(500, {"detail": "unhandled"})
            key = compute_dedup_key(payload)
            duplicate = not store.claim(key)
            with lock:
                fail = failing[0] > 0
                failing[0] -= int(fail)
            if fail:
                store.release(key)
            status = 503 if fail else 200
            entry.update(verified=True, answered=status, duplicate=duplicate, dedup_key=key,
                         payload=payload.raw_data, status=payload.status.value)
            with lock:
                log.append(entry)
            self.reply(status, {"ok": not fail})

    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    server.daemon_threads = True
    print("ready", flush=True)
    server.serve_forever()


def check(request):
    """`verify_webhook_signature` on a recorded request, the SDK's clock frozen at `now`."""
    raw = base64.b64decode(request["body"])
    with mock.patch.object(didit.webhooks.time, "time", return_value=float(request["now"])):
        return didit.webhooks.verify_webhook_signature(raw, request["headers"], request["secret"])


def fastapi_app(job):
    """The requests through FastAPI and the SDK's `DiditWebhookGuard`, as an app wires them."""
    from fastapi import Depends, FastAPI
    from fastapi.testclient import TestClient
    from didit.integrations.fastapi import DiditWebhookGuard

    guard = DiditWebhookGuard(secret=job["secret"], dedup_store=InMemoryWebhookDedupStore())
    app = FastAPI()

    @app.post("/didit/webhook")
    def take(payload=Depends(guard)):
        return {"duplicate": payload.is_duplicate, "event_id": payload.event_id}

    client = TestClient(app, raise_server_exceptions=False)
    answers = []
    for request in job["requests"]:
        with mock.patch.object(didit.webhooks.time, "time", return_value=float(request["now"])):
            response = client.post("/didit/webhook", content=base64.b64decode(request["body"]),
                                   headers=request["headers"])
        body = response.json() if response.headers.get("content-type") == "application/json" else {}
        answers.append({"status": response.status_code, "duplicate": body.get("duplicate")})
    return answers


if __name__ == "__main__":
    main()
