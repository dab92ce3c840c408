#!/usr/bin/env bash
# Runs every test in the workspace: unit tests, the repository contract suite and the HTTP
# suites on both the in-memory store and a real MongoDB-compatible server over the wire, and the
# web site in headless Chromium (screenshots in target/screenshots/).
#
# Builds the site first (scripts/build-site.sh) and installs Debian's chromium and
# chromium-driver when they are missing (as root).
#
# With MONGODB_URI set, that server is used. Otherwise this script installs SecantusDB (a
# MongoDB wire-compatible server from PyPI) into .tmp/, starts it on a free port for the run,
# and stops it afterwards. Extra arguments go to `cargo test`.
set -euo pipefail
cd "$(dirname "$0")/.."

SECANTUS_VERSION="0.7.0b3"
VENV=".tmp/secantus-venv"
step() { printf '\n==> %s\n' "$*" >&2; }

bash scripts/build-site.sh

if ! command -v chromium >/dev/null || ! command -v chromedriver >/dev/null; then
  if [[ "$(id -u)" -ne 0 ]]; then
    echo "the browser test needs Chromium: sudo apt-get install -y chromium chromium-driver" >&2
    exit 1
  fi
  step "installing chromium and chromium-driver"
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y -q chromium chromium-driver >/dev/null \
    || { apt-get update -qq && apt-get install -y -q chromium chromium-driver >/dev/null; }
fi

if [[ -z "${MONGODB_URI:-}" ]]; then
  if [[ ! -x "$VENV/bin/python" ]] || ! "$VENV/bin/python" -c 'import secantus' 2>/dev/null; then
    step "installing SecantusDB $SECANTUS_VERSION into $VENV (once, ~30 s)"
    python3 -m venv "$VENV"
    "$VENV/bin/pip" install --quiet --disable-pip-version-check "secantusdb==$SECANTUS_VERSION"
  fi
  port="$("$VENV/bin/python" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')"
  log=".tmp/secantus-$port.log"
  step "starting SecantusDB on 127.0.0.1:$port (log: $log)"
  "$VENV/bin/python" -m secantus --host 127.0.0.1 --port "$port" --storage-path :memory: \
    --log-level WARNING >"$log" 2>&1 &
  server_pid=$!
  trap 'kill "$server_pid" 2>/dev/null || true; wait "$server_pid" 2>/dev/null || true' EXIT
  for _ in $(seq 1 100); do
    if "$VENV/bin/python" -c "import socket; socket.create_connection(('127.0.0.1',$port),0.2)" 2>/dev/null; then
      break
    fi
    if ! kill -0 "$server_pid" 2>/dev/null; then
      echo "SecantusDB exited during start-up:" >&2; cat "$log" >&2; exit 1
    fi
    sleep 0.1
  done
  export MONGODB_URI="mongodb://127.0.0.1:$port/?directConnection=true"
fi

step "cargo test --workspace (MongoDB suites use ${MONGODB_URI%%\?*})"
cargo test --workspace --locked "$@"
