#!/usr/bin/env bash
# Runs didit-edge locally: set-up, the `didit-edge` command built, `didit-edge listen` on
# 127.0.0.1:8788 as the demo origin (it verifies every request with ORIGIN_SIGNING_SECRET from
# .dev.vars and prints one line per event), and `wrangler dev` on 127.0.0.1:8787 with Durable
# Object storage kept in .wrangler/state (DIDIT_EDGE_DEV_STATE names another directory: the
# newcomer's test in tests/test_console.py keeps yours untouched). From another terminal:
#   target/debug/didit-edge send http://127.0.0.1:8787/webhooks/didit
# which says how to look the event up, in the console or with `didit-edge admin lookup`.
set -euo pipefail
source "$(dirname "$0")/env.sh"
cd "$repo_root"

bash scripts/setup.sh
if [ ! -f .dev.vars ]; then
  cp .dev.vars.example .dev.vars
  echo "created .dev.vars from .dev.vars.example"
fi
cargo build --quiet -p didit-edge-cli
target/debug/didit-edge listen --port 8788 &
origin_pid=$!
trap 'kill "$origin_pid" 2>/dev/null || true' EXIT
echo "operator console: http://127.0.0.1:8787/console/ (sign in with ADMIN_TOKEN from .dev.vars; docs/console.md)"
npx wrangler dev --ip 127.0.0.1 --port 8787 --persist-to "${DIDIT_EDGE_DEV_STATE:-.wrangler/state}" "$@"
