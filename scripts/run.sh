#!/usr/bin/env bash
# Builds the web site if needed and starts latchkey with it on http://127.0.0.1:8080 (or
# HOST/PORT). Configuration comes from the environment or .env; with none, the in-memory store.
source "$(dirname "$0")/lib.sh"
bash scripts/build-site.sh
exec cargo run --release --locked --bin latchkey -- serve "$@"
