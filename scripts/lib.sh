# Helpers shared by the scripts in this folder: `source "$(dirname "$0")/lib.sh"`.
# Moves to the repository root, and fails on errors and unset variables.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

# Tools installed from PyPI into .tmp/, pinned here once.
SECANTUS_VERSION="0.7.0b3"
SCHEMATHESIS_VERSION="4.32.5"
AIOSMTPD_VERSION="1.4.6"

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
  installed="$("$venv/bin/pip" show "${requirement%%==*}" 2>/dev/null | awk '/^Version:/ {print $2}' || true)"
  if [[ "$installed" != "${requirement##*==}" ]]; then
    step "installing $requirement into $venv"
    python3 -m venv --clear "$venv"
    "$venv/bin/pip" install --quiet --disable-pip-version-check \
      ${constraints:+--constraint "$constraints"} "$requirement"
  fi
}

# A free TCP port on 127.0.0.1.
free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}
