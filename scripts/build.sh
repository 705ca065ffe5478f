#!/usr/bin/env bash
# Builds the worker with worker-build and the local tools from scripts/setup.sh. Called by
# wrangler's [build] command. Skips the build when the output is newer than every input, so
# restarting `wrangler dev` (tests do it often) costs nothing.
set -euo pipefail
source "$(dirname "$0")/env.sh"
cd "$repo_root"
out=edge-worker/build/index.js
if [ -f "$out" ] && [ -z "$(find core edge-worker/src edge-worker/Cargo.toml core/Cargo.toml Cargo.toml Cargo.lock -newer "$out" -type f 2>/dev/null | head -n 1)" ]; then
  echo "build: edge-worker/build is up to date"
  exit 0
fi
cd edge-worker
worker-build --release
