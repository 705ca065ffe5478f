#!/usr/bin/env bash
# Fuzzes every parser that sees outside input with cargo-fuzz (nightly, installed here if
# missing), each target for RUNS executions (default 10 million), then minimizes the corpus so
# what is committed stays small. Anything found is written to fuzz/artifacts/<target>/: copy it
# into fuzz/regressions/<target>/ (which libFuzzer reads but never rewrites), and
# core/tests/fuzz_corpus.rs replays it with the corpus on stable.
#
#   scripts/fuzz.sh                  every target, 10 million runs each
#   RUNS=100000 scripts/fuzz.sh intake canonical
set -euo pipefail
source "$(dirname "$0")/env.sh"
cd "$repo_root/fuzz"
rustup toolchain list | grep -q '^nightly' || rustup toolchain install nightly --profile minimal
command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked
runs="${RUNS:-10000000}"
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(intake canonical envelope stream_token config admin_query didit_api)
for target in "${targets[@]}"; do
  echo "== fuzz: $target, $runs runs"
  regressions=()
  [ -d "regressions/$target" ] && regressions=("regressions/$target")
  cargo +nightly fuzz run -O "$target" "corpus/$target" "${regressions[@]}" -- -runs="$runs" -max_len=65536 -print_final_stats=1 2>&1 \
    | grep -E '^(stat::|SUMMARY|INFO: Done|==[0-9]+== ERROR)|panicked|Test unit written' || true
  cargo +nightly fuzz cmin -O "$target" >/dev/null 2>&1
done
