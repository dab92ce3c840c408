#!/usr/bin/env bash
# Builds the Perseus web site (Rust -> WebAssembly) into web/dist/site, which the server serves
# at `/`. Used by scripts/run.sh, scripts/test.sh and CI, so all of them build it the same way.
#
# This machine's rustup toolchain has no wasm32 target and cannot download one, so the browser
# side is built with Debian's `rustc-web` toolchain and its std sources (`-Z build-std`), linked
# by `wasm-ld` from Debian's lld. Tools are installed once into .tmp/tools (override with
# LATCHKEY_TOOLS_DIR) and reused: a first run takes several minutes, later runs seconds.
source "$(dirname "$0")/lib.sh"
SCRIPT_TAG="[site] "
ROOT="$PWD"
TOOLS="${LATCHKEY_TOOLS_DIR:-$ROOT/.tmp/tools}"
PERSEUS_CLI_VERSION="0.4.2"
BINARYEN_VERSION="132.0.0"
OUT="$ROOT/web/dist/site"
started=$SECONDS
mkdir -p "$TOOLS/bin"

# The host cargo (rustup's) builds the native tools; Debian's builds the site.
HOST_CARGO="$(command -v cargo)"
DEBIAN_CARGO=/usr/bin/cargo

if [[ ! -x "$DEBIAN_CARGO" || ! -d /usr/lib/rustlib/src/rust/library || ! -x /usr/bin/wasm-ld ]]; then
  step "installing Debian's Rust toolchain with std sources, and wasm-ld"
  apt_install rustc-web cargo-web rust-web-src lld
fi

if [[ ! -x "$TOOLS/bin/perseus" ]]; then
  step "building perseus-cli $PERSEUS_CLI_VERSION (once, about 4 minutes)"
  # As published it resolves `console 0.16`, which breaks its pinned indicatif beta; pin 0.15.
  src="$TOOLS/src/perseus-cli-$PERSEUS_CLI_VERSION"
  if [[ ! -f "$src/Cargo.toml" ]]; then
    scratch="$TOOLS/src/fetch-perseus-cli"
    mkdir -p "$scratch/src"
    printf '[package]\nname = "fetch-perseus-cli"\nversion = "0.0.0"\nedition = "2021"\n[dependencies]\nperseus-cli = "=%s"\n' \
      "$PERSEUS_CLI_VERSION" >"$scratch/Cargo.toml"
    touch "$scratch/src/lib.rs"
    "$HOST_CARGO" fetch -q --manifest-path "$scratch/Cargo.toml"
    registry_src="$(dirname "$(find "${CARGO_HOME:-$HOME/.cargo}/registry/src" -maxdepth 2 -type d -name "perseus-cli-$PERSEUS_CLI_VERSION" | head -1)")"
    cp -r "$registry_src/perseus-cli-$PERSEUS_CLI_VERSION" "$src"
  fi
  (
    cd "$src"
    "$HOST_CARGO" generate-lockfile -q
    "$HOST_CARGO" update -q -p 'console@0.16' --precise 0.15.11 2>/dev/null || true
    "$HOST_CARGO" install -q --locked --path . --root "$TOOLS"
  )
fi

# wasm-bindgen's CLI must match the library version in the site's lockfile exactly.
WASM_BINDGEN_VERSION="$(awk '/^name = "wasm-bindgen"$/ { getline; gsub(/[^0-9.]/, ""); print; exit }' web/Cargo.lock)"
if [[ ! -x "$TOOLS/bin/wasm-bindgen" ]] || [[ "$("$TOOLS/bin/wasm-bindgen" --version)" != "wasm-bindgen $WASM_BINDGEN_VERSION" ]]; then
  step "building wasm-bindgen-cli $WASM_BINDGEN_VERSION (once, about 3 minutes)"
  "$HOST_CARGO" install -q --force wasm-bindgen-cli --version "=$WASM_BINDGEN_VERSION" --root "$TOOLS"
fi

if [[ ! -x "$TOOLS/binaryen/node_modules/.bin/wasm-opt" ]]; then
  step "installing wasm-opt (npm binaryen@$BINARYEN_VERSION)"
  npm install --silent --no-audit --no-fund --prefix "$TOOLS/binaryen" "binaryen@$BINARYEN_VERSION" >/dev/null
fi

step "generating the API client from openapi/openapi.json"
# progenitor needs a newer rustc than Debian's, so the host toolchain writes the client.
"$HOST_CARGO" run -q --locked -p latchkey-client-gen -- openapi/openapi.json web/src/generated/api_client.rs

step "building the site (engine + WebAssembly) into web/dist/site"
cd web
# perseus-cli 0.4.2 cannot parse lockfile format 4, so the committed lockfile is format 3; the
# build must not change it (Debian's cargo keeps an existing lockfile's format).
if ! grep -qx 'version = 3' Cargo.lock; then
  echo "web/Cargo.lock must be lockfile format 3 (perseus-cli 0.4.2 reads no other)" >&2
  exit 1
fi
lock_before="$(sha256sum Cargo.lock)"
lock_unchanged() { [[ "$(sha256sum Cargo.lock)" == "$lock_before" ]]; }
# Also when the build fails: a rewritten lockfile must not become the next run's baseline.
trap 'lock_unchanged || echo "the build changed web/Cargo.lock; restore it (git checkout web/Cargo.lock) or commit a deliberate change in format 3" >&2' EXIT
# Debian's toolchain first in PATH for every step; perseus-cli calls plain `cargo`.
export PATH="/usr/bin:$TOOLS/bin:$PATH"
export CARGO_TARGET_WASM32_UNKNOWN_UNKNOWN_LINKER=wasm-ld
RUSTC_BOOTSTRAP=1 perseus --rustup-path false --no-system-tools-cache \
  --wasm-bindgen-path "$TOOLS/bin/wasm-bindgen" \
  --wasm-opt-path "$TOOLS/binaryen/node_modules/.bin/wasm-opt" \
  --cargo-browser-args="-Z build-std=std,panic_abort" \
  deploy --export-static --no-minify-js -o "$OUT"

# perseus calls cargo without --locked; a lockfile that needed changing would change silently.
lock_unchanged || exit 1

wasm="$OUT/.perseus/bundle.wasm"
if [[ -f "$wasm" ]]; then
  raw=$(stat -c %s "$wasm"); gz=$(gzip -9 -c "$wasm" | wc -c)
  step "done in $((SECONDS - started)) s; bundle.wasm: $((raw / 1024)) KiB raw, $((gz / 1024)) KiB gzipped"
fi
