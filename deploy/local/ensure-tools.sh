#!/usr/bin/env bash
# Tools the test suite and the benchmarks use beyond Python: promtool (from Debian's prometheus
# package) to check and unit-test the alerting rules and Prometheus configurations, docker-compose
# (Debian's, v1: it validates docker-compose.yml without a Docker engine), wrk for HTTP load
# (make bench and its smoke test), and pgbouncer for the tests that run a private PgBouncer in
# front of a private PostgreSQL, and Node.js with npm for the AsyncAPI parser that validates the
# events document (its packages pinned in tools/asyncapi/package-lock.json, installed with
# `npm ci` whenever that lock changes). kubectl comes from requirements-dev.lock (make setup).
# Installed with apt-get when missing and we are root on Debian.
set -euo pipefail
missing=()
command -v promtool >/dev/null || missing+=(prometheus)
command -v wrk >/dev/null || missing+=(wrk)
command -v docker-compose >/dev/null || missing+=(docker-compose)
command -v pgbouncer >/dev/null || [[ -x /usr/sbin/pgbouncer ]] || missing+=(pgbouncer)
command -v node >/dev/null || missing+=(nodejs)
command -v npm >/dev/null || missing+=(npm)

# The AsyncAPI parser's packages, from the lock (hash-checked by npm ci, no install scripts).
install_node_packages() {
  local dir stamp
  dir="$(cd "$(dirname "$0")/../.." && pwd)/tools/asyncapi"
  stamp="$dir/node_modules/.herald-lock.sha256"
  if [[ -f $stamp ]] && (cd "$dir" && sha256sum --check --status "$stamp" 2>/dev/null); then
    return 0
  fi
  printf 'tools: npm ci in tools/asyncapi\n' >&2
  (cd "$dir" && npm ci --no-audit --no-fund --loglevel=error >/dev/null)
  (cd "$dir" && sha256sum package-lock.json >"$stamp")
}

if ((${#missing[@]} == 0)); then
  install_node_packages
  exit 0
fi
if [[ $(id -u) -eq 0 ]] && command -v apt-get >/dev/null; then
  printf 'tools: installing %s (Debian packages)\n' "${missing[*]}" >&2
  DEBIAN_FRONTEND=noninteractive apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  if [[ " ${missing[*]} " == *" prometheus "* ]]; then
    # The package may start a server; the tests only need the promtool binary.
    pkill -x prometheus 2>/dev/null || true
  fi
  install_node_packages
else
  printf 'tools: %s not found; install them (as root on Debian: make tools)\n' "${missing[*]}" >&2
  exit 1
fi
