#!/usr/bin/env bash
# A/B of the health probe alone: `/health/live` of the bare axum server and of Nest Egg (SQLite),
# alternately, ROUNDS rounds of DURATION each with wrk (64 connections), and the ratio per round. For
# telling one build or setting from another on the same machine when bench/run.sh's single health
# row is too noisy to: each round's ratio moves by ±10% here, so compare means over several runs.
#
#   bash bench/health_ab.sh LABEL [NAME=VALUE ...]    # extra variables go to Nest Egg
#
# Uses the release binaries already built (cargo build --release -p nestegg-bench-hello; cargo build
# --release --bin nestegg --no-default-features --features ssr; NESTEGG_BIN to point elsewhere). The
# probes need no site, so any site folder will do.
set -euo pipefail
LABEL="${1:?usage: health_ab.sh LABEL [NAME=VALUE ...]}"
shift
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
TARGET="${CARGO_TARGET_DIR:-$HOME/.cache/nestegg/target}"
HELLO_BIN="${HELLO_BIN:-$TARGET/release/nestegg-bench-hello}"
NESTEGG_BIN="${NESTEGG_BIN:-$TARGET/release/nestegg}"
ROUNDS="${ROUNDS:-3}"
DURATION="${DURATION:-10s}"
HELLO_PORT=3999
NESTEGG_PORT=3998
command -v wrk >/dev/null || { echo "wrk is missing (apt-get install wrk)" >&2; exit 1; }
[[ -x "$HELLO_BIN" && -x "$NESTEGG_BIN" ]] || { echo "build the release binaries first (see the top of this file)" >&2; exit 1; }

work="$(mktemp -d)"
cleanup() {
  kill "${pids[@]}" 2>/dev/null || true
  wait 2>/dev/null || true
  rm -rf "$work"
}
pids=()
trap cleanup EXIT
env -i PORT="$HELLO_PORT" "$HELLO_BIN" >"$work/hello.log" 2>&1 &
pids+=($!)
(cd "$work" && exec env -i PATH=/usr/bin:/bin LEPTOS_CONFIG="$REPO/Leptos.toml" \
  LEPTOS_SITE_ROOT="$TARGET/site" LEPTOS_SITE_ADDR="127.0.0.1:$NESTEGG_PORT" ENVIRONMENT=development \
  DATA_DIR="$work/data" PUBLIC_URL="http://127.0.0.1:$NESTEGG_PORT" METRICS_ADDR=off LOG_FORMAT=json \
  RUST_LOG=warn "$@" "$NESTEGG_BIN" serve) >"$work/nestegg.log" 2>&1 &
pids+=($!)
for _ in $(seq 300); do
  curl -sf "http://127.0.0.1:$NESTEGG_PORT/health/live" >/dev/null \
    && curl -sf "http://127.0.0.1:$HELLO_PORT/health/live" >/dev/null && break
  sleep 0.1
done
rps() { wrk -t2 -c64 -d"$DURATION" "http://127.0.0.1:$1/health/live" | awk '/Requests\/sec/ {print $2}'; }
hello=()
nestegg=()
for _ in $(seq "$ROUNDS"); do
  hello+=("$(rps "$HELLO_PORT")")
  nestegg+=("$(rps "$NESTEGG_PORT")")
done
python3 - "$LABEL" "${hello[*]}" "${nestegg[*]}" <<'PY'
import sys
label = sys.argv[1]
hello, nestegg = ([float(x) for x in arg.split()] for arg in sys.argv[2:4])
ratios = " ".join(f"{n / h:.1%}" for h, n in zip(hello, nestegg))
print(f"{label}: bare {' '.join(f'{x:.0f}' for x in hello)} | nestegg {' '.join(f'{x:.0f}' for x in nestegg)}"
      f" | ratio {ratios} (overall {sum(nestegg) / sum(hello):.1%})")
PY
