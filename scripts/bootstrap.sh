#!/usr/bin/env bash
# Installs every tool Nest Egg needs to build and (with --test) to test, skipping what is already present.
# Idempotent: on a machine where everything is installed it finishes in about a second.
#
# Nothing here downloads from GitHub: cargo-leptos is built with `no_downloads`, so every tool it wants
# (wasm-bindgen, wasm-opt) must be on PATH before it runs.
set -euo pipefail

WANT_TEST=0
for arg in "$@"; do
  case "$arg" in
    --test) WANT_TEST=1 ;;
    *) echo "usage: $0 [--test]" >&2; exit 2 ;;
  esac
done

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
CARGO_LEPTOS_VERSION="0.3.10"          # 0.3.11 needs rustc 1.96
WASM_BINDGEN_VERSION="0.2.130"          # must equal the `wasm-bindgen` pin in Cargo.toml
BINARYEN_VERSION="132.0.0"

say() { printf '\033[1;34m==>\033[0m %s\n' "$*"; }

export PATH="$HOME/.cargo/bin:$PATH"

if ! rustup target list --installed | grep -qx wasm32-unknown-unknown; then
  say "adding the wasm32-unknown-unknown target"
  rustup target add wasm32-unknown-unknown
fi

if ! command -v wasm-bindgen >/dev/null || [[ "$(wasm-bindgen --version)" != "wasm-bindgen $WASM_BINDGEN_VERSION" ]]; then
  say "installing wasm-bindgen-cli $WASM_BINDGEN_VERSION (about 3 minutes, once)"
  # --locked fails for this version's lockfile on current rustc; the version pin is exact anyway.
  cargo install wasm-bindgen-cli --version "$WASM_BINDGEN_VERSION" --force
fi

# wasm-opt for release builds: binaryen 132 from npm (Debian's binaryen 108 silently breaks hydration).
TOOLS="$HOME/.cache/nestegg/tools"
if [[ "$("$TOOLS/node_modules/.bin/wasm-opt" --version 2>/dev/null)" != *"version 132"* ]]; then
  say "installing wasm-opt (binaryen $BINARYEN_VERSION from npm)"
  npm install --prefix "$TOOLS" --no-audit --no-fund --loglevel=error "binaryen@$BINARYEN_VERSION"
fi

if ! cargo leptos --version 2>/dev/null | grep -q "$CARGO_LEPTOS_VERSION"; then
  say "installing cargo-leptos $CARGO_LEPTOS_VERSION (about 16 minutes, once per machine)"
  cargo install cargo-leptos --version "$CARGO_LEPTOS_VERSION" --locked --features no_downloads
fi

if [[ "$WANT_TEST" == 1 ]]; then
  if ! command -v cargo-nextest >/dev/null; then
    say "installing cargo-nextest"
    cargo install cargo-nextest --locked
  fi
  if [[ ! -x /usr/bin/chromium ]]; then
    say "installing Debian's Chromium for the end-to-end tests"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq chromium >/dev/null
  fi
  if ! command -v pg_isready >/dev/null; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq postgresql-client >/dev/null
  fi
  # npm ci only when package-lock.json changed since the last successful install.
  stamp="$ROOT/end2end/node_modules/.nestegg-lock.sha256"
  want="$(sha256sum "$ROOT/end2end/package-lock.json" | cut -d' ' -f1)"
  if [[ ! -f "$stamp" || "$(cat "$stamp")" != "$want" ]]; then
    say "installing the end-to-end test packages"
    (cd "$ROOT/end2end" && PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 npm ci --no-audit --no-fund --loglevel=error)
    echo "$want" > "$stamp"
  fi
fi
