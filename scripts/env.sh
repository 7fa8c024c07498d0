# Sourced by the other scripts: one place for paths every command agrees on.
# wasm-opt (release builds) from the tools folder bootstrap.sh fills.
export PATH="$HOME/.cache/nestegg/tools/node_modules/.bin:$HOME/.cargo/bin:$PATH"
# Compiled artifacts live outside the clone, so a fresh clone (CI) reuses already compiled dependencies.
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/nestegg/target}"
# cargo-leptos builds the debug server with this flag; cargo test/clippy use it too so they reuse the
# same compiled dependencies instead of building 300+ crates a second time. (Not exported: cargo-leptos
# adds it itself and would otherwise see it twice.)
SERVER_RUSTFLAGS="--cfg erase_components"
# cargo-leptos compiles the output name into the server (it decides the WASM file name the pages load).
# Builds made by plain cargo (tests, clippy) get the same value, read from Leptos.toml, so they neither
# rebuild the Leptos crates nor overwrite the server binary with one that asks for the wrong file.
LEPTOS_OUTPUT_NAME="$(sed -n 's/^output-name *= *"\(.*\)"/\1/p' "$(dirname "${BASH_SOURCE[0]}")/../Leptos.toml")"
export LEPTOS_OUTPUT_NAME
