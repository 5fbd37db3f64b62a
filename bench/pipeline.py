"""The event pipeline under open-loop writers: commit → published → handled → invalidated.

Herald's API (with its outbox relay), the real ``herald-cache-invalidator`` and a recording
consumer on the shared runtime (``bench.consumer_app``) run as separate process groups; writers
POST at fixed rates. Per created post, from the event's ``occurred_at`` (stamped in the write
transaction, just before its commit):

- published: ``outbox.published_at`` — ``now()`` of the relay's transaction, which is when it
  claimed the row, just before publishing it (so this is commit → claimed);
- handled: ``bench_handled.handled_at`` (``clock_timestamp()`` in the consumer's inbox
  transaction);
- invalidated: the ``lag_ms`` the cache-invalidator logs for the event.

Lost = created posts whose event never got there; duplicated = events seen there twice.
"""

from __future__ import annotations

import asyncio
import json
import resource
import statistics
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aio_pika
import aiormq
import asyncpg
import uvloop

from bench.config import BenchConfig
from bench.consumer_app import HANDLED_TABLE
from bench.data import BenchData
from bench.env import BenchEnv, broker_names, purge_queues
from bench.openloop import WriterResult, write_open_loop
from bench.procs import BIN, CLOCK_TICKS, Group, Groups, cpu_seconds, machine_busy, pids_named
from bench.servers import Server, start_server
from bench.stats import Latencies, percentile

CONSUMER = "bench-handled"
QUANTILES = [*range(1, 100), 99.5, 99.9, 100]
_LATENCIES = """
SELECT o.id, o.event_id::text AS event_id,
       (extract(epoch FROM o.published_at - occurred) * 1000)::float8 AS published_ms,
       (SELECT array_agg((extract(epoch FROM h.handled_at - occurred) * 1000)::float8)
          FROM bench_handled h WHERE h.event_id = o.event_id) AS handled_ms
FROM outbox o, LATERAL (SELECT (o.payload->>'occurred_at')::timestamptz AS occurred) AS t
WHERE o.event_type = 'post.created' AND o.aggregate_id = ANY($1::uuid[])
ORDER BY o.id
"""


@dataclass(slots=True)
class Stage:
    """One stage's latencies (ms from commit), losses and duplicates for one rate."""

    latencies: Latencies
    lost: int
    duplicated: int
    #: The latency at each of ``QUANTILES`` (for the distribution plots).
    quantiles: list[float]

    @classmethod
    def of(cls, values: list[float], lost: int, duplicated: int) -> Stage:
        ordered = sorted(values)
        return cls(
            Latencies.of(ordered), lost, duplicated, [percentile(ordered, q) for q in QUANTILES]
        )

    def as_dict(self) -> dict[str, Any]:
        return {
            **self.latencies.as_dict(),
            "lost": self.lost,
            "duplicated": self.duplicated,
            "quantiles": [round(q, 3) for q in self.quantiles],
        }


@dataclass(slots=True)
class RateResult:
    rate: int
    writer: WriterResult
    drained_seconds: float
    stages: dict[str, Stage] = field(default_factory=dict)
    #: CPU seconds per second of writing (cores), per process group, the writer ("harness"),
    #: the shared servers and the whole machine.
    cpu_share: dict[str, float] = field(default_factory=dict)
    #: Median commit → handled latency of the first and the last fifth of the events (ms).
    trend: tuple[float, float] = (0.0, 0.0)

    @property
    def backlog_grew(self) -> bool:
        """The pipeline fell behind: the last events waited much longer than the first."""
        first, last = self.trend
        return last > 2 * first + 10

    @property
    def sustained(self) -> bool:
        """Writes kept pace (≥ 95 % of the offered rate, no errors), nothing was lost, and the
        pipeline kept pace too (no growing backlog)."""
        kept_pace = self.writer.achieved_rate >= 0.95 * self.rate and self.writer.errors == 0
        lossless = all(s.lost == 0 for s in self.stages.values())
        return kept_pace and lossless and not self.backlog_grew

    def as_dict(self) -> dict[str, Any]:
        http = Latencies.of([r[1] * 1000 for r in self.writer.responses])
        return {
            "rate": self.rate,
            "sent": self.writer.sent,
            "created": len(self.writer.created_ids),
            "achieved_rate": round(self.writer.achieved_rate, 1),
            "http_errors": self.writer.errors
            + sum(1 for r in self.writer.responses if r[2] != 201),
            "http_latency_ms": http.as_dict(),
            "drained_seconds": round(self.drained_seconds, 2),
            "sustained": self.sustained,
            "backlog_grew": self.backlog_grew,
            "handled_ms_first_vs_last_fifth": [round(v, 1) for v in self.trend],
            "cpu_share": {k: round(v, 2) for k, v in self.cpu_share.items()},
            "stages": {name: stage.as_dict() for name, stage in self.stages.items()},
        }


def _invalidations(log: Path, event_ids: set[str]) -> dict[str, list[float]]:
    """The invalidator's logged lag per event id of ours (one entry per invalidation)."""
    lags: dict[str, list[float]] = {}
    with log.open(errors="replace") as lines:
        for line in lines:
            if '"post invalidated"' not in line:
                continue
            try:
                entry = json.loads(line)
            except ValueError:
                continue
            event_id = entry.get("event_id")
            if event_id in event_ids:
                lags.setdefault(event_id, []).append(float(entry["lag_ms"]))
    return lags


async def _collect(
    pool: asyncpg.Pool, ids: list[str], log: Path, deadline: float
) -> tuple[list[asyncpg.Record], dict[str, list[float]], float]:
    """Wait (until ``deadline``) for every event to be handled and invalidated, then read."""
    started = time.monotonic()
    while True:
        rows = await pool.fetch(_LATENCIES, ids)
        event_ids = {r["event_id"] for r in rows}
        invalidated = _invalidations(log, event_ids)
        done = (
            len(rows) == len(ids)
            and all(r["published_ms"] is not None and r["handled_ms"] for r in rows)
            and len(invalidated) == len(ids)
        )
        if done or time.monotonic() > deadline:
            return rows, invalidated, time.monotonic() - started
        await asyncio.sleep(0.25)


def _stages(
    ids: list[str], rows: list[asyncpg.Record], lags: dict[str, list[float]]
) -> dict[str, Stage]:
    published = [r["published_ms"] for r in rows if r["published_ms"] is not None]
    handled = [r["handled_ms"] for r in rows if r["handled_ms"]]
    after_claim = [
        min(r["handled_ms"]) - r["published_ms"]
        for r in rows
        if r["handled_ms"] and r["published_ms"] is not None
    ]
    return {  # rows come in commit (outbox id) order
        "published": Stage.of(published, len(ids) - len(published), 0),
        "handled": Stage.of(
            [min(h) for h in handled],
            len(ids) - len(handled),
            sum(len(h) - 1 for h in handled),
        ),
        "invalidated": Stage.of(
            [min(v) for v in lags.values()],
            len(ids) - len(lags),
            sum(len(v) - 1 for v in lags.values()),
        ),
        # Not a stage of its own: how long from the relay's claim to the handler (publish,
        # confirm, routing, delivery, the consumer's inbox transaction).
        "claimed_to_handled": Stage.of(after_claim, 0, 0),
    }


async def _wait_consumers(amqp_url: str, queues: list[str], seconds: float = 60) -> None:
    connection = await aio_pika.connect(amqp_url)
    try:
        deadline = time.monotonic() + seconds
        for name in queues:
            while True:
                channel = await connection.channel()
                try:
                    queue = await channel.declare_queue(name, passive=True)
                    if (queue.declaration_result.consumer_count or 0) > 0:
                        break
                except aiormq.exceptions.ChannelNotFoundEntity:
                    pass
                finally:
                    if not channel.is_closed:
                        await channel.close()
                if time.monotonic() > deadline:
                    raise RuntimeError(f"{name} has no consumer")
                await asyncio.sleep(0.1)
    finally:
        await connection.close()


def _trend(rows: list[asyncpg.Record]) -> tuple[float, float]:
    handled = [min(r["handled_ms"]) for r in rows if r["handled_ms"]]
    fifth = max(1, len(handled) // 5)
    if not handled:
        return 0.0, 0.0
    return statistics.median(handled[:fifth]), statistics.median(handled[-fifth:])


def _cpu(groups: list[Group], servers: dict[str, list[int]]) -> dict[str, float]:
    """CPU seconds so far: per group, the writer (harness), the shared servers (this run's
    PostgreSQL backends; all of RabbitMQ and Redis, whoever uses them) and the whole machine."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    busy, _ = machine_busy()
    return (
        {g.name: g.cpu_seconds() for g in groups}
        | {name: cpu_seconds(pids) for name, pids in servers.items()}
        | {"harness": usage.ru_utime + usage.ru_stime, "machine": busy / CLOCK_TICKS}
    )


async def _server_pids(pool: asyncpg.Pool) -> dict[str, list[int]]:
    rows = await pool.fetch(
        "SELECT pid FROM pg_stat_activity WHERE datname = current_database() "
        "AND pid <> pg_backend_pid()"
    )
    return {
        "postgres": [r["pid"] for r in rows],
        "rabbitmq": pids_named("beam.smp"),
        "redis": pids_named("redis-server"),
    }


async def _run_rates(
    config: BenchConfig,
    env: BenchEnv,
    server: Server,
    data: BenchData,
    log: Path,
    watched: list[Group],
) -> list[RateResult]:
    results: list[RateResult] = []
    pool = await asyncpg.create_pool(env.dsn, min_size=1, max_size=2)
    try:
        nonce = uuid.uuid4().hex[:8]
        # Warm the connections, the relay and both consumers; these posts are not measured.
        await write_open_loop(
            server.port, data.reader_token, rate=50, seconds=1, nonce=f"{nonce}-warm"
        )
        for rate in config.pipeline_rates:
            servers = await _server_pids(pool)
            cpu0 = _cpu(watched, servers)
            writer = await write_open_loop(
                server.port,
                data.reader_token,
                rate=rate,
                seconds=config.seconds(config.pipeline_seconds),
                nonce=nonce,
            )
            cpu1 = _cpu(watched, servers)
            ids = writer.created_ids
            rows, lags, drained = await _collect(pool, ids, log, time.monotonic() + 30)
            result = RateResult(rate, writer, drained, _stages(ids, rows, lags))
            result.trend = _trend(rows)
            result.cpu_share = {k: (cpu1[k] - cpu0[k]) / writer.wall_seconds for k in cpu1}
            results.append(result)
            _print_rate(result)
    finally:
        await pool.close()
    return results


def _print_rate(result: RateResult) -> None:
    summary = result.as_dict()
    stages = "  ".join(
        f"{name} p50 {s['p50']:.1f} p99 {s['p99']:.1f} max {s['max']:.1f} ms "
        f"(lost {s['lost']}, dup {s['duplicated']})"
        for name, s in summary["stages"].items()
    )
    print(
        f"  {result.rate:5d}/s offered, {summary['achieved_rate']:7.1f}/s achieved "
        f"{'sustained' if result.sustained else 'NOT sustained'}; {stages}; "
        f"CPU (cores) {summary['cpu_share']}",
        flush=True,
    )


def run_pipeline(
    config: BenchConfig, groups: Groups, env: BenchEnv, data: BenchData, process_env: dict[str, str]
) -> list[RateResult]:
    """Start the API, the cache-invalidator and the recording consumer; write at each rate."""

    async def prepare() -> None:
        conn = await asyncpg.connect(env.dsn)
        try:
            await conn.execute(HANDLED_TABLE)
            await conn.execute(
                "CREATE INDEX IF NOT EXISTS bench_handled_event_idx ON bench_handled (event_id)"
            )
        finally:
            await conn.close()

    asyncio.run(prepare())
    # Events earlier phases left for consumers that were not running would come first.
    stale = [f"{env.namespace}.{name}" for name in ("cache-invalidator", "worker", CONSUMER)]
    asyncio.run(purge_queues(env.amqp_url, stale))
    started: list[Group] = []
    try:
        server = start_server(
            groups,
            "herald",
            processes=config.api_processes,
            env=process_env,
            work=env.work,
            label="pipeline-api",
        )
        started.append(server.group)
        invalidator = groups.start(
            "pipeline-invalidator",
            [str(BIN / "herald-cache-invalidator")],
            {**process_env, "HERALD_LOG_LEVEL": "INFO"},
        )
        started.append(invalidator)
        consumer = groups.start(
            "pipeline-consumer",
            [str(BIN / "python"), "-m", "bench.consumer_app"],
            {**process_env, "BENCH_CONSUMER": CONSUMER, "BENCH_MODE": "record"},
        )
        started.append(consumer)
        queues = [f"{env.namespace}.cache-invalidator", f"{env.namespace}.{CONSUMER}"]
        asyncio.run(_wait_consumers(env.amqp_url, queues))
        # The writer runs on uvloop, as the services do.
        return uvloop.run(_run_rates(config, env, server, data, invalidator.log_path, started))
    finally:
        for group in reversed(started):
            groups.stop(group)
        # Events for the worker, which did not run, would weigh on the broker from now on.
        asyncio.run(purge_queues(env.amqp_url, broker_names(env.namespace)[0]))
