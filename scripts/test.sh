#!/usr/bin/env bash
# Runs every test in the workspace: unit tests, the repository contract suite and the HTTP
# suites on both the in-memory store and a real MongoDB-compatible server over the wire, the API
# contract under schemathesis, and the web site in headless Chromium (screenshots in
# target/screenshots/).
#
# Builds the site first (scripts/build-site.sh) and installs Debian's chromium and
# chromium-driver when they are missing (as root).
#
# With MONGODB_URI set, that server is used. Otherwise this script starts SecantusDB (a
# MongoDB wire-compatible server from PyPI, installed into .tmp/ either way: some tests start
# their own) on a free port for the run, and stops it afterwards. schemathesis (PyPI) goes into
# .tmp/ too, for the API contract suite, aiosmtpd (PyPI), the SMTP server the mail suites
# deliver to, PyJWT (PyPI), which verifies tokens with the published keys in the key suite, and
# openapi-python-client (PyPI), the client generator the client generator suite runs over
# openapi/openapi.json.
# Extra arguments go to `cargo test`.
source "$(dirname "$0")/lib.sh"

bash scripts/build-site.sh

if ! command -v chromium >/dev/null || ! command -v chromedriver >/dev/null; then
  step "installing chromium and chromium-driver"
  apt_install chromium chromium-driver
fi

# Its dependencies pinned too: the verdict depends on them (jsonschema-rs decides what an email
# is). Regenerate with `.tmp/schemathesis-venv/bin/pip freeze > scripts/schemathesis-constraints.txt`.
pip_tool .tmp/schemathesis-venv "schemathesis==$SCHEMATHESIS_VERSION" scripts/schemathesis-constraints.txt
export SCHEMATHESIS="$PWD/.tmp/schemathesis-venv/bin/st"

# PyJWT verifies tokens from the published keys the way an integrator's service would (the key
# suite); its dependencies pinned, since cryptography decides what verifies.
pip_tool .tmp/pyjwt-venv "pyjwt[crypto]==$PYJWT_VERSION" scripts/pyjwt-constraints.txt
export PYJWT_PYTHON="$PWD/.tmp/pyjwt-venv/bin/python"

# openapi-python-client, a mainstream client generator that is not the site's own: the client
# generator suite generates a Python client from openapi/openapi.json and drives a server with
# it. Its dependencies pinned too: they shape the generated code (ruff formats it) and run it
# (httpx, attrs). Regenerate with `.tmp/openapi-python-client-venv/bin/pip freeze >
# scripts/openapi-python-client-constraints.txt`.
pip_tool .tmp/openapi-python-client-venv "openapi-python-client==$OPENAPI_PYTHON_CLIENT_VERSION" \
  scripts/openapi-python-client-constraints.txt
export OPENAPI_PYTHON_CLIENT="$PWD/.tmp/openapi-python-client-venv/bin/openapi-python-client"

# A real SMTP server for the mail suites (each test starts its own).
pip_tool .tmp/aiosmtpd-venv "aiosmtpd==$AIOSMTPD_VERSION"
export AIOSMTPD_PYTHON="$PWD/.tmp/aiosmtpd-venv/bin/python"

# SecantusDB: the store of the run (unless MONGODB_URI names one), and the store the readiness
# tests of the operations suite start and kill themselves, named by SECANTUS_PYTHON.
VENV=".tmp/secantus-venv"
pip_tool "$VENV" "secantusdb==$SECANTUS_VERSION"
export SECANTUS_PYTHON="$PWD/$VENV/bin/python"

if [[ -z "${MONGODB_URI:-}" ]]; then
  port="$(free_port)"
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
