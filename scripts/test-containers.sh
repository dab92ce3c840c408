#!/usr/bin/env bash
# Runs the MongoDB suites through testcontainers, the way a laptop with Docker runs them, on a
# machine where no image can be pulled (our CI):
#   1. installs Docker (Debian's docker.io) and debootstrap if they are missing (needs root);
#   2. starts dockerd if none answers, without a bridge (containers use host networking only);
#   3. builds a local image with SecantusDB (a MongoDB wire-compatible server from PyPI) from a
#      debootstrapped Debian, unless it exists already;
#   4. runs the MongoDB suites (`mongo::`) with MONGODB_URI unset, so each starts its server
#      through testcontainers, and reports how many containers were started and removed.
# On a machine with Docker and registry access none of this is needed: `cargo test` pulls the
# official mongo image by itself (see docs/testing.md).
source "$(dirname "$0")/lib.sh"

docker_up
IMAGE="$(secantus_image)"
WORK="$DOCKER_WORK"

# The mail suites' MongoDB halves deliver to a real SMTP server, as in scripts/test.sh.
pip_tool .tmp/aiosmtpd-venv "aiosmtpd==$AIOSMTPD_VERSION"
export AIOSMTPD_PYTHON="$PWD/.tmp/aiosmtpd-venv/bin/python"

step "MongoDB suites through testcontainers (image $IMAGE, host networking)"
events="$WORK/events.log"
"$DOCKER" events --filter type=container --filter event=start --filter event=destroy \
  --format '{{.Action}} {{.Actor.ID}}' >"$events" 2>/dev/null &
events_pid=$!
status=0
# The same cargo command as scripts/test.sh (so nothing is compiled again), filtered to the
# MongoDB halves of the suites (`mongo::`).
# One test at a time: every test starts its own container, and two starting at once on a
# 2-core machine starve the servers of the tests already running (store calls time out).
env -u MONGODB_URI MONGODB_IMAGE="$IMAGE" MONGODB_CONTAINER_NETWORK=host RUST_TEST_THREADS=1 \
  cargo test --workspace --locked mongo:: "$@" || status=$?
sleep 2
kill "$events_pid" 2>/dev/null || true
started=$(grep -c '^start ' "$events" || true)
removed=$(grep -c '^destroy ' "$events" || true)
left=$("$DOCKER" ps -aq --filter "ancestor=$IMAGE" | wc -l)
step "containers: $started started, $removed removed, $left left over"
if [[ "$status" -eq 0 && ( "$started" -eq 0 || "$left" -ne 0 ) ]]; then
  echo "expected the suites to start containers and remove every one of them" >&2
  status=1
fi
exit "$status"
