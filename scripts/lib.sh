# Helpers shared by the scripts in this folder: `source "$(dirname "$0")/lib.sh"`.
# Moves to the repository root, and fails on errors and unset variables.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

# Tools installed from PyPI into .tmp/, pinned here once.
SECANTUS_VERSION="0.7.0b3"
SCHEMATHESIS_VERSION="4.32.5"

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

# pip_tool VENV PACKAGE==VERSION MODULE: a virtualenv under .tmp/ with the package, once.
pip_tool() {
  local venv="$1" requirement="$2" module="$3"
  if [[ ! -x "$venv/bin/python" ]] || ! "$venv/bin/python" -c "import $module" 2>/dev/null \
    || ! "$venv/bin/pip" show -q "${requirement%%==*}" 2>/dev/null \
    || [[ "$("$venv/bin/pip" show "${requirement%%==*}" | awk '/^Version:/ {print $2}')" != "${requirement##*==}" ]]; then
    step "installing $requirement into $venv"
    python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet --disable-pip-version-check "$requirement"
  fi
}

# A free TCP port on 127.0.0.1.
free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}
