#!/usr/bin/env bash
# Run every Herald service in the foreground until Ctrl-C (SIGINT) or SIGTERM, then stop
# them all and wait for each to finish its graceful shutdown.
set -uo pipefail
cd "$(dirname "$0")/../.."

BIN=.venv/bin
WORKERS=${HERALD_RUN_WORKERS:-1}
pids=()

start() { # name command...
  local name=$1
  shift
  "$@" &
  pids+=($!)
  printf 'run: started %s (pid %s)\n' "$name" "$!" >&2
}

stop_all() {
  trap - INT TERM
  printf 'run: stopping %s process(es)\n' "${#pids[@]}" >&2
  kill -TERM "${pids[@]}" 2>/dev/null
  wait "${pids[@]}" 2>/dev/null
  printf 'run: stopped\n' >&2
  exit 0
}
trap stop_all INT TERM

start api "$BIN/herald-api"
for ((i = 1; i <= WORKERS; i++)); do
  # The first worker keeps the default health port (9101); the others take 9110+i.
  port=$((i == 1 ? 9101 : 9110 + i))
  HERALD_CONSUMER_HEALTH_PORT=$port start "worker $i" "$BIN/herald-worker"
done
start cache-invalidator "$BIN/herald-cache-invalidator"

port=${HERALD_API_PORT:-8000}
cat >&2 <<MSG

Herald is starting on http://127.0.0.1:$port (OpenAPI docs at /docs; metrics at
http://127.0.0.1:${HERALD_API_METRICS_PORT:-9100}/metrics). Try it:

  KEY=\$($BIN/herald keys create --account demo | tail -n 1)
  curl -s -X POST http://127.0.0.1:$port/v1/posts -H "Authorization: Bearer \$KEY" \\
       -H 'Content-Type: application/json' -d '{"title": "Hello", "body": "First post", "status": "published"}'

Ctrl-C stops everything.

MSG

# If any service exits on its own, stop the rest: a half-running platform is worse than none.
wait -n "${pids[@]}"
printf 'run: a service exited; stopping the others\n' >&2
stop_all
