# Helpers shared by the scripts in this folder: `source "$(dirname "$0")/lib.sh"`.
# Moves to the repository root, and fails on errors and unset variables.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

# Tools installed from PyPI into .tmp/, pinned here once.
SECANTUS_VERSION="0.7.0b3"
SCHEMATHESIS_VERSION="4.32.5"
AIOSMTPD_VERSION="1.4.6"
PYJWT_VERSION="2.15.1"
OPENAPI_PYTHON_CLIENT_VERSION="0.29.1"

# A step heading on stderr; SCRIPT_TAG (e.g. "[site] ") prefixes it.
step() { printf '\n==> %s%s\n' "${SCRIPT_TAG:-}" "$*" >&2; }

# Installs Debian packages (as root), updating the package lists only when needed.
apt_install() {
  if [[ "$(id -u)" -ne 0 ]]; then
    echo "missing Debian packages: $*; install them with: sudo apt-get install -y $*" >&2
    exit 1
  fi
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y -q "$@" >/dev/null \
    || { apt-get update -qq && apt-get install -y -q "$@" >/dev/null; }
}

# pip_tool VENV PACKAGE==VERSION [CONSTRAINTS]: a virtualenv under .tmp/ holding exactly that
# version (and its dependencies at the versions in the CONSTRAINTS file, when given), made once,
# and made afresh when the version or the venv itself is not right.
pip_tool() {
  local venv="$1" requirement="$2" constraints="${3:-}"
  local installed
  local name="${requirement%%==*}"
  name="${name%%\[*}"
  installed="$("$venv/bin/pip" show "$name" 2>/dev/null | awk '/^Version:/ {print $2}' || true)"
  if [[ "$installed" != "${requirement##*==}" ]]; then
    step "installing $requirement into $venv"
    python3 -m venv --clear "$venv"
    "$venv/bin/pip" install --quiet --disable-pip-version-check \
      ${constraints:+--constraint "$constraints"} "$requirement"
  fi
}

# on_exit COMMAND: runs COMMAND when the script exits, after those registered later (last in,
# first out), so what was started last is stopped first.
ON_EXIT=()
on_exit() {
  ON_EXIT=("$1" "${ON_EXIT[@]}")
  trap 'for command in "${ON_EXIT[@]}"; do eval "$command" || true; done' EXIT
}

# A free TCP port on 127.0.0.1.
free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

# docker_up: Docker (Debian's docker.io) and debootstrap installed if missing (as root), and a
# dockerd answering; one started here runs without a bridge (containers use host networking
# only) and is stopped when the script exits. Sets DOCKER and DOCKER_WORK.
docker_up() {
  DOCKER_WORK=".tmp/containers"
  mkdir -p "$DOCKER_WORK"
  if ! command -v dockerd >/dev/null || ! command -v debootstrap >/dev/null; then
    step "installing docker.io and debootstrap"
    apt_install docker.io debootstrap
  fi
  DOCKER="$(command -v docker)"
  if ! "$DOCKER" info >/dev/null 2>&1; then
    step "starting dockerd (log: $DOCKER_WORK/dockerd.log)"
    dockerd --bridge=none --iptables=false --ip-forward=false --ip-masq=false \
      >"$DOCKER_WORK/dockerd.log" 2>&1 &
    STARTED_DOCKERD=$!
    on_exit 'kill "$STARTED_DOCKERD" 2>/dev/null; wait "$STARTED_DOCKERD" 2>/dev/null'
    for _ in $(seq 1 60); do
      "$DOCKER" info >/dev/null 2>&1 && break
      sleep 0.5
    done
    "$DOCKER" info >/dev/null 2>&1 || { echo "dockerd did not start:" >&2; tail -20 "$DOCKER_WORK/dockerd.log" >&2; exit 1; }
  fi
}

# debian_mirror: prints the URL of the Debian mirror this machine's apt uses (the first active
# source, one-line `deb URL ...` or deb822 `URIs: URL`, whose URL ends in /debian: the security
# archive's does not), or nothing when there is none.
debian_mirror() {
  # deb822 files first (Debian 12's own source is one); a third party's `.list` (a vendor's
  # ".../linux/debian") must not win over it.
  cat /etc/apt/sources.list.d/*.sources /etc/apt/sources.list /etc/apt/sources.list.d/*.list \
    2>/dev/null | grep -v '^[[:space:]]*#' | grep -oE 'https?://[^[:space:]]+/debian/?([[:space:]]|$)' \
    | awk 'NR == 1 { print $1 }' || true
}

# secantus_image: prints the name of a local image with SecantusDB (a MongoDB wire-compatible
# server from PyPI) on a debootstrapped Debian (python3, ca-certificates), built once (about a
# minute): nothing can be pulled on our CI machines. Needs docker_up first.
secantus_image() {
  local image="latchkey-secantus:$SECANTUS_VERSION"
  if ! "$DOCKER" image inspect "$image" >/dev/null 2>&1; then
    step "building image $image with debootstrap (once, about a minute)"
    # The Debian mirror this machine's apt already uses; there is no other to fall back on.
    local mirror rootfs="$DOCKER_WORK/rootfs"
    mirror="$(debian_mirror)"
    if [[ -z "$mirror" ]]; then
      echo "no Debian mirror in this machine's apt sources (/etc/apt/sources.list," \
        "/etc/apt/sources.list.d/*.list, /etc/apt/sources.list.d/*.sources): debootstrap needs" \
        "the one apt uses, an active source whose URL ends in /debian" >&2
      exit 1
    fi
    rm -rf "$rootfs"
    debootstrap --variant=minbase --include=python3,python3-venv,ca-certificates \
      bookworm "$rootfs" "$mirror" >"$DOCKER_WORK/debootstrap.log" 2>&1 \
      || { tail -20 "$DOCKER_WORK/debootstrap.log" >&2; exit 1; }
    cp /etc/resolv.conf "$rootfs/etc/resolv.conf"
    # pip's registry settings (a mirror, if the machine uses one) travel into the image build.
    [[ -f /etc/pip.conf ]] && cp /etc/pip.conf "$rootfs/etc/pip.conf"
    cp /etc/ssl/certs/ca-certificates.crt "$rootfs/etc/ssl/certs/ca-certificates.crt"
    chroot "$rootfs" /usr/bin/python3 -m venv /opt/secantus
    env -u PIP_FIND_LINKS chroot "$rootfs" /opt/secantus/bin/pip install --quiet --disable-pip-version-check \
      "secantusdb==$SECANTUS_VERSION"
    # pip's settings may hold a mirror's credentials: not for the image.
    rm -rf "$rootfs/var/cache/apt/archives"/*.deb "$rootfs/root/.cache" "$rootfs/etc/pip.conf"
    tar -C "$rootfs" -c . | "$DOCKER" import \
      --change 'ENV PATH=/opt/secantus/bin:/usr/local/bin:/usr/bin:/bin' \
      --change 'CMD ["python3", "-m", "secantus", "--host", "0.0.0.0", "--port", "27017", "--storage-path", ":memory:"]' \
      - "$image" >/dev/null
    rm -rf "$rootfs"
  fi
  echo "$image"
}
