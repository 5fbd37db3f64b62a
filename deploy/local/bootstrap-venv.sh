#!/usr/bin/env bash
# Create .venv from the hash-checked locks (runtime, build backend, development tools) and
# install the workspace members into it, editable.
# Installs Python 3.11 (and its venv module) with apt-get when missing, as root on Debian.
set -euo pipefail
cd "$(dirname "$0")/../.."

VENV=${VENV:-.venv}
MEMBERS=(shared services/api services/worker services/cache-invalidator cli)
log() { printf 'venv: %s\n' "$*" >&2; }

find_python() {
  for candidate in python3.11 python3; do
    if command -v "$candidate" >/dev/null &&
      "$candidate" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))' 2>/dev/null; then
      command -v "$candidate"
      return 0
    fi
  done
  return 1
}

apt_install() {
  if [[ $(id -u) -ne 0 ]] || ! command -v apt-get >/dev/null; then
    log "Python 3.11 with its venv module is required; install it (e.g. apt-get install python3.11-venv)"
    exit 1
  fi
  DEBIAN_FRONTEND=noninteractive apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}

python=$(find_python) || { apt_install python3.11 python3.11-venv; python=$(find_python); }

if [[ ! -x $VENV/bin/python ]]; then
  log "creating $VENV with $python"
  if ! "$python" -m venv "$VENV" 2>/dev/null; then
    rm -rf "$VENV"
    apt_install python3.11-venv
    "$python" -m venv "$VENV"
  fi
fi

log "installing the locked dependencies"
# All three at once: pip refuses a package pinned differently in two of them.
"$VENV/bin/python" -m pip install --quiet --disable-pip-version-check --require-hashes \
  -r requirements-runtime.lock -r requirements-build.lock -r requirements-dev.lock
editable=()
for member in "${MEMBERS[@]}"; do editable+=(-e "$member"); done
"$VENV/bin/python" -m pip install --quiet --disable-pip-version-check --no-deps \
  --no-build-isolation "${editable[@]}"
touch "$VENV/.herald-installed"
