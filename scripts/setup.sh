#!/usr/bin/env bash
# Installs every pinned tool the build and tests need, from package registries only
# (crates.io, npm, PyPI, and Debian's archive for the browser tests' chromium). Idempotent:
# each step is skipped when the right version is present.
set -euo pipefail
source "$(dirname "$0")/env.sh"
cd "$repo_root"

step() { printf '\n== setup: %s\n' "$*"; }

step "Rust targets and components"
installed_targets="$(rustup target list --installed)"
for target in wasm32-unknown-unknown wasm32v1-none; do
  grep -qx "$target" <<<"$installed_targets" || rustup target add "$target"
done
for component in rustfmt clippy; do
  rustup component list --installed | grep -q "^$component" || rustup component add "$component"
done

step "Cargo.lock"
[ -f Cargo.lock ] || cargo generate-lockfile

step "wasm-bindgen-cli (must match the wasm-bindgen in Cargo.lock)"
bindgen_version="$(awk '/^name = "wasm-bindgen"$/ { getline; gsub(/version = |"/, ""); print; exit }' Cargo.lock)"
if [ "$(wasm-bindgen --version 2>/dev/null | awk '{print $NF}')" != "$bindgen_version" ]; then
  cargo install wasm-bindgen-cli --version "$bindgen_version" --force
fi

step "worker-build"
worker_build_version=0.8.7
if [ "$(worker-build --version 2>/dev/null | awk '{print $NF}')" != "$worker_build_version" ]; then
  cargo install worker-build --version "$worker_build_version" --locked --force
fi

step "npm packages: wrangler, Node 22 for it, esbuild, wasm-opt (binaryen)"
# Complete only when npm finished (it writes its own lock last) and every tool answers: an
# interrupted install can leave some of them in place and others missing.
npm_complete() {
  [ -f node_modules/.package-lock.json ] \
    && [ ! package.json -nt node_modules/.package-lock.json ] \
    && [ ! package-lock.json -nt node_modules/.package-lock.json ] \
    && node_modules/.bin/node --version >/dev/null 2>&1 \
    && node_modules/.bin/wrangler --version >/dev/null 2>&1 \
    && node_modules/.bin/wasm-opt --version >/dev/null 2>&1 \
    && compgen -G 'node_modules/@esbuild/*/bin/esbuild' >/dev/null
}
if ! npm_complete; then
  # `npm ci` fails with wrangler 4.164 (the registry lacks some platforms' workerd packages);
  # `npm install` with the committed lockfile installs the same versions.
  npm install --no-audit --no-fund
  npm_complete || { echo "setup: npm install left node_modules incomplete" >&2; exit 1; }
  source scripts/env.sh
fi
node_major="$(node --version | sed 's/^v\([0-9]*\).*/\1/')"
if [ "$node_major" -lt 22 ]; then
  echo "Node $(node --version) is too old for wrangler, and node_modules/.bin/node is missing" >&2
  exit 1
fi

step "Python virtualenv for the integration tests"
# The stamp is written last, so it vouches for the whole environment; without it, a venv whose
# creation was interrupted (a `python` but no `pip`) is made again rather than trusted, and so is
# one whose install was interrupted (`.installing` left behind): pip can leave a package half
# unpacked and still count it as installed.
venv=.tools/venv
if ! cmp -s tests/requirements.txt "$venv/.requirements.txt"; then
  if [ -e "$venv/.installing" ] || ! "$venv/bin/python" -m pip --version >/dev/null 2>&1; then
    rm -rf "$venv"
    python3 -m venv "$venv"
  fi
  touch "$venv/.installing"
  "$venv/bin/python" -m pip install --quiet --disable-pip-version-check -r tests/requirements.txt
  cp tests/requirements.txt "$venv/.requirements.txt"
  rm -f "$venv/.installing"
fi

step "Debian packages: chromium and chromedriver (the console's browser tests), Rails (the Rails recipe)"
# The browser comes from Debian, never from a download of its own (none reaches these
# machines), and so does Rails (examples/consumers/rails runs on Debian's Rails 6.1, Puma and
# sqlite3 gems: no Bundler, no RubyGems). Skipped at once when all are present; installed when
# this runs as root (CI) or with password-less sudo; otherwise said, and only the tests that
# need them fail (tests/test_console.py) or are skipped (the Rails half of tests/test_recipes.py).
debian_packages=()
command -v chromium >/dev/null && command -v chromedriver >/dev/null \
  || debian_packages+=(chromium chromium-driver)
{ command -v puma >/dev/null && ruby -e 'require "rails"; require "active_record"; require "sqlite3"' 2>/dev/null; } \
  || debian_packages+=(ruby-rails ruby-sqlite3 puma)
if [ "${#debian_packages[@]}" -eq 0 ]; then
  :
elif command -v apt-get >/dev/null && { [ "$(id -u)" -eq 0 ] || sudo -n true 2>/dev/null; }; then
  as_root=()
  [ "$(id -u)" -eq 0 ] || as_root=(sudo -n)
  "${as_root[@]}" apt-get update -qq
  DEBIAN_FRONTEND=noninteractive "${as_root[@]}" apt-get install -y -qq --no-install-recommends "${debian_packages[@]}"
else
  echo "setup: Debian packages missing: ${debian_packages[*]} (apt-get install ${debian_packages[*]});" \
    "tests/test_console.py needs chromium, and the Rails recipe's tests are skipped without Rails" >&2
fi

step "done"
