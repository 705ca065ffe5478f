"""A real HTTP origin on 127.0.0.1 that records what it receives and verifies every request
with the independent `standardwebhooks` library. Its behaviour can be switched while a test runs.

Run directly, it is the demo origin: it prints each verified event.
"""

import argparse
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from standardwebhooks.webhooks import Webhook, WebhookVerificationError


class Origin:
    """Start with `start()`; `stop()` closes the socket, so connections are refused ("down")."""

    def __init__(self, port: int, signing_secret: str, echo=False, schema=None):
        self.port = port
        self.verifier = Webhook(signing_secret)
        # With a JSON Schema, every event is validated and an invalid one answered 422.
        self.validator = None
        if schema is not None:
            from jsonschema import Draft202012Validator, FormatChecker
            self.validator = Draft202012Validator(schema, format_checker=FormatChecker())
        self.echo = echo
        self.lock = threading.Lock()
        self.received = []  # every request, verified or not, with its headers and parsed body
        self.status = 204
        self.delay_secs = 0.0
        self.retry_after = None  # a Retry-After header to send with every answer, if set
        self.extra_headers = {}  # more headers for every answer to a POST
        # Hang up on every POST without answering (a crashed process behind a live socket).
        self.hang_up = False
        self.health_status = 200  # what GET (the health probe, or any other GET) answers
        # POSTs being handled right now, and the most there ever were at once.
        self.in_flight = 0
        self.peak_in_flight = 0
        self.probes = 0
        self.get_paths = []  # the path of every GET, health probes included
        self.server = None
        self.thread = None

    @property
    def url(self):
        return f"http://127.0.0.1:{self.port}/didit-events"

    @property
    def health_url(self):
        return f"http://127.0.0.1:{self.port}/health"

    def start(self):
        origin = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):
                with origin.lock:
                    origin.probes += 1
                    origin.get_paths.append(self.path)
                    status = origin.health_status
                self.send_response(status)
                self.send_header("content-length", "0")
                self.end_headers()

            def do_POST(self):
                with origin.lock:
                    origin.in_flight += 1
                    origin.peak_in_flight = max(origin.peak_in_flight, origin.in_flight)
                try:
                    self.handle_post()
                finally:
                    with origin.lock:
                        origin.in_flight -= 1

            def handle_post(self):
                length = int(self.headers.get("content-length") or 0)
                body = self.rfile.read(length)
                headers = {k.lower(): v for k, v in self.headers.items()}
                try:
                    origin.verifier.verify(body, headers)
                    verified = True
                except WebhookVerificationError:
                    verified = False
                try:
                    event = json.loads(body)
                except ValueError:
                    event = None
                schema_errors = []
                if origin.validator is not None:
                    schema_errors = [f"{'/'.join(map(str, e.absolute_path))}: {e.message}"
                                     for e in origin.validator.iter_errors(event)]
                with origin.lock:
                    status, delay = origin.status, origin.delay_secs
                    if schema_errors:
                        status = 422
                    if origin.hang_up:
                        origin.received.append({"headers": headers, "event": event, "verified": verified,
                                                "schema_errors": [], "answered": 0, "at": time.time()})
                        self.close_connection = True
                        return
                    origin.received.append({"headers": headers, "event": event, "verified": verified,
                                            "schema_errors": schema_errors, "answered": status, "at": time.time(),
                                            "raw": body})
                if origin.echo:
                    print(json.dumps({"verified": verified, "webhook-id": headers.get("webhook-id"),
                                      "event": event}, indent=2, ensure_ascii=False), flush=True)
                if delay:
                    time.sleep(delay)
                self.send_response(status if verified else 401)
                if origin.retry_after is not None:
                    self.send_header("retry-after", str(origin.retry_after))
                for name, value in origin.extra_headers.items():
                    self.send_header(name, value)
                self.send_header("content-length", "0")
                self.end_headers()

        class Server(ThreadingHTTPServer):
            # The default listen backlog of 5 drops connections when fifty inboxes deliver at
            # once, and the edge's retry of a connection that then got through looks like a
            # duplicate; a real origin's backlog is far larger.
            request_queue_size = 256

        self.server = Server(("127.0.0.1", self.port), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()
        return self

    def stop(self):
        if self.server:
            self.server.shutdown()
            self.server.server_close()
            self.server = None

    def deliveries(self, verified_only=True):
        with self.lock:
            return [r for r in self.received if r["verified"] or not verified_only]

    def delivered_ids(self):
        """webhook-ids of requests that were verified and answered 2xx."""
        return [r["headers"].get("webhook-id") for r in self.deliveries() if 200 <= r["answered"] < 300]

    def wait_for(self, predicate, timeout=30.0):
        deadline = time.time() + timeout
        while time.time() < deadline:
            if predicate(self):
                return True
            time.sleep(0.1)
        return predicate(self)


def main():
    parser = argparse.ArgumentParser(description="Demo origin: prints each event didit-edge forwards.")
    parser.add_argument("--port", type=int, default=8788)
    parser.add_argument("--secret", required=True, help="the ORIGIN_SIGNING_SECRET (whsec_...)")
    args = parser.parse_args()
    origin = Origin(args.port, args.secret, echo=True).start()
    print(f"demo origin listening on {origin.url}", flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        origin.stop()


if __name__ == "__main__":
    main()
