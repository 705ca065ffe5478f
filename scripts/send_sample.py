#!/usr/bin/env python3
"""Sends one correctly signed sample Didit webhook to a running didit-edge (local by default).

The secret is read from .dev.vars (the first of DIDIT_WEBHOOK_SECRETS) unless --secret is given.
"""

import argparse
import json
import pathlib
import sys
import urllib.error
import urllib.request

ROOT = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
import didit  # noqa: E402


def dev_var(name):
    path = ROOT / ".dev.vars"
    if not path.exists():
        return None
    for line in path.read_text().splitlines():
        key, sep, value = line.partition("=")
        if sep and key.strip() == name:
            return value.strip().strip("'\"")
    return None


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--url", default="http://127.0.0.1:8787/webhooks/didit")
    parser.add_argument("--secret", default=None)
    parser.add_argument("--status", default="Approved")
    parser.add_argument("--session-id", default=None)
    args = parser.parse_args()
    secret = args.secret or (dev_var("DIDIT_WEBHOOK_SECRETS") or "").split(",")[0].strip()
    if not secret:
        sys.exit("no secret: pass --secret or create .dev.vars (scripts/dev.sh does)")
    payload = didit.session_payload(session_id=args.session_id, status=args.status)
    body = didit.encode(payload)
    headers = didit.signed_headers(body, payload, secret, kinds=("raw", "v2", "simple"))
    request = urllib.request.Request(args.url, data=body, headers=headers, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            print(response.status, response.read().decode())
    except urllib.error.HTTPError as error:
        print(error.code, error.read().decode())
        sys.exit(1)


if __name__ == "__main__":
    main()
