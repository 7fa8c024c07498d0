#!/usr/bin/env bash
# Nest Egg's benchmark: a bare axum server (the ceiling), Nest Egg on SQLite and Nest Egg on PostgreSQL +
# Redis, measured side by side in one run with wrk, then checked against the performance targets.
# Run by hand (not in CI): about 12 minutes plus the release build. See bench/README.md.
#
#   bash bench/run.sh              build the release binaries, then measure
#   bash bench/run.sh --no-build   measure the binaries already built
#
# Shorter runs for trying the harness out (the targets are not meaningful then):
#   DURATION=3s LONG_DURATION=5s SESSIONS=100 CLIENTS=200 bash bench/run.sh --no-build
# Other settings (environment variables) are listed under "Settings" below; KEEP_WORK=1 keeps the
# scratch directory with the server logs.
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BENCH="$REPO/bench"
cd "$REPO"

# ---------------------------------------------------------------------------------------------------
# Settings (environment variables, so a shorter trial run needs no editing)

BUILD=1
for arg in "$@"; do
  case "$arg" in
    --no-build) BUILD=0 ;;
    -h | --help)
      sed -n '2,12p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'
      exit 0
      ;;
    *)
      echo "unknown argument: $arg (try --help)" >&2
      exit 1
      ;;
  esac
done

DURATION="${DURATION:-20s}"           # scenarios 1-3, each
LONG_DURATION="${LONG_DURATION:-60s}" # the 1000-client run
SESSIONS="${SESSIONS:-10000}"         # live sessions created before the 1000-client run
CLIENTS="${CLIENTS:-1000}"
HELLO_PORT="${HELLO_PORT:-3999}"
SQLITE_PORT="${SQLITE_PORT:-3998}"
PG_PORT="${PG_PORT:-3997}"
PG_ADMIN="${PG_ADMIN:-postgres://postgres@127.0.0.1:5432}"
PG_DB="${PG_DB:-nestegg_bench}" # dropped and created again: a plain identifier
REDIS_HOST="${REDIS_HOST:-127.0.0.1}"
REDIS_PORT="${REDIS_PORT:-6379}"
# NESTEGG_BIN, HELLO_BIN and SITE_ROOT default to the release build's outputs (set below, once
# CARGO_TARGET_DIR is known).

T_HELLO="axum-hello"
T_SQLITE="nestegg-sqlite"
T_PG="nestegg-pg+redis"

EMAIL="bench@example.org"
# zxcvbn must rate it strong, or registration refuses it.
PASSWORD="glacier Minnow 47 paperclip orbit"

# ---------------------------------------------------------------------------------------------------
# Helpers

say() { printf '\n\033[1;34m==> %s\033[0m\n' "$*" >&2; }
note() { printf '    %s\n' "$*" >&2; }
die() {
  printf '\033[1;31merror:\033[0m %s\n' "$*" >&2
  exit 1
}
# Floating-point arithmetic (bash has integers only): calc 'expression'.
calc() { awk "BEGIN { print $1 }"; }

# ---------------------------------------------------------------------------------------------------
# Tools and limits

command -v wrk >/dev/null || {
  say "installing wrk (Debian package)"
  apt-get install -y wrk >/dev/null || { apt-get update >/dev/null && apt-get install -y wrk >/dev/null; }
}
for tool in wrk curl python3 psql redis-cli gzip awk nproc; do
  command -v "$tool" >/dev/null || die "$tool is missing"
done
# 1000 client sockets in wrk plus as many in the server (which inherits this limit), plus files. Where
# the hard limit is lower (containers), as high as it goes, if that is still enough.
if ! ulimit -n 65536 2>/dev/null; then
  ulimit -n "$(ulimit -Hn)"
  (($(ulimit -n) >= CLIENTS + 1024)) ||
    die "the open-file limit is $(ulimit -n) and cannot be raised to 65536 (hard limit $(ulimit -Hn))"
  echo "note: open-file limit $(ulimit -n) (the hard limit), not 65536: enough for $CLIENTS clients" >&2
fi

# CARGO_TARGET_DIR and PATH (cargo-leptos) as every other script sees them.
# shellcheck source=scripts/env.sh
source scripts/env.sh
NESTEGG_BIN="${NESTEGG_BIN:-$CARGO_TARGET_DIR/release/nestegg}"
HELLO_BIN="${HELLO_BIN:-$CARGO_TARGET_DIR/release/nestegg-bench-hello}"
SITE_ROOT="${SITE_ROOT:-$CARGO_TARGET_DIR/site}"
WASM="$SITE_ROOT/pkg/nestegg.wasm"

if ((BUILD)); then
  # One after the other: two cargo processes on one target directory wait for each other's lock at
  # best, and cargo-leptos runs several cargo builds of its own.
  say "building the bare axum server (release)"
  cargo build --release -p nestegg-bench-hello
  say "building Nest Egg (release server and WASM; the first release build takes several minutes)"
  cargo leptos build --release --split
fi
[[ -x "$NESTEGG_BIN" ]] || die "no Nest Egg server at $NESTEGG_BIN (build with: cargo leptos build --release --split)"
[[ -x "$HELLO_BIN" ]] || die "no bare axum server at $HELLO_BIN (build with: cargo build --release -p nestegg-bench-hello)"
[[ -f "$WASM" ]] || die "no WASM bundle at $WASM (build with: cargo leptos build --release --split)"
# Debug and release builds write the same site folder, so a debug build since the last release build
# (scripts/test.sh, scripts/run.sh) leaves its WASM there: 2 MB gzip instead of a few hundred KB, and a
# meaningless WASM row (it happened once with --no-build). A debug module keeps its `name` section;
# wasm-opt, which only release builds run, drops it.
wasm_has_names() {
  python3 - "$1" <<'EOF'
import sys

def leb128(data, at):
    value = shift = 0
    while True:
        byte = data[at]
        at += 1
        value |= (byte & 0x7F) << shift
        shift += 7
        if byte < 0x80:
            return value, at

data = open(sys.argv[1], "rb").read()
at = 8  # magic and version
while at < len(data):
    section = data[at]
    size, at = leb128(data, at + 1)
    if section == 0:  # a custom section: its name comes first
        length, name_at = leb128(data, at)
        if data[name_at:name_at + length] == b"name":
            sys.exit(0)
    at += size
sys.exit(1)
EOF
}
if wasm_has_names "$WASM"; then
  die "$WASM is a debug build (a debug build ran since the release one): rebuild with cargo leptos build --release --split, or run without --no-build"
fi

# ---------------------------------------------------------------------------------------------------
# Scratch space and clean-up. Everything started here is stopped on any exit, including Ctrl-C.

WORK="$(mktemp -d /tmp/nestegg-bench.XXXXXX)"
RAW="$WORK/raw.txt" # every wrk output, appended to the results file
: >"$RAW"
PIDS=()               # servers and samplers still running
PG_CREATED=0
REDIS_PREFIX="bench-$(od -An -N6 -tx1 /dev/urandom | tr -d ' \n')"

forget() {
  local keep=() p
  for p in "${PIDS[@]}"; do [[ "$p" == "$1" ]] || keep+=("$p"); done
  PIDS=("${keep[@]}")
}

# A process that has exited but was not waited for yet is a zombie: `kill -0` still succeeds on it.
alive() {
  [[ -r "/proc/$1/status" ]] && ! grep -q '^State:[[:space:]]*Z' "/proc/$1/status" 2>/dev/null
}

stop() {
  local pid="$1"
  kill -TERM "$pid" 2>/dev/null || true
  # Nest Egg drains requests on SIGTERM (SHUTDOWN_TIMEOUT_SECS, 20 s by default); then it must go.
  for _ in $(seq 1 300); do
    alive "$pid" || break
    sleep 0.1
  done
  if alive "$pid"; then
    note "process $pid ignored SIGTERM for 30 s: killing it"
    kill -KILL "$pid" 2>/dev/null || true
  fi
  wait "$pid" 2>/dev/null || true
  forget "$pid"
}

cleanup() {
  local status=$?
  for pid in "${PIDS[@]}"; do stop "$pid"; done
  if [[ -n "${REDIS_PREFIX:-}" ]]; then
    # Only our own keys. The session records themselves are stored under bare ids (the tower-sessions
    # store names them), so they cannot be told apart from anyone else's: they expire on their own.
    redis-cli -h "$REDIS_HOST" -p "$REDIS_PORT" --scan --pattern "$REDIS_PREFIX:*" 2>/dev/null |
      xargs -r -n 500 redis-cli -h "$REDIS_HOST" -p "$REDIS_PORT" del >/dev/null 2>&1 || true
  fi
  if ((PG_CREATED)); then
    psql "$PG_ADMIN/postgres" -qX -c "DROP DATABASE IF EXISTS $PG_DB WITH (FORCE)" >/dev/null 2>&1 || true
  fi
  if ((status != 0)) || [[ -n "${KEEP_WORK:-}" ]]; then
    echo "server logs and raw output kept in $WORK" >&2
  else
    rm -rf "$WORK"
  fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

port_free() { ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# wait_ready PID URL SECONDS: polls URL until it answers 200, failing if the process dies first.
wait_ready() {
  local pid="$1" url="$2" deadline=$((SECONDS + $3))
  until [[ "$(curl -s -o /dev/null -w '%{http_code}' --max-time 2 "$url" || true)" == 200 ]]; do
    alive "$pid" || return 1
    ((SECONDS < deadline)) || return 1
    sleep 0.05
  done
}

kib_of() { awk -v f="$2:" '$1 == f { print $2 }' "/proc/$1/status" 2>/dev/null || true; }

# sample_rss PID FILE: the highest VmRSS (KiB) seen every 200 ms, kept in FILE with its two parts at
# that moment, "VMRSS RSSANON RSSFILE" (runs in background). RssFile is mostly the binary's own code.
sample_rss() {
  local pid="$1" file="$2" max=0 kib
  echo "0 0 0" >"$file"
  while alive "$pid"; do
    kib="$(kib_of "$pid" VmRSS)"
    if [[ -n "$kib" ]] && ((kib > max)); then
      max=$kib
      echo "$max $(kib_of "$pid" RssAnon) $(kib_of "$pid" RssFile)" >"$file"
    fi
    sleep 0.2
  done
}

# Nest Egg's environment: nothing inherited (no .env either: the working directory is a fresh one), only
# what is listed here. Variable names and ranges are those of src/server/config.rs.
nestegg_env() { # PORT DATA_DIR [NAME=VALUE ...]
  local port="$1" data="$2"
  shift 2
  ENV_ARGS=(
    PATH=/usr/bin:/bin
    LEPTOS_CONFIG="$REPO/Leptos.toml"
    LEPTOS_SITE_ROOT="$SITE_ROOT"
    LEPTOS_SITE_ADDR="127.0.0.1:$port"
    ENVIRONMENT=development
    DATA_DIR="$data"
    PUBLIC_URL="http://127.0.0.1:$port"
    METRICS_ADDR=off
    LOG_FORMAT=json
    RUST_LOG=warn
    REQUIRE_EMAIL_VERIFICATION=false
    # Every request of a run comes from 127.0.0.1, so the per-IP limits must be out of the way.
    RATE_LIMIT_SIGN_IN_PER_MINUTE=1000000
    RATE_LIMIT_API_PER_MINUTE=1000000
    RATE_LIMIT_PAGES_PER_MINUTE=1000000
    RATE_LIMIT_REGISTER_PER_HOUR=1000000
    "$@"
  )
  # Someone measuring another argon2 cost sets it once for the server and measure-hash alike.
  local name
  for name in ARGON2_MEMORY_KIB ARGON2_ITERATIONS ARGON2_PARALLELISM ARGON2_MAX_CONCURRENT; do
    [[ -n "${!name:-}" ]] && ENV_ARGS+=("$name=${!name}")
  done
  return 0
}

# start_nestegg NAME PORT [NAME=VALUE ...]: starts the server in a fresh directory; sets SERVER_PID,
# SERVER_DATA. Does not wait for it.
start_nestegg() {
  local name="$1" port="$2"
  shift 2
  port_free "$port" || die "port $port is in use (see the *_PORT settings at the top of bench/run.sh)"
  SERVER_DATA="$(mktemp -d "$WORK/$name.XXXXXX")"
  nestegg_env "$port" "$SERVER_DATA/data" "$@"
  # exec: $! is the server itself, so /proc/$!/status is its memory.
  (cd "$SERVER_DATA" && exec env -i "${ENV_ARGS[@]}" "$NESTEGG_BIN" serve) \
    >>"$WORK/$name.log" 2>&1 &
  SERVER_PID=$!
  PIDS+=("$SERVER_PID")
}

# ---------------------------------------------------------------------------------------------------
# wrk runs and their results

# Results, keyed "scenario|target".
declare -A RPS P50 P99 ERRORS ERRDETAIL HWM
declare -A SESSIONS_LIVE RSS_1000 RSS_ANON RSS_FILE HWM_END SESSION_NOTE LOG_PROBLEMS
ROWS=() # keys in the order they ran

# parse_wrk FILE: "RPS P50_MS P99_MS NON2XX CONNECT READ WRITE TIMEOUT" from one `wrk --latency` output.
parse_wrk() {
  awk '
    function ms(v,   n, unit) {
      n = v + 0; unit = v; sub(/^[0-9.]+/, "", unit)
      if (unit == "us") return n / 1000
      if (unit == "ms") return n
      if (unit == "s") return n * 1000
      if (unit == "m") return n * 60000
      if (unit == "h") return n * 3600000
      return -1
    }
    BEGIN { rps = 0; p50 = -1; p99 = -1; non2xx = 0; c = 0; r = 0; w = 0; t = 0 }
    $1 == "Requests/sec:" { rps = $2 + 0 }
    $1 == "50%" { p50 = ms($2) }
    $1 == "99%" { p99 = ms($2) }
    /Non-2xx or 3xx responses:/ { non2xx = $NF + 0 }
    /Socket errors:/ { gsub(/,/, ""); c = $4; r = $6; w = $8; t = $10 }
    END { printf "%.2f %.3f %.3f %d %d %d %d %d\n", rps, p50, p99, non2xx, c, r, w, t }
  ' "$1"
}

# bench SCENARIO TARGET PID WRK-ARGS...: runs wrk, shows and keeps its output, records the numbers.
bench() {
  local scenario="$1" target="$2" pid="$3" out
  shift 3
  out="$WORK/wrk-${#ROWS[@]}.txt"
  say "$scenario — $target"
  note "wrk $*"
  wrk "$@" >"$out" 2>&1 || die "wrk failed: $(cat "$out")"
  sed 's/^/    /' "$out" >&2
  {
    printf '\n--- %s — %s\n$ wrk %s\n' "$scenario" "$target" "$*"
    cat "$out"
  } >>"$RAW"
  local rps p50 p99 non2xx c r w t key="$scenario|$target"
  read -r rps p50 p99 non2xx c r w t < <(parse_wrk "$out")
  RPS[$key]=$rps
  P50[$key]=$p50
  P99[$key]=$p99
  ERRORS[$key]=$((non2xx + c + r + w + t))
  ERRDETAIL[$key]="non-2xx/3xx $non2xx, connect $c, read $r, write $w, timeout $t"
  # Peak so far: VmHWM only grows, so this is the highest the process reached up to this scenario.
  HWM[$key]="$(kib_of "$pid" VmHWM)"
  ROWS+=("$key")
}

S_HEALTH="health /health/live, 64 conn"
S_CEILING="ceiling GET /, 64 conn"
S_PAGE="settings page (SSR+session), 64 conn"
# No target: the same kind of page without a session (no store, no database), to tell rendering from
# the signed-in work when the page falls short.
S_ANON="terms page (SSR, no session), 64 conn"
S_SIGNIN="sign-in"
S_MANY="$CLIENTS keep-alive clients, $LONG_DURATION"

# The 1000-client run, with VmRSS sampled while it lasts.
bench_many() { # TARGET PID URL [extra wrk args]
  local target="$1" pid="$2" url="$3" sampler
  shift 3
  sample_rss "$pid" "$WORK/rss-$target" &
  sampler=$!
  PIDS+=("$sampler")
  bench "$S_MANY" "$target" "$pid" -t2 -c"$CLIENTS" -d"$LONG_DURATION" --latency --timeout 10s "$@" "$url"
  kill "$sampler" 2>/dev/null || true
  wait "$sampler" 2>/dev/null || true
  forget "$sampler"
  read -r "RSS_1000[$target]" "RSS_ANON[$target]" "RSS_FILE[$target]" <"$WORK/rss-$target"
}

# ---------------------------------------------------------------------------------------------------
# Accounts

# sign_in PORT: prints the session cookie (nestegg_session=...) of a fresh sign-in.
sign_in() {
  local base="http://127.0.0.1:$1" headers
  headers="$(curl -s -D - -o /dev/null -X POST "$base/api/sign_in" \
    -H "Origin: $base" -H "Sec-Fetch-Site: same-origin" \
    --data-urlencode "email=$EMAIL" --data-urlencode "password=$PASSWORD")"
  printf '%s' "$headers" | tr -d '\r' | sed -n 's/^set-cookie: \(nestegg_session=[^;]*\).*/\1/Ip' | head -n1
}

# check_page TARGET PORT: proves COOKIE reaches the signed-in settings page (fails the run if not).
check_page() {
  local target="$1" base="http://127.0.0.1:$2" code page="$WORK/page-$1.html" anonymous="$WORK/page-$1-anonymous.html"
  code="$(curl -s -o "$page" -w '%{http_code}' -H "Cookie: $COOKIE" -H "Accept: text/html" \
    "$base/settings/profile")"
  [[ "$code" == 200 ]] || die "$target: /settings/profile answered $code with the session cookie"
  # The page answers 200 signed out as well (it shows a sign-in prompt), so look for the account's
  # address: it is on the page only when the session really is signed in.
  grep -qF "$EMAIL" "$page" || die "$target: /settings/profile does not show the signed-in account"
  curl -s -o "$anonymous" -H "Accept: text/html" "$base/settings/profile"
  if grep -qF "$EMAIL" "$anonymous"; then
    die "$target: /settings/profile shows the account without a cookie: the check above proves nothing"
  fi
  note "/settings/profile renders the signed-in account (200, $(wc -c <"$page") bytes)"
}

# The WASM a first visit to each page downloads before it is interactive: every module the page's HTML
# preloads (the main one and the modules of the page's code), gzip -9. Sets PAGE_WASM (label -> bytes)
# and PAGE_WASM_MAX / PAGE_WASM_MAX_AT.
declare -A PAGE_WASM
PAGE_WASM_MAX=0
PAGE_WASM_MAX_AT=""
page_wasm() { # PORT PATH [curl args]
  local base="http://127.0.0.1:$1" path="$2" modules="" most=0 found count try raw=0 gz=0 module
  shift 2
  # A page lists its own modules only when its code ran before the head was written, which in leptos
  # 0.8.23 is not always so (see src/app.rs); the browser then asks for them while it hydrates. So the
  # longest list of five loads is the page's.
  for try in 1 2 3 4 5; do
    found="$(curl -s -H "Accept: text/html" "$@" "$base$path" | grep -o 'href="/pkg/[^"]*\.wasm"' |
      sed 's/^href="\(.*\)"$/\1/' | sort -u)"
    count="$(grep -c . <<<"$found" || true)"
    if ((count > most)); then
      most=$count
      modules="$found"
    fi
  done
  while read -r module; do
    [[ -n "$module" ]] || continue
    [[ -n "${GZ_OF[$module]:-}" ]] || die "$path preloads $module, which is not in $SITE_ROOT/pkg"
    raw=$((raw + RAW_OF[$module]))
    gz=$((gz + GZ_OF[$module]))
  done <<<"$modules"
  ((gz > 0)) || die "$path preloads no WASM"
  PAGE_WASM[$path]="$gz"
  note "first visit to $path: $raw bytes of WASM raw, $gz gzip -9"
  if ((gz > PAGE_WASM_MAX)); then
    PAGE_WASM_MAX=$gz
    PAGE_WASM_MAX_AT="$path"
  fi
}

# prepare_account TARGET PORT: registers the account and signs in. Sets COOKIE.
prepare_account() {
  local target="$1" port="$2" base="http://127.0.0.1:$2" code
  code="$(curl -s -o "$WORK/register-$target.txt" -w '%{http_code}' -X POST "$base/api/register" \
    -H "Origin: $base" -H "Sec-Fetch-Site: same-origin" \
    --data-urlencode "email=$EMAIL" --data-urlencode "display_name=Bench Mark" \
    --data-urlencode "password=$PASSWORD" -d accept_terms=on -d accept_privacy=on)"
  [[ "$code" == 200 ]] || die "$target: registration answered $code: $(cat "$WORK/register-$target.txt")"
  COOKIE="$(sign_in "$port")"
  [[ -n "$COOKIE" ]] || die "$target: sign-in set no session cookie"
  check_page "$target" "$port"
}

# create_sessions TARGET PORT: SESSIONS sign-ins (each one a live session), then counts them.
create_sessions() {
  local target="$1" port="$2" line
  say "creating $SESSIONS live sessions — $target"
  line="$(python3 "$BENCH/sessions.py" --url "http://127.0.0.1:$port" --email "$EMAIL" \
    --password "$PASSWORD" --count "$SESSIONS" --workers 8)"
  note "$line"
  SESSION_NOTE[$target]="$line"
}

# count_sessions TARGET: live signed-in sessions of the arrangement, counted where they are stored.
count_sessions() {
  local user_id
  case "$1" in
    "$T_SQLITE")
      # In the database (the embedded arrangement). python3's sqlite3 module, as the sqlite3 shell may
      # not be installed; read-only while the server keeps running (WAL allows it).
      SESSIONS_LIVE[$1]="$(python3 - "$SQLITE_DATA/nestegg.db" <<'EOF'
import sqlite3, sys, time
db = sqlite3.connect(f"file:{sys.argv[1]}?mode=ro", uri=True)
print(db.execute(
    "SELECT COUNT(*) FROM sessions WHERE user_id IS NOT NULL AND expires_at > ?", (int(time.time()),)
).fetchone()[0])
EOF
      )"
      ;;
    "$T_PG")
      # In Redis: each person has an index (a hash of session key -> start time) of their sessions.
      user_id="$(psql "$PG_ADMIN/$PG_DB" -qXAt -c "SELECT id FROM users WHERE email = '$EMAIL'")"
      SESSIONS_LIVE[$1]="$(redis-cli -h "$REDIS_HOST" -p "$REDIS_PORT" HLEN "$REDIS_PREFIX:user-sessions:$user_id")"
      ;;
  esac
}

# ---------------------------------------------------------------------------------------------------
# 1. Static measurements

say "machine"
CORES="$(nproc)"
CPU_MODEL="$(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo)"
MEM_TOTAL="$(awk '/^MemTotal:/ { printf "%.1f GiB", $2 / 1048576 }' /proc/meminfo)"
note "$CORES cores ($CPU_MODEL), $MEM_TOTAL, Linux $(uname -r), $(wrk -v 2>&1 | head -n1 | cut -d' ' -f1-2)"

say "release WASM size"
# The bundle is split (cargo leptos build --split, see src/app.rs): the main module every page loads,
# and the modules of the pages, each loaded with the first page that needs it. All of them together
# are the whole site; what one page load downloads is measured per page below (page_wasm).
# Each module's size is read once here (RAW_OF / GZ_OF, keyed by its path under /pkg) and summed per page.
declare -A RAW_OF GZ_OF
WASM_RAW=0
WASM_GZ=0
WASM_FILES=0
for f in "$SITE_ROOT"/pkg/*.wasm; do
  module="/pkg/${f##*/}"
  RAW_OF[$module]="$(stat -c %s "$f")"
  GZ_OF[$module]="$(gzip -9 -c "$f" | wc -c)"
  WASM_RAW=$((WASM_RAW + RAW_OF[$module]))
  WASM_GZ=$((WASM_GZ + GZ_OF[$module]))
  WASM_FILES=$((WASM_FILES + 1))
done
MAIN_WASM_GZ="${GZ_OF[/pkg/${WASM##*/}]}"
note "$WASM_FILES WASM modules: $WASM_RAW bytes raw, $WASM_GZ bytes gzip -9 in all; the main one ${RAW_OF[/pkg/${WASM##*/}]} raw, $MAIN_WASM_GZ gzip -9"

say "argon2 CPU time per hash (nestegg measure-hash)"
mkdir -p "$WORK/hash"
nestegg_env 0 "$WORK/hash/data"
if HASH_LINE="$(cd "$WORK/hash" && env -i "${ENV_ARGS[@]}" "$NESTEGG_BIN" measure-hash 2>&1)"; then
  note "$HASH_LINE"
else
  note "measure-hash failed (a build without the subcommand?): $HASH_LINE"
  HASH_LINE=""
fi
# Two figures: one hash alone, and one hash while as many run at once as the server allows (the
# cores, by default), as they do under a sign-in flood. The second is the one the cores can sustain:
# two 19 MiB working sets share the processor's last-level cache and memory bandwidth.
HASH_MS_ALONE="$(printf '%s\n' "$HASH_LINE" | sed -n 's/.*: \([0-9.]*\) ms CPU per hash alone.*/\1/p' | head -n1)"
HASH_MS="$(printf '%s\n' "$HASH_LINE" | sed -n 's/.*; \([0-9.]*\) ms CPU per hash with.*/\1/p' | head -n1)"
# How many hashed at once: the server's ARGON2_MAX_CONCURRENT, at most the cores.
HASH_THREADS="$(printf '%s\n' "$HASH_LINE" | sed -n 's/.* ms CPU per hash with \([0-9]*\) at once.*/\1/p' | head -n1)"
HASH_THREADS="${HASH_THREADS:-$CORES}"
if [[ -n "$HASH_MS" ]]; then
  # Each sign-in is one argon2 verification; with every hashing slot busy, no more can finish per second.
  HASH_BOUND="$(calc "$HASH_THREADS * 1000 / $HASH_MS")"
  note "bound: $HASH_THREADS hashing at once ÷ $HASH_MS ms = $(printf '%.1f' "$HASH_BOUND") sign-ins/s"
  if [[ -n "$HASH_MS_ALONE" ]]; then
    HASH_BOUND_ALONE="$(calc "$HASH_THREADS * 1000 / $HASH_MS_ALONE")"
    note "(from one hash alone, $HASH_MS_ALONE ms: $(printf '%.1f' "$HASH_BOUND_ALONE") sign-ins/s)"
  fi
fi

say "time to ready on SQLite (fresh data directory, so migrations included; median of 5)"
READY_MS=()
for i in 1 2 3 4 5; do
  start_nestegg "ready$i" "$SQLITE_PORT"
  t0="$(date +%s%N)"
  # Every 5 ms, as the target is about how soon a restarted instance serves again.
  until [[ "$(curl -s -o /dev/null -w '%{http_code}' --max-time 1 "http://127.0.0.1:$SQLITE_PORT/health/ready" || true)" == 200 ]]; do
    alive "$SERVER_PID" || die "the server exited during start-up: $(tail -n 20 "$WORK/ready$i.log")"
    (($(date +%s%N) - t0 < 30000000000)) || die "not ready after 30 s: $(tail -n 20 "$WORK/ready$i.log")"
    sleep 0.005
  done
  ms=$((($(date +%s%N) - t0) / 1000000))
  READY_MS+=("$ms")
  note "start $i: $ms ms"
  stop "$SERVER_PID"
done
READY_MEDIAN="$(printf '%s\n' "${READY_MS[@]}" | sort -n | sed -n 3p)"
note "median: $READY_MEDIAN ms"

# ---------------------------------------------------------------------------------------------------
# 2. Bare axum (the ceiling)

say "starting the bare axum server on :$HELLO_PORT"
port_free "$HELLO_PORT" || die "port $HELLO_PORT is in use (set HELLO_PORT to another)"
env -i PORT="$HELLO_PORT" "$HELLO_BIN" >>"$WORK/hello.log" 2>&1 &
HELLO_PID=$!
PIDS+=("$HELLO_PID")
wait_ready "$HELLO_PID" "http://127.0.0.1:$HELLO_PORT/" 30 || die "bare axum server not answering: $(cat "$WORK/hello.log")"
URL="http://127.0.0.1:$HELLO_PORT"
bench "$S_HEALTH" "$T_HELLO" "$HELLO_PID" -t2 -c64 -d"$DURATION" --latency "$URL/health/live"
bench "$S_CEILING" "$T_HELLO" "$HELLO_PID" -t2 -c64 -d"$DURATION" --latency "$URL/"
bench_many "$T_HELLO" "$HELLO_PID" "$URL/"
HWM_END[$T_HELLO]="$(kib_of "$HELLO_PID" VmHWM)"
stop "$HELLO_PID"

# ---------------------------------------------------------------------------------------------------
# 3. Nest Egg, once per arrangement

# run_nestegg TARGET PORT: every scenario against a server already started (SERVER_PID).
run_nestegg() {
  local target="$1" port="$2" pid="$SERVER_PID" url="http://127.0.0.1:$2"
  wait_ready "$pid" "$url/health/ready" 60 || die "$target not ready: $(tail -n 20 "$WORK/$target.log")"
  prepare_account "$target" "$port"
  local page=(-H "Cookie: $COOKIE" -H "Accept: text/html")
  if [[ "$target" == "$T_SQLITE" ]]; then
    local path
    for path in / /login /register; do page_wasm "$port" "$path"; done
    for path in /settings/profile /settings/security /settings/security/two-factor /settings/sessions \
      /household; do
      page_wasm "$port" "$path" -H "Cookie: $COOKIE"
    done
  fi

  bench "$S_HEALTH" "$target" "$pid" -t2 -c64 -d"$DURATION" --latency "$url/health/live"
  bench "$S_PAGE" "$target" "$pid" -t2 -c64 -d"$DURATION" --latency "${page[@]}" "$url/settings/profile"
  bench "$S_ANON" "$target" "$pid" -t2 -c64 -d"$DURATION" --latency -H "Accept: text/html" "$url/terms"
  local c
  for c in 4 16 64; do
    # A 10 s timeout, as a person would wait: at 64 connections requests queue for the two hashing
    # slots for about a second, which is latency, not failure.
    bench "$S_SIGNIN, $c conn" "$target" "$pid" -t2 -c"$c" -d"$DURATION" --latency --timeout 10s \
      -s "$BENCH/sign_in.lua" "$url/api/sign_in" -- "$EMAIL" "$PASSWORD" "$url"
  done

  create_sessions "$target" "$port"
  count_sessions "$target"
  note "live signed-in sessions: ${SESSIONS_LIVE[$target]}"

  # A fresh session for the long run, checked like the first (the first one still works; this proves
  # the server still signs people in and renders the page after all the sessions above).
  COOKIE="$(sign_in "$port")"
  [[ -n "$COOKIE" ]] || die "$target: sign-in set no session cookie"
  check_page "$target" "$port"
  page=(-H "Cookie: $COOKIE" -H "Accept: text/html")
  # The hashing pool keeps a working buffer (19 MiB) per slot for 2 s after a burst of sign-ins
  # (services::crypto::POOL_IDLE, trimmed every second): let the sign-ins above finish giving theirs
  # back, so the peak below is the 1000 clients' and not theirs.
  sleep 4
  bench_many "$target" "$pid" "$url/settings/profile" "${page[@]}"
  HWM_END[$target]="$(kib_of "$pid" VmHWM)"
  # What the server complained about (RUST_LOG=warn), counted before stopping it: requests still queued
  # when wrk stops fail against a closing pool and would only add noise.
  LOG_PROBLEMS[$target]="$(grep -o '"message":"[^"]*"' "$WORK/$target.log" | sed 's/"message":"\(.*\)"/\1/' |
    sort | uniq -c | sort -rn | head -n 10 | sed 's/^ */      /' || true)"
  stop "$pid"
}

say "starting Nest Egg on SQLite on :$SQLITE_PORT"
start_nestegg "$T_SQLITE" "$SQLITE_PORT"
SQLITE_DATA="$SERVER_DATA/data"
run_nestegg "$T_SQLITE" "$SQLITE_PORT"

say "creating database $PG_DB; starting Nest Egg on PostgreSQL + Redis (key prefix $REDIS_PREFIX) on :$PG_PORT"
PGOPTIONS="-c client_min_messages=warning" psql "$PG_ADMIN/postgres" -qX -v ON_ERROR_STOP=1 \
  -c "DROP DATABASE IF EXISTS $PG_DB WITH (FORCE)" -c "CREATE DATABASE $PG_DB" >/dev/null ||
  die "cannot (re)create database $PG_DB at $PG_ADMIN"
PG_CREATED=1
redis-cli -h "$REDIS_HOST" -p "$REDIS_PORT" ping >/dev/null || die "Redis is not answering at $REDIS_HOST:$REDIS_PORT"
start_nestegg "$T_PG" "$PG_PORT" \
  DATABASE_URL="$PG_ADMIN/$PG_DB" \
  DB_MAX_CONNECTIONS=16 \
  REDIS_URL="redis://$REDIS_HOST:$REDIS_PORT/0" \
  REDIS_KEY_PREFIX="$REDIS_PREFIX"
run_nestegg "$T_PG" "$PG_PORT"

# ---------------------------------------------------------------------------------------------------
# 4. Summary

ms_str() { awk -v v="$1" 'BEGIN { if (v < 0) print "-"; else if (v >= 100) printf "%.0f ms", v; else printf "%.2f ms", v }'; }
mib_str() { [[ -n "$1" ]] && awk -v k="$1" 'BEGIN { printf "%.1f MiB", k / 1024 }' || echo "-"; }
pct() { calc "100 * $1 / $2" | awk '{ printf "%.1f%%", $1 }'; }

PASSED=0
FAILED=0
# verdict OK? LABEL TARGET DETAIL
verdict() {
  local ok="$1" mark
  if [[ "$ok" == 1 ]]; then
    mark="PASS"
    PASSED=$((PASSED + 1))
  elif [[ "$ok" == na ]]; then
    mark="n/a "
  else
    mark="FAIL"
    FAILED=$((FAILED + 1))
  fi
  printf '  %s  %-50s %-17s %s\n' "$mark" "$2" "$3" "$4"
}
ge() { awk -v a="$1" -v b="$2" 'BEGIN { print (a >= b) ? 1 : 0 }'; }

SHA="$(git -C "$REPO" rev-parse --short HEAD 2>/dev/null || echo unknown)"
if [[ -n "$(git -C "$REPO" --no-optional-locks status --porcelain 2>/dev/null)" ]]; then SHA="$SHA-dirty"; fi

SUMMARY="$WORK/summary.txt"
{
  echo "Nest Egg benchmark — $(date -u '+%Y-%m-%d %H:%M UTC'), commit $SHA"
  echo "Machine: $CORES cores ($CPU_MODEL), $MEM_TOTAL, Linux $(uname -r); wrk runs on the same machine."
  echo "wrk -t2; scenarios $DURATION each, $CLIENTS clients for $LONG_DURATION; SQLite default pool, PostgreSQL pool 16."
  echo "argon2: ${HASH_LINE:-not measured}"
  echo
  printf '%-38s %-17s %10s %10s %10s %8s %11s\n' scenario target "req/s" p50 p99 errors "peak RSS"
  printf '%-38s %-17s %10s %10s %10s %8s %11s\n' "$(printf '%.0s-' {1..38})" "$(printf '%.0s-' {1..17})" \
    ---------- ---------- ---------- -------- -----------
  for key in "${ROWS[@]}"; do
    printf '%-38s %-17s %10.0f %10s %10s %8s %11s\n' "${key%%|*}" "${key#*|}" "${RPS[$key]}" \
      "$(ms_str "${P50[$key]}")" "$(ms_str "${P99[$key]}")" "${ERRORS[$key]}" "$(mib_str "${HWM[$key]}")"
  done
  echo "(peak RSS: VmHWM read right after the scenario, so the highest the process had reached by then)"
  echo
  echo "Errors in detail (only rows that had any):"
  any=0
  for key in "${ROWS[@]}"; do
    if ((${ERRORS[$key]} > 0)); then
      printf '  %-38s %-17s %s\n' "${key%%|*}" "${key#*|}" "${ERRDETAIL[$key]}"
      any=1
    fi
  done
  ((any)) || echo "  none"
  echo
  echo "Memory and sessions:"
  for t in "$T_HELLO" "$T_SQLITE" "$T_PG"; do
    printf '  %-17s VmHWM at the end %9s; highest VmRSS during the %s-client run %9s (anonymous %s, files %s); live sessions %s\n' \
      "$t" "$(mib_str "${HWM_END[$t]:-}")" "$CLIENTS" "$(mib_str "${RSS_1000[$t]:-}")" \
      "$(mib_str "${RSS_ANON[$t]:-}")" "$(mib_str "${RSS_FILE[$t]:-}")" "${SESSIONS_LIVE[$t]:-n/a}"
  done
  for t in "$T_SQLITE" "$T_PG"; do
    printf '  %-17s session sign-ins: %s\n' "$t" "${SESSION_NOTE[$t]}"
  done
  echo
  echo "Release WASM: $WASM_FILES modules, $WASM_RAW bytes raw, $WASM_GZ bytes gzip -9 in all (main module $MAIN_WASM_GZ gzip -9)"
  printf '  first visit, gzip -9:'
  for path in "${!PAGE_WASM[@]}"; do printf ' %s %s;' "$path" "${PAGE_WASM[$path]}"; done
  echo
  echo "Ready on SQLite (fresh data directory): ${READY_MS[*]} ms; median $READY_MEDIAN ms"
  echo
  echo "Server warnings and errors during the scenarios (count, message; RUST_LOG=warn):"
  for t in "$T_SQLITE" "$T_PG"; do
    echo "  $t:"
    if [[ -n "${LOG_PROBLEMS[$t]}" ]]; then echo "${LOG_PROBLEMS[$t]}"; else echo "      none"; fi
  done
  echo
  echo "Targets:"
  ceiling="${RPS[$S_CEILING|$T_HELLO]}"
  hello_health="${RPS[$S_HEALTH|$T_HELLO]}"
  for t in "$T_SQLITE" "$T_PG"; do
    k="$S_PAGE|$t"
    verdict "$(ge "${RPS[$k]}" "$(calc "0.25 * $ceiling")")" "settings page ≥ 25% of bare axum GET /" "$t" \
      "$(pct "${RPS[$k]}" "$ceiling") ($(printf '%.0f' "${RPS[$k]}") vs $(printf '%.0f' "$ceiling") req/s)"
  done
  for t in "$T_SQLITE" "$T_PG"; do
    k="$S_HEALTH|$t"
    verdict "$(ge "${RPS[$k]}" "$(calc "0.8 * $hello_health")")" "health ≥ 80% of bare axum health" "$t" \
      "$(pct "${RPS[$k]}" "$hello_health") ($(printf '%.0f' "${RPS[$k]}") vs $(printf '%.0f' "$hello_health") req/s)"
  done
  for t in "$T_SQLITE" "$T_PG"; do
    for c in 4 16 64; do
      k="$S_SIGNIN, $c conn|$t"
      if [[ -z "${HASH_BOUND:-}" ]]; then
        verdict na "sign-in ≥ 95% of argon2 bound, 0 errors, c$c" "$t" "no argon2 measurement"
        continue
      fi
      ok="$(ge "${RPS[$k]}" "$(calc "0.95 * $HASH_BOUND")")"
      ((${ERRORS[$k]} == 0)) || ok=0
      verdict "$ok" "sign-in ≥ 95% of argon2 bound, 0 errors, c$c" "$t" \
        "$(pct "${RPS[$k]}" "$HASH_BOUND") ($(printf '%.1f' "${RPS[$k]}") of $(printf '%.1f' "$HASH_BOUND")/s; $(pct "${RPS[$k]}" "${HASH_BOUND_ALONE:-$HASH_BOUND}") of the one-hash-alone bound), ${ERRORS[$k]} errors"
    done
  done
  for t in "$T_SQLITE" "$T_PG"; do
    k="$S_MANY|$t"
    ratio="$(awk -v a="${P99[$k]}" -v b="${P50[$k]}" 'BEGIN { if (b > 0) printf "%.1f", a / b; else print "inf" }')"
    ok="$(awk -v a="${P99[$k]}" -v b="${P50[$k]}" 'BEGIN { print (b > 0 && a <= 10 * b) ? 1 : 0 }')"
    ((${ERRORS[$k]} == 0)) || ok=0
    verdict "$ok" "$CLIENTS clients: 0 errors, p99 ≤ 10 × p50" "$t" \
      "${ERRORS[$k]} errors, p50 $(ms_str "${P50[$k]}"), p99 $(ms_str "${P99[$k]}"), p99/p50 $ratio"
  done
  for t in "$T_SQLITE" "$T_PG"; do
    rss="${RSS_1000[$t]:-0}"
    live="${SESSIONS_LIVE[$t]:-0}"
    [[ "$live" =~ ^[0-9]+$ ]] || live=0
    ok=$(((rss <= 64 * 1024 && live >= 10000) ? 1 : 0))
    verdict "$ok" "RSS ≤ 64 MiB at $CLIENTS conn, ≥ 10,000 sessions" "$t" \
      "$(mib_str "$rss") (highest VmRSS during the run), $live live sessions"
  done
  # What a visitor downloads before a page is interactive: the largest first visit measured.
  verdict "$(((PAGE_WASM_MAX <= 160000) ? 1 : 0))" "release WASM ≤ 160 KB gzip (a page's first visit)" "-" \
    "$PAGE_WASM_MAX bytes ($(calc "$PAGE_WASM_MAX / 1000") KB) at $PAGE_WASM_MAX_AT; $WASM_GZ in all"
  verdict "$(((READY_MEDIAN < 1000) ? 1 : 0))" "ready < 1 s on SQLite (median of 5)" "-" "$READY_MEDIAN ms"
  echo
  echo "$PASSED passed, $FAILED failed."
} >"$SUMMARY"

say "summary"
cat "$SUMMARY"

mkdir -p "$BENCH/results"
RESULT="$BENCH/results/$(date -u +%Y-%m-%d)-$SHA.txt"
n=2
while [[ -e "$RESULT" ]]; do
  RESULT="$BENCH/results/$(date -u +%Y-%m-%d)-$SHA-$n.txt"
  n=$((n + 1))
done
{
  cat "$SUMMARY"
  echo
  echo "================ raw wrk output ================"
  cat "$RAW"
} >"$RESULT"
echo
echo "written to ${RESULT#"$REPO"/}"
