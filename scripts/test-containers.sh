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

IMAGE="latchkey-secantus:$SECANTUS_VERSION"
WORK=".tmp/containers"
mkdir -p "$WORK"

if ! command -v dockerd >/dev/null || ! command -v debootstrap >/dev/null; then
  step "installing docker.io and debootstrap"
  apt_install docker.io debootstrap
fi
DOCKER="$(command -v docker)"

started_dockerd=""
cleanup() {
  if [[ -n "$started_dockerd" ]]; then
    kill "$started_dockerd" 2>/dev/null || true
    wait "$started_dockerd" 2>/dev/null || true
  fi
}
trap cleanup EXIT

if ! "$DOCKER" info >/dev/null 2>&1; then
  step "starting dockerd (log: $WORK/dockerd.log)"
  dockerd --bridge=none --iptables=false --ip-forward=false --ip-masq=false \
    >"$WORK/dockerd.log" 2>&1 &
  started_dockerd=$!
  for _ in $(seq 1 60); do
    "$DOCKER" info >/dev/null 2>&1 && break
    sleep 0.5
  done
  "$DOCKER" info >/dev/null 2>&1 || { echo "dockerd did not start:" >&2; tail -20 "$WORK/dockerd.log" >&2; exit 1; }
fi

if ! "$DOCKER" image inspect "$IMAGE" >/dev/null 2>&1; then
  step "building image $IMAGE with debootstrap (once, about a minute)"
  # The Debian mirror this machine's apt already uses (active source files only).
  mirror="$(cat /etc/apt/sources.list /etc/apt/sources.list.d/*.list /etc/apt/sources.list.d/*.sources 2>/dev/null \
    | grep -v '^[[:space:]]*#' | grep -oE 'https?://[^ ]+/debian/?' | grep -v security | head -1 || true)"
  rootfs="$WORK/rootfs"
  rm -rf "$rootfs"
  debootstrap --variant=minbase --include=python3,python3-venv,ca-certificates \
    bookworm "$rootfs" "${mirror:-http://deb.debian.org/debian}" >"$WORK/debootstrap.log" 2>&1 \
    || { tail -20 "$WORK/debootstrap.log" >&2; exit 1; }
  cp /etc/resolv.conf "$rootfs/etc/resolv.conf"
  # pip's registry settings (a mirror, if the machine uses one) travel into the image build.
  [[ -f /etc/pip.conf ]] && cp /etc/pip.conf "$rootfs/etc/pip.conf"
  cp /etc/ssl/certs/ca-certificates.crt "$rootfs/etc/ssl/certs/ca-certificates.crt"
  chroot "$rootfs" /usr/bin/python3 -m venv /opt/secantus
  env -u PIP_FIND_LINKS chroot "$rootfs" /opt/secantus/bin/pip install --quiet --disable-pip-version-check \
    "secantusdb==$SECANTUS_VERSION"
  rm -rf "$rootfs/var/cache/apt/archives"/*.deb "$rootfs/root/.cache"
  tar -C "$rootfs" -c . | "$DOCKER" import \
    --change 'ENV PATH=/opt/secantus/bin:/usr/local/bin:/usr/bin:/bin' \
    --change 'CMD ["python3", "-m", "secantus", "--host", "0.0.0.0", "--port", "27017", "--storage-path", ":memory:"]' \
    - "$IMAGE" >/dev/null
  rm -rf "$rootfs"
fi

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
