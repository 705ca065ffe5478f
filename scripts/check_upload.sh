#!/usr/bin/env bash
# What `wrangler deploy` would upload, measured by `wrangler deploy --dry-run` (which builds and
# bundles but sends nothing), against a budget: fails when the gzip size passes it. The upload
# is what every isolate fetches and compiles, so growth is a decision, made here in the open.
#
#   bash scripts/check_upload.sh            the deployed build against UPLOAD_BUDGET_KIB
set -euo pipefail
source "$(dirname "$0")/env.sh"
cd "$repo_root"

# gzip KiB as wrangler reports it. docs/performance.md says what the upload is made of and what
# bounds it; raise this only with a reason written there.
budget_kib="${UPLOAD_BUDGET_KIB:-380}"

out_dir="$(mktemp -d)"
trap 'rm -rf "$out_dir"' EXIT
if ! report="$(wrangler deploy --dry-run --outdir "$out_dir" 2>&1)"; then
  printf '%s\n' "$report"
  echo "upload: wrangler deploy --dry-run failed" >&2
  exit 1
fi
total="$(grep -o 'Total Upload: .*' <<<"$report" || true)"
gzip_kib="$(sed -nE 's/.*gzip: ([0-9.]+) KiB.*/\1/p' <<<"$total")"
if [ -z "$gzip_kib" ]; then
  printf '%s\n' "$report"
  echo "upload: no 'Total Upload: … / gzip: … KiB' line in wrangler's report" >&2
  exit 1
fi
echo "upload: ${total#Total Upload: } (budget: ${budget_kib} KiB gzip)"
if ! awk -v size="$gzip_kib" -v budget="$budget_kib" 'BEGIN { exit !(size <= budget) }'; then
  echo "upload: ${gzip_kib} KiB gzip is past the budget of ${budget_kib} KiB (see docs/performance.md)" >&2
  exit 1
fi
