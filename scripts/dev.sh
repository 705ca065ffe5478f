#!/usr/bin/env bash
# Runs didit-edge locally: set-up, a demo origin on 127.0.0.1:8788 that prints every event it
# receives (verified with the standardwebhooks library), and `wrangler dev` on 127.0.0.1:8787
# with Durable Object storage kept in .wrangler/state. Send a signed sample with:
#   python3 scripts/send_sample.py
set -euo pipefail
source "$(dirname "$0")/env.sh"
cd "$repo_root"

bash scripts/setup.sh
if [ ! -f .dev.vars ]; then
  cp .dev.vars.example .dev.vars
  echo "created .dev.vars from .dev.vars.example"
fi
signing_secret="$(sed -n 's/^ORIGIN_SIGNING_SECRET=["'\'']\{0,1\}\([^"'\'']*\).*/\1/p' .dev.vars)"
.tools/venv/bin/python tests/origin_server.py --port 8788 --secret "$signing_secret" &
origin_pid=$!
trap 'kill "$origin_pid" 2>/dev/null || true' EXIT
npx wrangler dev --ip 127.0.0.1 --port 8787 --persist-to .wrangler/state "$@"
