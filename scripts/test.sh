#!/usr/bin/env bash
# Installs whatever the tests need and runs the whole suite: formatting, lints for the server and the
# WASM build, unit tests, integration tests over HTTP on SQLite and on PostgreSQL, and the Playwright
# end-to-end tests in Debian's Chromium. Exits non-zero on the first failure.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
source scripts/env.sh

started=$SECONDS
step() { printf '\n\033[1;34m==> %s\033[0m (%ss)\n' "$*" "$((SECONDS - started))"; }
# Test output is also kept here, to add up the counts at the end.
LOG="$(mktemp)"
trap 'rm -f "$LOG"' EXIT

step "installing test tools"
bash scripts/bootstrap.sh --test

step "cargo fmt --check"
cargo fmt --all --check

step "building the app (cargo leptos build --split)"
cargo leptos build --split

step "clippy: server and tests"
RUSTFLAGS="$SERVER_RUSTFLAGS" cargo clippy --workspace --all-targets --features ssr -- -D warnings

step "clippy: WASM"
cargo clippy --lib --features hydrate --target wasm32-unknown-unknown -- -D warnings

step "unit and integration tests on SQLite"
RUSTFLAGS="$SERVER_RUSTFLAGS" cargo nextest run --workspace --features ssr --no-fail-fast 2>&1 | tee -a "$LOG"

step "integration tests on PostgreSQL"
pg_isready -h 127.0.0.1 -p 5432 -q || { echo "PostgreSQL is not answering on 127.0.0.1:5432" >&2; exit 1; }
TEST_DATABASE=postgres RUSTFLAGS="$SERVER_RUSTFLAGS" cargo nextest run --features ssr --test api --no-fail-fast 2>&1 | tee -a "$LOG"

step "end-to-end tests (Playwright in Chromium)"
(
  cd end2end
  NESTEGG_BIN="$CARGO_TARGET_DIR/debug/nestegg" LEPTOS_SITE_ROOT="$CARGO_TARGET_DIR/site" npx playwright test
) 2>&1 | tee -a "$LOG"

step "resilience under load: PostgreSQL and Redis restarted, SMTP stopped, kill -9 (about 4 minutes)"
# Alone, after everything else: it restarts the shared PostgreSQL and Redis.
NESTEGG_BIN="$CARGO_TARGET_DIR/debug/nestegg" LEPTOS_SITE_ROOT="$CARGO_TARGET_DIR/site" python3 scripts/resilience.py

step "all tests passed"
# nextest: "Summary [ 1.2s] 62 tests run: 62 passed, 0 skipped"; Playwright: "  6 passed (18.1s)".
passed=$(sed -n -e 's/.* tests\? run: \([0-9]*\) passed.*/\1/p' -e 's/^ *\([0-9]*\) passed ([0-9.]*[ms]*)$/\1/p' "$LOG" \
  | awk '{ total += $1 } END { print total + 0 }')
echo "total: ${passed} passed, 0 failed"
