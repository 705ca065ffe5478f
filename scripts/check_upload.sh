#!/usr/bin/env bash
# What `wrangler deploy` would upload, measured by `wrangler deploy --dry-run` (which builds and
# bundles but sends nothing), against a budget: fails when the gzip size passes it. The upload
# is what every isolate fetches and compiles, so growth is a decision, made here in the open.
#
# Each environment of wrangler.toml is checked the same way (the top level, `staging`,
# `production`), so a binding or var an environment forgot fails here, not at deploy time.
#
#   bash scripts/check_upload.sh            every environment against UPLOAD_BUDGET_KIB
#   bash scripts/check_upload.sh staging    one (`top` is the top level)
set -euo pipefail
source "$(dirname "$0")/env.sh"
cd "$repo_root"

# gzip KiB as wrangler reports it. docs/performance.md says what the upload is made of and what
# bounds it; raise this only with a reason written there.
budget_kib="${UPLOAD_BUDGET_KIB:-400}"

out_dir="$(mktemp -d)"
trap 'rm -rf "$out_dir"' EXIT

check() {
  local env="$1" args=(--env "$1")
  # The top level is named by an empty --env (without one, wrangler warns that it guessed).
  [ "$env" = top ] && args=(--env "")
  local report total gzip_kib
  if ! report="$(wrangler deploy --dry-run --outdir "$out_dir/$env" "${args[@]}" 2>&1)"; then
    printf '%s\n' "$report"
    echo "upload ($env): wrangler deploy --dry-run failed" >&2
    return 1
  fi
  if grep -qiE '\[WARNING\]|▲' <<<"$report"; then
    printf '%s\n' "$report"
    echo "upload ($env): wrangler warns about the configuration" >&2
    return 1
  fi
  total="$(grep -o 'Total Upload: .*' <<<"$report" || true)"
  gzip_kib="$(sed -nE 's/.*gzip: ([0-9.]+) KiB.*/\1/p' <<<"$total")"
  if [ -z "$gzip_kib" ]; then
    printf '%s\n' "$report"
    echo "upload ($env): no 'Total Upload: … / gzip: … KiB' line in wrangler's report" >&2
    return 1
  fi
  echo "upload ($env): ${total#Total Upload: } (budget: ${budget_kib} KiB gzip)"
  if ! awk -v size="$gzip_kib" -v budget="$budget_kib" 'BEGIN { exit !(size <= budget) }'; then
    echo "upload ($env): ${gzip_kib} KiB gzip is past the budget of ${budget_kib} KiB (see docs/performance.md)" >&2
    return 1
  fi
}

envs=("$@")
[ ${#envs[@]} -gt 0 ] || envs=(top staging production)
for env in "${envs[@]}"; do
  check "$env"
done
