"""Builds and signs webhooks the way Didit does, independently of the Rust core.

Didit is a Python service: bodies are `json.dumps(..., sort_keys=True, separators=(",", ":"))`,
and each signature is HMAC-SHA256 keyed with the secret's UTF-8 bytes, in lowercase hex:
- X-Signature over the raw body;
- X-Signature-V2 over canonical JSON (whole floats as ints, sorted keys, compact), with
  non-ASCII escaped or not, and optionally behind "{X-Timestamp}:";
- X-Signature-Simple over "{timestamp}:{session_id}:{status}:{webhook_type}".
"""

import hashlib
import hmac
import json
import time
import uuid


def hmac_hex(secret: str, message: bytes) -> str:
    return hmac.new(secret.encode("utf-8"), message, hashlib.sha256).hexdigest()


def whole_floats_to_ints(value):
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, dict):
        return {k: whole_floats_to_ints(v) for k, v in value.items()}
    if isinstance(value, list):
        return [whole_floats_to_ints(v) for v in value]
    return value


def canonical(payload, ensure_ascii=True) -> str:
    return json.dumps(
        whole_floats_to_ints(payload), sort_keys=True, separators=(",", ":"), ensure_ascii=ensure_ascii
    )


def encode(payload) -> bytes:
    """The raw body as Didit sends it."""
    return json.dumps(payload, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode()


def session_payload(session_id=None, status="Approved", timestamp=None, webhook_type="status.updated", **extra):
    now = int(time.time()) if timestamp is None else timestamp
    payload = {
        "event_id": str(uuid.uuid4()),
        "webhook_type": webhook_type,
        "timestamp": now,
        "created_at": now - 30,
        "application_id": "app-7d1c",
        "session_id": session_id or str(uuid.uuid4()),
        "status": status,
        "workflow_id": "wf-kyc-basic",
        "workflow_version": 3,
        "vendor_data": "user-42",
        "metadata": {"plan": "gold", "score": 97.0},
        "environment": "live",
        "decision": {
            "id_verifications": [
                {
                    "node_id": "id-1",
                    "status": "Approved",
                    "first_name": "Zoë",
                    "last_name": "Ångström-Müller",
                    "document_type": "Passport",
                    "age": 34.0,
                    "ocr_confidence": 0.98765,
                }
            ],
            "liveness_checks": [{"node_id": "live-1", "status": "Approved", "score": 99.5}],
            "face_matches": [{"node_id": "face-1", "status": "Approved", "score": 97.0}],
        },
    }
    payload.update(extra)
    return payload


def signed_headers(body: bytes, payload, secret: str, kinds=("raw",), x_timestamp=None,
                   v2_ascii=True, v2_prefix=False):
    """Headers for a delivery signed with the given kinds of signature."""
    ts = str(payload.get("timestamp") if x_timestamp is None else x_timestamp)
    headers = {"Content-Type": "application/json", "User-Agent": "DiditWebhook/2.0 +https://didit.me",
               "X-Timestamp": ts}
    if "raw" in kinds:
        headers["X-Signature"] = hmac_hex(secret, body)
    if "v2" in kinds:
        message = canonical(payload, ensure_ascii=v2_ascii)
        if v2_prefix:
            message = f"{ts}:{message}"
        headers["X-Signature-V2"] = hmac_hex(secret, message.encode("utf-8"))
    if "simple" in kinds:
        simple = f"{ts}:{payload['session_id']}:{payload['status']}:{payload['webhook_type']}"
        headers["X-Signature-Simple"] = hmac_hex(secret, simple.encode("utf-8"))
    return headers
