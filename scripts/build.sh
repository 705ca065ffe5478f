#!/usr/bin/env bash
# Builds the worker with worker-build and the local tools from scripts/setup.sh. Called by
# wrangler's [build] command. Skips the build when the output is newer than every input, so
# restarting `wrangler dev` (tests do it often) costs nothing.
#
#   scripts/build.sh            the worker that is deployed, into edge-worker/build
#   scripts/build.sh --faults   the tests' build with fault injection, into edge-worker/build-faults
#   scripts/build.sh --names    the deployed build keeping its function names (for profiles:
#                               scripts/profile_worker.py --names), into edge-worker/build-names
set -euo pipefail
source "$(dirname "$0")/env.sh"
cd "$repo_root"
out_dir=build
cargo_options=()
strip=(--strip-debug)
case "${1:-}" in
  --faults)
    out_dir=build-faults
    cargo_options=(--features fault-injection)
    ;;
  --names)
    out_dir=build-names
    strip=(--debuginfo)
    ;;
esac
out="edge-worker/$out_dir/index.js"
if [ -f "$out" ] && [ -z "$(find core edge-worker/src edge-worker/Cargo.toml core/Cargo.toml Cargo.toml Cargo.lock -newer "$out" -type f 2>/dev/null | head -n 1)" ]; then
  echo "build: edge-worker/$out_dir is up to date"
  exit 0
fi
cd edge-worker
worker-build --release --out-dir "$out_dir" "${cargo_options[@]}"
# worker-build keeps the names section (its wasm-opt always runs with --debuginfo); the upload
# does not need it: panics are reported by message, and it is a tenth of the module. Without
# the names, -Oz run until it stops shrinking the module finds another 0.7% (about 15 s).
# (--flatten/--rereloop found 1% more in a test but abort on this module's exception handling.)
# --low-memory-unused lets -Oz fold `x + constant` into a load's or store's offset (3.3 KiB
# gzip): an address below 1 KiB is only reached by such a sum wrapping around, which Rust's
# in-bounds pointer arithmetic never does (the stack is laid out first, from 1 MiB down; data
# above it).
wasm-opt "$out_dir/index_bg.wasm" -o "$out_dir/index_bg.wasm" "${strip[@]}" --strip-producers \
  --low-memory-unused -Oz --converge \
  --enable-mutable-globals --enable-sign-ext --enable-nontrapping-float-to-int --enable-bulk-memory \
  --enable-multivalue --enable-reference-types --enable-exception-handling
