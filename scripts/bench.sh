#!/usr/bin/env bash
# Benchmarks a release build of the server on this machine and prints the figures issue 7 sets
# targets for: argon2id verifies/s in process (1 thread and one per hash worker), the server's
# RSS at rest, under a sustained login load of 8 and of 64 connections and after bursts of
# abandoned logins (client sends a login and hangs up), logins/s as a share of the verifies/s,
# and req/s and latency of GET /api/users/me and GET /api/auth/session (to compare before and
# after a change). Ends with a PASS/FAIL table; exits 1 only if the server cannot be started.
#
# Not part of CI or scripts/test.sh: the figures depend on the machine and take about a
# minute (6 phases of --seconds, default 10). Arguments go to latchkey-bench, e.g.
#   scripts/bench.sh --seconds 5 --workers 2 --env HASH_QUEUE=16
# (`scripts/bench.sh --help` lists them).
source "$(dirname "$0")/lib.sh"

cargo build --release --locked --bin latchkey --bin latchkey-bench
exec target/release/latchkey-bench "$@"
