#!/usr/bin/env bash
# Benchmark uvicorn (uvloop + httptools) against granian (ASGI interface) serving the Herald API,
# then check what each does on SIGTERM. Loopback only; bounded in time; every server runs in its
# own process group and is stopped by killing that group, also on Ctrl-C or error (trap).
#
# Needs: the project's .venv, PostgreSQL (migrated), RabbitMQ on this machine, wrk, curl, ss.
# Results: a table on stdout; raw rows and server logs in a temporary folder (printed at the end).
#
# Knobs (environment):
#   PROCS="1 2"             server process counts to measure
#   DURATION=10             seconds of each measured wrk run
#   WARMUP=3                seconds of unmeasured wrk load before each measured run
#   REPS=3                  repetitions; the servers are interleaved A B A B ... within each
#   CONNS=32 THREADS=2      wrk connections and threads (fixed, closed-loop load)
#   SERVERS="uvicorn granian"
#   LOG_LEVELS="WARNING"    HERALD_LOG_LEVEL values to measure ("WARNING INFO" prices the access log)
#   SCENARIOS="livez post"  livez: GET /livez; post: authenticated GET /v1/posts/{id}
#   GRANIAN_LOOP=uvloop     granian --loop (uvloop, rloop, asyncio, auto)
#   SHUTDOWN_CHECK=1        also test SIGTERM handling (0 to skip)
#   PORT=18090              loopback port the servers listen on
#   API_KEY, POST_ID        reuse a key and a published post instead of creating them
#   SNAPSHOT=a862ed9        git revision whose services/api, shared and cli sources are served,
#                           exported read-only (git archive) so edits in the work tree during
#                           the run cannot change what is measured; "worktree" serves the tree.
#                           The default is the revision decision 0002 measured: its post read is
#                           exactly "auth (cached key) + one asyncpg fetch" per request. Later
#                           revisions coalesce concurrent reads of one post (single flight), so
#                           "post" there is no longer one database read per request.
#   QUIET_PCT=20 QUIET_WAIT=60
#                           before each measured run, wait (at most QUIET_WAIT s) until the rest
#                           of the machine uses under QUIET_PCT % of all CPUs. The CPU used by
#                           others (not the server, wrk or the PostgreSQL backends of the app's
#                           database) during each run is recorded
#   CLEAN_PCT=15            the summary uses only runs where others used at most this % of all
#                           CPUs (all runs, marked *, where fewer than 3 are that clean)
#   HERALD_RATE_LIMIT_ENABLED=false HERALD_CACHE_ENABLED=false (defaults here, override to measure
#                           them): keep "post" one authenticated PostgreSQL read on revisions
#                           that have the Redis rate limiter and read cache
#   EXTRA_PYTHONPATH        prepended to PYTHONPATH of the servers (e.g. where rloop lives)
#   MAX_SECONDS             hard limit for the whole run (default: estimate x 2 + 5 min)
set -euo pipefail

PROCS=${PROCS:-"1 2"}
DURATION=${DURATION:-10}
WARMUP=${WARMUP:-3}
REPS=${REPS:-3}
CONNS=${CONNS:-32}
THREADS=${THREADS:-2}
SERVERS=${SERVERS:-"uvicorn granian"}
LOG_LEVELS=${LOG_LEVELS:-WARNING}
SCENARIOS=${SCENARIOS:-"livez post"}
GRANIAN_LOOP=${GRANIAN_LOOP:-uvloop}
SHUTDOWN_CHECK=${SHUTDOWN_CHECK:-1}
SNAPSHOT=${SNAPSHOT:-a862ed9}
PORT=${PORT:-18090}
QUIET_PCT=${QUIET_PCT:-20}
QUIET_WAIT=${QUIET_WAIT:-60}
CLEAN_PCT=${CLEAN_PCT:-15}
export HERALD_RATE_LIMIT_ENABLED=${HERALD_RATE_LIMIT_ENABLED:-false}
export HERALD_CACHE_ENABLED=${HERALD_CACHE_ENABLED:-false}
HOST=127.0.0.1 # never anything but loopback

for n in "$DURATION" "$WARMUP" "$REPS" "$CONNS" "$THREADS" "$PORT" "$QUIET_PCT" "$QUIET_WAIT" "$CLEAN_PCT" $PROCS; do
    [[ $n =~ ^[0-9]+$ ]] || { echo "not a number: $n" >&2; exit 2; }
done

# Bound the whole run: re-execute under timeout(1), which sends TERM (our trap cleans up).
if [[ -z ${_ASGI_BENCH_BOUNDED:-} ]]; then
    n_procs=$(wc -w <<<"$PROCS"); n_srv=$(wc -w <<<"$SERVERS"); n_lvl=$(wc -w <<<"$LOG_LEVELS")
    n_sc=$(wc -w <<<"$SCENARIOS")
    estimate=$((REPS * n_procs * n_srv * n_lvl * (n_sc * (WARMUP + DURATION + 1) + 15) + 60 * n_procs * n_srv))
    MAX_SECONDS=${MAX_SECONDS:-$((estimate * 2 + 300 + REPS * n_procs * n_srv * n_lvl * n_sc * QUIET_WAIT))}
    echo "estimated ${estimate}s, hard limit ${MAX_SECONDS}s" >&2
    export _ASGI_BENCH_BOUNDED=1
    exec timeout --foreground -k 20 "$MAX_SECONDS" "$BASH" "$0" "$@"
fi

cd "$(dirname "$0")/.."
VENV=.venv
for tool in wrk curl ss timeout setsid pgrep awk; do
    command -v "$tool" >/dev/null || { echo "missing: $tool (apt-get install -y wrk curl iproute2)" >&2; exit 2; }
done
[[ -x $VENV/bin/uvicorn && -x $VENV/bin/granian && -x $VENV/bin/herald ]] || { echo "no $VENV with uvicorn, granian, herald" >&2; exit 2; }

# The app's own backing services must be local too.
for var in HERALD_DB_DSN HERALD_DB_REPLICA_DSN HERALD_AMQP_URL; do
    value=${!var:-}
    if [[ -n $value && ! $value =~ @(127\.[0-9.]+|localhost|\[::1\])(:|/|$) ]]; then
        echo "$var must point at this machine (loopback) for the benchmark" >&2; exit 2
    fi
done

WORK=$(mktemp -d "${TMPDIR:-/tmp}/asgi-bench.XXXXXX")
RESULTS=$WORK/results.tsv
SHUTDOWN=$WORK/shutdown.tsv
declare -a GROUPS_STARTED=()

port_listening() { [[ -n $(ss -Hltn "sport = :$PORT" 2>/dev/null) ]]; }

kill_group() { # pgid: TERM the group, then KILL after 15 s
    local pg=$1 i
    [[ -n $pg ]] || return 0
    kill -TERM -- "-$pg" 2>/dev/null || return 0
    for ((i = 0; i < 150; i++)); do
        pgrep -g "$pg" >/dev/null || return 0
        sleep 0.1
    done
    echo "group $pg still alive after 15 s: KILL" >&2
    kill -KILL -- "-$pg" 2>/dev/null || true
}

cleanup() {
    local pg
    trap - EXIT INT TERM
    for pg in "${GROUPS_STARTED[@]}"; do kill_group "$pg"; done
    wait 2>/dev/null || true
    echo "raw results and logs: $WORK" >&2
}
trap cleanup EXIT
trap 'echo "failed at line $LINENO" >&2' ERR
trap 'echo "interrupted" >&2; exit 130' INT TERM

if port_listening; then echo "port $PORT is already in use" >&2; exit 2; fi

# What is served: a read-only export of one revision (default), or the work tree as installed.
APP_PYTHONPATH=
if [[ $SNAPSHOT != worktree ]]; then
    rev=$(git rev-parse --verify --quiet "$SNAPSHOT^{commit}") || { echo "no revision $SNAPSHOT" >&2; exit 2; }
    mkdir -p "$WORK/src"
    git archive --format=tar "$rev" services/api/src shared/src cli/src | tar -x -C "$WORK/src"
    APP_PYTHONPATH="$WORK/src/services/api/src:$WORK/src/shared/src:$WORK/src/cli/src"
    echo "serving revision ${rev:0:12} (exported; work tree edits do not affect the run)" >&2
else
    echo "serving the work tree as installed in $VENV" >&2
fi
PYPATH="${EXTRA_PYTHONPATH:+$EXTRA_PYTHONPATH:}${APP_PYTHONPATH:+$APP_PYTHONPATH:}$WORK${PYTHONPATH:+:$PYTHONPATH}"

# A wrk script that prints one machine-readable line; latencies in microseconds.
cat >"$WORK/report.lua" <<'LUA'
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format("RESULT %d %d %d %d %d %d %d\n", summary.requests, summary.duration,
    latency:percentile(50), latency:percentile(99), latency.max,
    e.status, e.connect + e.read + e.write + e.timeout))
end
LUA

# Used only by the SIGTERM check: wraps the real app, records when the lifespan shutdown completes
# and serves one slow request (/__probe/slow) so we can see whether in-flight work is drained.
cat >"$WORK/asgi_probe.py" <<'PY'
import asyncio
import os

from herald_api.app import create_server_app


def create():
    app = create_server_app()
    marker = os.environ["ASGI_BENCH_PROBE_FILE"]

    async def probe(scope, receive, send):
        if scope["type"] == "http" and scope["path"] == "/__probe/slow":
            await asyncio.sleep(3)
            await send({"type": "http.response.start", "status": 200,
                        "headers": [(b"content-type", b"text/plain")]})
            await send({"type": "http.response.body", "body": b"slow ok"})
            return
        if scope["type"] != "lifespan":
            await app(scope, receive, send)
            return

        async def send_probe(message):
            if message["type"].startswith("lifespan.shutdown."):
                with open(marker, "a") as f:
                    f.write(f"{os.getpid()} {message['type']}\n")
            await send(message)

        await app(scope, receive, send_probe)

    return probe
PY

SERVER_PID=
start_server() { # server procs loglevel logfile [factory]
    local server=$1 procs=$2 level=$3 log=$4 factory=${5:-herald_api.app:create_server_app} pg
    local -a cmd
    case $server in
        uvicorn) cmd=("$VENV/bin/uvicorn" --factory "$factory" --host "$HOST" --port "$PORT"
                      --workers "$procs" --loop uvloop --http httptools --lifespan on --no-access-log) ;;
        granian) cmd=("$VENV/bin/granian" --interface asgi --factory "$factory" --host "$HOST"
                      --port "$PORT" --workers "$procs" --loop "$GRANIAN_LOOP" --no-access-log) ;;
        *) echo "unknown server $server" >&2; exit 2 ;;
    esac
    # No job control in a script, so the background child is no group leader and setsid execs
    # in place: the PID we get is the new session's and process group's id.
    HERALD_LOG_LEVEL=$level HERALD_API_PORT=$PORT \
        PYTHONPATH="$PYPATH" \
        setsid "${cmd[@]}" >"$log" 2>&1 </dev/null &
    SERVER_PID=$!
    GROUPS_STARTED+=("$SERVER_PID")
    local i
    for ((i = 0; i < 50; i++)); do # until the child has become its own session
        pg=$(ps -o pgid= -p "$SERVER_PID" | tr -d ' ')
        [[ $pg == "$SERVER_PID" ]] && break
        sleep 0.02
    done
    [[ $pg == "$SERVER_PID" ]] || { echo "server is not its own process group" >&2; exit 1; }
    for ((i = 0; i < 300; i++)); do
        if curl -fs -m 1 -o /dev/null "http://$HOST:$PORT/livez"; then
            # The port answers once one worker is up; give the others time to finish booting.
            if ((procs > 1)); then sleep 2; fi
            return 0
        fi
        if ! kill -0 "$SERVER_PID" 2>/dev/null; then break; fi
        sleep 0.1
    done
    echo "$server did not come up; log:" >&2; tail -20 "$log" >&2; exit 1
}

stop_server() { # stop the current server's group and wait until the port is free
    local pg=$SERVER_PID i
    kill_group "$pg"
    wait "$pg" 2>/dev/null || true
    local -a keep=()
    for g in "${GROUPS_STARTED[@]}"; do [[ $g == "$pg" ]] || keep+=("$g"); done
    GROUPS_STARTED=("${keep[@]}")
    for ((i = 0; i < 150; i++)); do
        port_listening || return 0
        sleep 0.1
    done
    echo "port $PORT still busy after stopping" >&2; exit 1
}

cpu_ticks() { # user+system clock ticks of every process in the group
    local p total=0 t
    for p in $(pgrep -g "$1"); do
        t=$(awk '{print $14 + $15}' "/proc/$p/stat" 2>/dev/null) || continue
        total=$((total + t))
    done
    echo "$total"
}

# The database the app uses; its PostgreSQL backends count as part of the workload.
DSN=${HERALD_DB_DSN:-postgresql://herald:herald@127.0.0.1:5432/herald}
PG_DB=${DSN##*/}; PG_DB=${PG_DB%%\?*}

pg_ticks() { # user+system clock ticks of the PostgreSQL backends serving the app's database
    local p total=0 t
    for p in $(pgrep -f "^postgres: [^ ]+: [^ ]+ $PG_DB " || true); do
        t=$(awk '{ print $14 + $15 }' "/proc/$p/stat" 2>/dev/null) || continue
        total=$((total + ${t:-0}))
    done
    echo "$total"
}

busy_ticks() { # process (user+nice+system) and total clock ticks of all CPUs so far;
    # interrupt and softirq time (loopback networking) is left out: no process is charged for it
    awk '/^cpu / { t = 0; for (i = 2; i <= 9; i++) t += $i; print $2 + $3 + $4, t }' /proc/stat
}

wait_quiet() { # until the machine (our idle server aside) is quiet, at most QUIET_WAIT s
    local waited=0 b0 t0 b1 t1 pct
    while :; do
        read -r b0 t0 < <(busy_ticks); sleep 1; read -r b1 t1 < <(busy_ticks)
        pct=$(( (b1 - b0) * 100 / (t1 - t0 > 0 ? t1 - t0 : 1) ))
        if ((pct < QUIET_PCT)); then return 0; fi
        if ((waited == 0)); then echo "machine busy (${pct}% of all CPUs); waiting up to ${QUIET_WAIT}s" >&2; fi
        waited=$((waited + 1))
        if ((waited >= QUIET_WAIT)); then echo "still busy (${pct}%); measuring anyway" >&2; return 0; fi
    done
}

run_wrk() { # seconds scenario -> RESULT line on stdout
    local secs=$1 scenario=$2
    local -a extra=()
    local url="http://$HOST:$PORT/livez"
    if [[ $scenario == post ]]; then
        url="http://$HOST:$PORT/v1/posts/$POST_ID"
        extra=(-H "Authorization: Bearer $API_KEY")
    fi
    # bash's time keyword reports wrk's own CPU seconds (user sys) on stderr, kept in $WORK/wrk.cpu
    local TIMEFORMAT='%U %S'
    { time timeout $((secs + 15)) wrk -t"$THREADS" -c"$CONNS" -d"${secs}s" --timeout 5s \
        -s "$WORK/report.lua" "${extra[@]}" "$url" 2>/dev/null; } 2>"$WORK/wrk.cpu" | grep '^RESULT' || true
}

# --- a key and a published post to read ---------------------------------------------------
if [[ -z ${API_KEY:-} ]]; then
    API_KEY=$(PYTHONPATH="$PYPATH" "$VENV/bin/python" -m herald_cli keys create --account bench-server \
        2>/dev/null | tail -n 1)
fi
if [[ -z ${POST_ID:-} ]]; then
    start_server uvicorn 1 WARNING "$WORK/setup.log"
    POST_ID=$(curl -fsS -m 5 -X POST "http://$HOST:$PORT/v1/posts" \
        -H "Authorization: Bearer $API_KEY" -H 'Content-Type: application/json' \
        -d '{"title":"t","body":"b","status":"published"}' |
        "$VENV/bin/python" -c 'import json, sys; print(json.load(sys.stdin)["id"])')
    stop_server
fi
echo "post $POST_ID; wrk -t$THREADS -c$CONNS, ${WARMUP}s warm-up + ${DURATION}s measured, reps=$REPS" >&2

# --- the benchmark: servers interleaved A B A B ... ---------------------------------------
printf 'rep\tserver\tprocs\tlog\tscenario\trequests\tduration_us\tp50_us\tp99_us\tmax_us\tnon2xx\tsock_err\tcpu_ticks\tother_cpu_pct\n' >"$RESULTS"
HZ=$(getconf CLK_TCK)
for rep in $(seq 1 "$REPS"); do
    for procs in $PROCS; do
        for level in $LOG_LEVELS; do
            for server in $SERVERS; do
                log="$WORK/$server-p$procs-$level-r$rep.log"
                start_server "$server" "$procs" "$level" "$log"
                for scenario in $SCENARIOS; do
                    wait_quiet
                    run_wrk "$WARMUP" "$scenario" >/dev/null
                    c0=$(cpu_ticks "$SERVER_PID"); read -r b0 t0 < <(busy_ticks); g0=$(pg_ticks)
                    line=$(run_wrk "$DURATION" "$scenario")
                    c1=$(cpu_ticks "$SERVER_PID"); read -r b1 t1 < <(busy_ticks); g1=$(pg_ticks)
                    # CPU used by neither the server, wrk nor PostgreSQL, as % of all CPUs
                    other=$(awk -v b=$((b1 - b0 - (g1 - g0))) -v t=$((t1 - t0)) -v s=$((c1 - c0)) -v hz="$HZ" \
                        '{ w = ($1 + $2) * hz; o = (b - s - w) / (t > 0 ? t : 1) * 100;
                           printf "%.0f", o < 0 ? 0 : o }' "$WORK/wrk.cpu")
                    [[ -n $line ]] || { echo "wrk produced no result" >&2; exit 1; }
                    read -r _ req dur p50 p99 max non2xx sock <<<"$line"
                    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$rep" "$server" "$procs" \
                        "$level" "$scenario" "$req" "$dur" "$p50" "$p99" "$max" "$non2xx" "$sock" \
                        "$((c1 - c0))" "$other" >>"$RESULTS"
                    awk -v r="$rep" -v s="$server" -v p="$procs" -v l="$level" -v sc="$scenario" \
                        -v req="$req" -v dur="$dur" -v p99="$p99" -v e="$((non2xx + sock))" -v o="$other" 'BEGIN {
                        printf "rep %s %-8s procs=%s %-7s %-6s %8.0f req/s  p99 %6.2f ms  errors %s  others %s%% CPU\n",
                            r, s, p, l, sc, req / (dur / 1e6), p99 / 1000, e, o }' >&2
                done
                stop_server
            done
        done
    done
done

# --- SIGTERM: exit code, time to exit, lifespan shutdown, in-flight request, leftovers ------
printf 'server\tprocs\texit_code\texit_seconds\tlifespan_shutdowns\tinflight_result\tnew_conn_after_term\tleftover_procs\n' >"$SHUTDOWN"
if [[ $SHUTDOWN_CHECK == 1 ]]; then
    for procs in $PROCS; do
        for server in $SERVERS; do
            marker="$WORK/probe-$server-p$procs"
            : >"$marker"
            export ASGI_BENCH_PROBE_FILE=$marker
            start_server "$server" "$procs" WARNING \
                "$WORK/shutdown-$server-p$procs.log" asgi_probe:create
            pid=$SERVER_PID
            slow_out="$WORK/slow-$server-p$procs"
            curl -s -m 20 -o /dev/null -w '%{http_code} %{time_total}' \
                "http://$HOST:$PORT/__probe/slow" >"$slow_out" 2>/dev/null &
            curl_pid=$!
            sleep 0.5
            t0=$(date +%s.%N)
            kill -TERM "$pid" # the main process only, as an orchestrator does
            sleep 0.5
            if curl -s -m 1 -o /dev/null "http://$HOST:$PORT/livez"; then new_conn=accepted; else new_conn=refused; fi
            for ((i = 0; i < 300; i++)); do # up to 30 s; a zombie counts as exited
                state=$(awk '{print $3}' "/proc/$pid/stat" 2>/dev/null || echo gone)
                [[ $state == Z || $state == gone ]] && break
                sleep 0.05
            done
            t1=$(date +%s.%N)
            rc=still-running
            if [[ $state == Z || $state == gone ]]; then rc=0; wait "$pid" || rc=$?; fi
            wait "$curl_pid" 2>/dev/null || true
            slow=$(cat "$slow_out" 2>/dev/null || true)
            sleep 1 # then count what is still running in the group (zombies excluded)
            leftovers=0
            for p in $(pgrep -g "$pid"); do
                [[ $(awk '{print $3}' "/proc/$p/stat" 2>/dev/null || echo Z) == Z ]] && continue
                leftovers=$((leftovers + 1))
                echo "left after exit: $(tr '\0' ' ' <"/proc/$p/cmdline" 2>/dev/null)" >&2
            done
            shutdowns=$(grep -c 'lifespan.shutdown.complete' "$marker" || true)
            printf '%s\t%s\t%s\t%.2f\t%s/%s\t%s\t%s\t%s\n' "$server" "$procs" "$rc" \
                "$(awk -v a="$t0" -v b="$t1" 'BEGIN { print b - a }')" "$shutdowns" "$procs" "${slow:-none}" "$new_conn" \
                "$leftovers" >>"$SHUTDOWN"
            stop_server
        done
    done
fi

# --- summary ------------------------------------------------------------------------------
"$VENV/bin/python" - "$RESULTS" "$SHUTDOWN" "$HZ" "$CLEAN_PCT" <<'PY'
import csv
import statistics
import sys
from collections import defaultdict

results, shutdown, hz, clean_pct = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
groups = defaultdict(list)
by_rep = defaultdict(dict)
with open(results) as f:
    for row in csv.DictReader(f, delimiter="\t"):
        key = (row["scenario"], int(row["procs"]), row["log"], row["server"])
        requests = int(row["requests"])
        rps = requests / (int(row["duration_us"]) / 1e6)
        run = {
            "rps": rps,
            "p99": int(row["p99_us"]) / 1000,
            "errors": int(row["non2xx"]) + int(row["sock_err"]),
            "cpu_us": int(row["cpu_ticks"]) / hz * 1e6 / max(requests, 1),
            "other": int(row["other_cpu_pct"]),
        }
        groups[key].append(run)
        if run["other"] <= clean_pct:
            by_rep[key[:3] + (row["rep"],)][row["server"]] = rps

med = statistics.median
print(f"Runs where others used at most {clean_pct} % of the CPUs ('clean'); * = fewer than 3 clean, all runs used.")
print()
print("| scenario | procs | log | server | clean/all runs | req/s median | req/s min–max | p99 ms median "
      "| p99 ms min–max | server CPU µs/req | others' CPU % (max) | non-2xx + socket errors |")
print("|---|---|---|---|---|---|---|---|---|---|---|---|")
for key in sorted(groups):
    clean = [r for r in groups[key] if r["other"] <= clean_pct]
    mark = "" if len(clean) >= 3 else "*"
    runs = clean if not mark else groups[key]
    rps = [r["rps"] for r in runs]
    p99 = [r["p99"] for r in runs]
    print(f"| {key[0]} | {key[1]} | {key[2]} | {key[3]} | {len(clean)}/{len(groups[key])}{mark} | {med(rps):,.0f} "
          f"| {min(rps):,.0f}–{max(rps):,.0f} | {med(p99):.1f} | {min(p99):.1f}–{max(p99):.1f} "
          f"| {med(r['cpu_us'] for r in runs):.0f} | {max(r['other'] for r in runs)} "
          f"| {sum(r['errors'] for r in runs)} |")

# Paired comparison: each repetition ran the servers back to back, so their ratio cancels drift.
pairs = defaultdict(list)
for (scenario, procs, log, _), servers in by_rep.items():
    if "granian" in servers and "uvicorn" in servers:
        pairs[(scenario, procs, log)].append(servers["granian"] / servers["uvicorn"])
if pairs:
    print()
    print("| scenario | procs | log | clean pairs | granian ÷ uvicorn req/s, median | min–max |")
    print("|---|---|---|---|---|---|")
    for key in sorted(pairs):
        ratios = pairs[key]
        print(f"| {key[0]} | {key[1]} | {key[2]} | {len(ratios)} | {med(ratios):.2f} "
              f"| {min(ratios):.2f}–{max(ratios):.2f} |")

print()
with open(shutdown) as f:
    rows = list(csv.DictReader(f, delimiter="\t"))
if rows:
    print("| server | procs | exit code | seconds to exit | lifespan shutdowns | in-flight 3 s request "
          "(code, s) | new connection 0.5 s after SIGTERM | processes left 1 s after exit |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['server']} | {r['procs']} | {r['exit_code']} | {r['exit_seconds']} "
              f"| {r['lifespan_shutdowns']} | {r['inflight_result']} | {r['new_conn_after_term']} "
              f"| {r['leftover_procs']} |")
PY
