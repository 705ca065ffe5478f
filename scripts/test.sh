#!/usr/bin/env bash
# Runs every check: formatting, clippy (host and wasm32), the core's tests natively and in wasm,
# a std-less build of the core, the upload's size against its budget (`wrangler deploy
# --dry-run`), then the integration tests against the real worker under
# `wrangler dev` with real origins on 127.0.0.1. Installs what is missing first (scripts/setup.sh).
set -euo pipefail
source "$(dirname "$0")/env.sh"
cd "$repo_root"

bash scripts/setup.sh

step() { printf '\n== test: %s\n' "$*"; }
step "cargo fmt --check"
cargo fmt --all -- --check
step "clippy (host)"
cargo clippy --workspace --all-targets -- -D warnings
step "clippy (wasm32-unknown-unknown)"
cargo clippy --workspace --all-targets --target wasm32-unknown-unknown --exclude didit-edge-cli -- -D warnings
step "clippy (wasm32-unknown-unknown, the tests' fault-injection build)"
cargo clippy -p didit-edge-worker --target wasm32-unknown-unknown --features fault-injection -- -D warnings
step "core unit tests (native)"
cargo test -p didit-edge-core
step "worker unit tests (native: the object messages' wire forms)"
cargo test -p didit-edge-worker
step "core unit tests (wasm32, wasm-bindgen-test under Node)"
cargo test -p didit-edge-core --target wasm32-unknown-unknown
step "core builds without std (wasm32v1-none)"
cargo build -p didit-edge-core --target wasm32v1-none
step "worker build"
bash scripts/build.sh
step "every wrangler environment: deploy --dry-run, no warnings, the upload within its budget"
bash scripts/check_upload.sh
step "worker build with fault injection (only the integration tests run it)"
bash scripts/build.sh --faults
# tests/test_cli.py runs target/debug/didit-edge; the CLI cannot build for wasm32 (excluded above).
step "CLI build"
cargo build -p didit-edge-cli
cargo test -p didit-edge-cli
step "integration tests (wrangler dev + real origins; tests/test_console.py in headless chromium)"
.tools/venv/bin/python -m pytest tests -q -p no:cacheprovider
