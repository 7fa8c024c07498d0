#!/usr/bin/env bash
# Installs whatever is missing, builds Nest Egg and serves it on http://127.0.0.1:3000 with an embedded
# SQLite database under ./data/ (no configuration needed). Stop with Ctrl-C.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
source scripts/env.sh

bash scripts/bootstrap.sh
echo "==> building (first build takes about 5 minutes)"
cargo leptos build --split
echo "==> starting Nest Egg on http://127.0.0.1:3000 (data in ./data/)"
# cargo-leptos writes the site next to the compiled code: tell the server where (Leptos.toml assumes ./target).
export LEPTOS_SITE_ROOT="$CARGO_TARGET_DIR/site"
exec "$CARGO_TARGET_DIR/debug/nestegg" serve
