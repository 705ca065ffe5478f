"""Receives didit-edge events correctly in FastAPI.

1. Verify: the Standard Webhooks library checks `webhook-signature` over the raw body with the
   origin's `whsec_…` secret (and the timestamp, within 5 minutes). Anything else is 401.
2. Once per `webhook-id`: `processed_events.webhook_id` is the primary key, inserted in the same
   SQLite transaction as the effect (`BEGIN IMMEDIATE`: two copies at the same moment queue up
   behind one write lock). A duplicate is answered 200 and changes nothing.
3. Newest wins: a subject's decision remembers the event `time` it came from; an event older
   than that (a dead letter replayed after a newer event) is recorded as stale and changes nothing.
4. Risk: approved with `data.risk.level` low → approve; medium → review queue; high → block;
   anything else (a session still in progress, `unknown`) → only the status is recorded.
5. Answer fast: the effect and its follow-up task (the outbox) are committed before the 2xx; the
   slow part (a notification here) runs after the answer, and a task left undone by a crash is
   run again when the app starts. Slow work is therefore at least once: give the external call
   the `webhook-id` as its idempotency key.

Settings (environment): DIDIT_EDGE_SIGNING_SECRET (required, `whsec_…`), RECIPE_DB (SQLite
file, default `didit_events.db`), SLOW_WORK_SECONDS (the simulated slow call, default 2).
"""

import json
import os
import sqlite3
import threading
import time
from contextlib import asynccontextmanager
from datetime import datetime

from fastapi import BackgroundTasks, FastAPI, Request
from fastapi.responses import JSONResponse
from standardwebhooks.webhooks import Webhook, WebhookVerificationError
from starlette.concurrency import run_in_threadpool

DB_PATH = os.environ.get("RECIPE_DB", "didit_events.db")
SLOW_WORK_SECONDS = float(os.environ.get("SLOW_WORK_SECONDS", "2"))
verifier = Webhook(os.environ["DIDIT_EDGE_SIGNING_SECRET"])

SCHEMA = """
CREATE TABLE IF NOT EXISTS processed_events (
    webhook_id  TEXT PRIMARY KEY,          -- the guard: one row per event, ever
    subject     TEXT NOT NULL,
    event_time  TEXT NOT NULL,
    outcome     TEXT NOT NULL,             -- approved, review, blocked, recorded, stale
    received_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS decisions (
    subject     TEXT PRIMARY KEY,          -- "<kind>:<id>", e.g. session:1111…
    status_code TEXT,
    risk_level  TEXT NOT NULL,
    decision    TEXT NOT NULL,             -- approved, review, blocked, pending
    event_id    TEXT NOT NULL,
    event_time  TEXT NOT NULL,             -- the event `time` this decision came from
    updated_at  REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS review_queue (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    subject     TEXT NOT NULL,
    webhook_id  TEXT NOT NULL,
    signals     TEXT NOT NULL,             -- data.risk.signals, for the reviewer
    created_at  REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS outbox (        -- slow work, committed with the effect
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    webhook_id  TEXT NOT NULL,
    action      TEXT NOT NULL,
    subject     TEXT NOT NULL,
    done_at     REAL
);
CREATE INDEX IF NOT EXISTS outbox_webhook_id ON outbox (webhook_id);
CREATE TABLE IF NOT EXISTS notifications ( -- stands in for the outside world (mail, CRM, …)
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    webhook_id  TEXT NOT NULL,
    action      TEXT NOT NULL,
    subject     TEXT NOT NULL,
    sent_at     REAL NOT NULL
);
"""


def connect():
    # isolation_level=None: transactions are exactly the BEGIN/COMMIT written below.
    connection = sqlite3.connect(DB_PATH, timeout=30, isolation_level=None)
    connection.execute("PRAGMA busy_timeout = 30000")
    return connection


def event_time(value: str) -> datetime:
    """The CloudEvent `time` (RFC 3339 UTC): when Didit created the webhook."""
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def decide(data: dict):
    """(decision, action for the slow work) from the status and `data.risk.level`."""
    level = (data.get("risk") or {}).get("level", "unknown")
    if level == "high":
        return "blocked", "alert_fraud_team"
    if level == "medium":
        return "review", "notify_reviewers"
    if level == "low" and data.get("status_code") in ("approved", "active"):
        return "approved", "welcome_user"
    return "pending", None  # in progress, unknown: nothing to act on yet


def apply_event(webhook_id: str, event: dict) -> str:
    """Records the event and its effect in one transaction; returns what happened."""
    data = event["data"]
    subject = f"{data['subject']['kind']}:{data['subject']['id']}"
    connection = connect()
    try:
        connection.execute("BEGIN IMMEDIATE")
        try:
            connection.execute(
                "INSERT INTO processed_events (webhook_id, subject, event_time, outcome, received_at)"
                " VALUES (?, ?, ?, 'pending', ?)", (webhook_id, subject, event["time"], time.time()))
        except sqlite3.IntegrityError:
            connection.execute("ROLLBACK")
            return "duplicate"
        row = connection.execute("SELECT event_time FROM decisions WHERE subject = ?", (subject,)).fetchone()
        if row is not None and event_time(event["time"]) < event_time(row[0]):
            outcome = "stale"  # a newer event already decided this subject
        else:
            decision, action = decide(data)
            connection.execute(
                "INSERT INTO decisions (subject, status_code, risk_level, decision, event_id, event_time, updated_at)"
                " VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (subject) DO UPDATE SET"
                " status_code = excluded.status_code, risk_level = excluded.risk_level,"
                " decision = excluded.decision, event_id = excluded.event_id,"
                " event_time = excluded.event_time, updated_at = excluded.updated_at",
                (subject, data.get("status_code"), data["risk"]["level"], decision, webhook_id, event["time"],
                 time.time()))
            if decision == "review":
                connection.execute(
                    "INSERT INTO review_queue (subject, webhook_id, signals, created_at) VALUES (?, ?, ?, ?)",
                    (subject, webhook_id, json.dumps(data["risk"]["signals"]), time.time()))
            if action is not None:
                connection.execute("INSERT INTO outbox (webhook_id, action, subject) VALUES (?, ?, ?)",
                                   (webhook_id, action, subject))
            outcome = decision if decision != "pending" else "recorded"
        connection.execute("UPDATE processed_events SET outcome = ? WHERE webhook_id = ?", (outcome, webhook_id))
        connection.execute("COMMIT")
        return outcome
    except BaseException:
        if connection.in_transaction:
            connection.execute("ROLLBACK")
        raise
    finally:
        connection.close()


def run_slow_work(webhook_id: str):
    """After the answer: the slow call, then the outbox row marked done. Run again at start-up if
    the process died in between, so at least once: the real call should carry `webhook_id` as its
    idempotency key."""
    connection = connect()
    try:
        rows = connection.execute("SELECT id, action, subject FROM outbox WHERE webhook_id = ? AND done_at IS NULL",
                                  (webhook_id,)).fetchall()
        for outbox_id, action, subject in rows:
            time.sleep(SLOW_WORK_SECONDS)  # e.g. a mail provider or CRM call
            connection.execute("BEGIN IMMEDIATE")
            done = connection.execute("UPDATE outbox SET done_at = ? WHERE id = ? AND done_at IS NULL",
                                      (time.time(), outbox_id)).rowcount
            if done:  # here the "call" is local, so it can share the transaction; a real one cannot
                connection.execute("INSERT INTO notifications (webhook_id, action, subject, sent_at)"
                                   " VALUES (?, ?, ?, ?)", (webhook_id, action, subject, time.time()))
            connection.execute("COMMIT")
    finally:
        connection.close()


@asynccontextmanager
async def lifespan(_app):
    connection = connect()
    connection.execute("PRAGMA journal_mode = WAL")
    connection.executescript(SCHEMA)
    pending = [w for (w,) in connection.execute("SELECT DISTINCT webhook_id FROM outbox WHERE done_at IS NULL")]
    connection.close()
    for webhook_id in pending:  # slow work a crash interrupted
        threading.Thread(target=run_slow_work, args=(webhook_id,), daemon=True).start()
    yield


app = FastAPI(lifespan=lifespan)


@app.post("/didit-events")
async def receive(request: Request, background: BackgroundTasks):
    body = await request.body()
    try:
        event = verifier.verify(body, dict(request.headers))
    except (WebhookVerificationError, ValueError):  # ValueError: a malformed signature header
        return JSONResponse({"error": "invalid signature"}, status_code=401)
    webhook_id = request.headers["webhook-id"]
    # sqlite3 blocks: run it in the thread pool, not on the event loop.
    outcome = await run_in_threadpool(apply_event, webhook_id, event)
    if outcome in ("approved", "review", "blocked"):  # those wrote an outbox row
        background.add_task(run_slow_work, webhook_id)
    return {"status": outcome}


@app.get("/healthz")
def healthz():
    return {"ok": True}
