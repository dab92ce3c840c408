#!/usr/bin/env bash
# Benchmarks a release build of the server over HTTP on this machine and prints: argon2id
# verifies/s in process (1 thread and one per hash worker), the server's start-to-ready time
# and RSS at rest, RSS and logins/s (as a share of the verifies/s) under a sustained login load
# of 8 and of 64 connections and after bursts of abandoned logins (client sends a login and
# hangs up), req/s and latency of GET /api/users/me and GET /api/auth/session, refresh-token
# rotation chains (8 sessions, each exchanging its latest token), and /api/users/me during a
# storm of 400 logins. Ends with a PASS/FAIL table; exits 1 only if the server cannot start.
#
# Not part of CI or scripts/test.sh: the figures depend on the machine and take about two
# minutes (7 phases of --seconds, default 10). Arguments go to latchkey-bench, e.g.
#   scripts/bench.sh --seconds 5 --workers 2 --env HASH_QUEUE=16
# (`scripts/bench.sh --help` lists them).
source "$(dirname "$0")/lib.sh"

cargo build --release --locked --bin latchkey --bin latchkey-bench
exec target/release/latchkey-bench "$@"
