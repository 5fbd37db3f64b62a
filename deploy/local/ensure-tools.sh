#!/usr/bin/env bash
# Tools the test suite uses beyond Python: promtool (from Debian's prometheus package) to check
# the alerting rules. Installed with apt-get when missing and we are root on Debian.
set -euo pipefail
if command -v promtool >/dev/null; then
  exit 0
fi
if [[ $(id -u) -eq 0 ]] && command -v apt-get >/dev/null; then
  printf 'tools: installing promtool (Debian package prometheus)\n' >&2
  DEBIAN_FRONTEND=noninteractive apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus >/dev/null
  # The package may start a server; the tests only need the promtool binary.
  pkill -x prometheus 2>/dev/null || true
else
  printf 'tools: promtool not found; the alert-rules check will be skipped\n' >&2
fi
