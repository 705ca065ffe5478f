"""Issues stream tokens the way an integrator's backend would: HS256 JWTs made with Python's own
`hmac`, `hashlib` and `base64`, independently of the Rust core."""

import base64
import hashlib
import hmac
import json
import time
import uuid

STREAM_SECRET = "stream-test-secret-0123456789abcdef-0123"


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def sign(header, claims, secret=STREAM_SECRET) -> str:
    signing_input = f"{b64url(json.dumps(header).encode())}.{b64url(json.dumps(claims).encode())}"
    signature = hmac.new(secret.encode(), signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{b64url(signature)}"


AUDIENCE = "didit-edge"


def token(sub, scope="self", lifetime=600, sessions=None, secret=STREAM_SECRET, iat=None, aud=AUDIENCE, **extra):
    now = int(time.time()) if iat is None else iat
    claims = {"sub": sub, "scope": scope, "iat": now, "exp": now + lifetime, "jti": str(uuid.uuid4())}
    if aud is not None:
        claims["aud"] = aud
    if sessions is not None:
        claims["sessions"] = sessions
    claims.update(extra)
    return sign({"alg": "HS256", "typ": "JWT"}, claims, secret)
