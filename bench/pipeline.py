"""The event pipeline under open-loop writers: commit → published → handled → invalidated, with
Herald's real services: ``herald-api`` (2 processes, with its outbox relay), ``herald-worker``
and ``herald-cache-invalidator``, each in its own process group, logging at WARNING.

Per created post, from the event's ``occurred_at`` (stamped in the API's write transaction,
just before its commit; so every figure below includes the commit itself):

- published: ``outbox.published_at`` — ``now()`` of the relay's claim transaction, just before
  it publishes the row (commit → claimed);
- handled: the time the worker's transaction that enriched the post commits, stamped by a
  deferred trigger the harness installs (``bench.handled_marker``): after every statement of
  that transaction, just before its commit record is flushed;
- enriched claimed: the relay's claim of the ``post.enriched`` event the worker emitted, which
  comes after the worker's commit (an upper bound of "handled", including the relay's wake-up);
- invalidated: the cache-invalidator's own histogram ``herald_cache_invalidation_lag_seconds``,
  observed after its Redis invalidation returned, from the event's ``occurred_at``; read from
  its Prometheus multi-process file, so it costs the invalidator nothing extra. It counts every
  invalidation — ``post.created`` from the API's commit and ``post.enriched`` from the worker's —
  so a rate's figures are bucket bounds over 2 invalidations per post.

Each rate is one run: warm, write for ``pipeline_seconds`` (abandoning requests the API cannot
take in time), wait for every event to be handled and invalidated, then wait until the outbox
and the queues are empty before the next rate. The fixed rates come first (the latency targets),
then the highest sustained rate is searched by bisection between ``search_low`` and
``search_high``.
"""

from __future__ import annotations

import asyncio
import math
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import aio_pika
import asyncpg
import uvloop

from bench.config import BenchConfig
from bench.data import BenchData
from bench.env import BenchEnv, broker_names, purge_queues
from bench.handled_marker import HANDLED_COUNT, INSTALL, STAGE_TIMES
from bench.openloop import write_open_loop
from bench.pipeline_results import (
    INVALIDATIONS_PER_POST,
    BucketStage,
    RateResult,
    lag_buckets,
    minus,
    next_probe,
    stages_of,
)
from bench.procs import BIN, CpuMeter, Group, Groups, shared_server_pids
from bench.seams import queue_depth
from bench.servers import start_server

_TIMES = """
SELECT o.aggregate_id::text AS post_id,
       extract(epoch FROM (o.payload->>'occurred_at')::timestamptz)::float8 AS occurred,
       extract(epoch FROM o.published_at)::float8 AS published
FROM outbox o
WHERE o.event_type = 'post.created' AND o.aggregate_id = ANY($1::uuid[])
ORDER BY o.id
"""


@dataclass(slots=True)
class Pipeline:
    """The running services and where their observations are."""

    port: int
    tokens: list[str]
    groups: list[Group]
    invalidator_metrics: Path
    dsn: str
    amqp_url: str
    queues: list[str]


async def _queue_depths(amqp_url: str, queues: list[str]) -> int:
    """Messages ready in ``queues`` (missing queues count as empty)."""
    connection = await aio_pika.connect(amqp_url)
    try:
        depths = [await queue_depth(connection, name) for name in queues]
    finally:
        await connection.close()
    return sum(depth.messages for depth in depths if depth is not None)


async def _wait_consumers(amqp_url: str, queues: list[str], seconds: float = 60) -> None:
    connection = await aio_pika.connect(amqp_url)
    try:
        deadline = time.monotonic() + seconds
        for name in queues:
            while True:
                depth = await queue_depth(connection, name)
                if depth is not None and depth.consumers > 0:
                    break
                if time.monotonic() > deadline:
                    raise RuntimeError(f"{name} has no consumer")
                await asyncio.sleep(0.1)
    finally:
        await connection.close()


async def _settle(pool: asyncpg.Pool, pipeline: Pipeline, seconds: float) -> bool:
    """Wait until the outbox has nothing unpublished and the queues are empty (the previous
    rate's backlog gone); True when it settled within ``seconds``."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        pending = await pool.fetchval("SELECT count(*) FROM outbox WHERE published_at IS NULL")
        if not pending and not await _queue_depths(pipeline.amqp_url, pipeline.queues):
            return True
        await asyncio.sleep(0.25)
    return False


async def _backends(pool: asyncpg.Pool) -> list[int]:
    rows = await pool.fetch(
        "SELECT pid FROM pg_stat_activity WHERE datname = current_database() "
        "AND pid <> pg_backend_pid()"
    )
    return [r["pid"] for r in rows]


async def _drain(
    pool: asyncpg.Pool, pipeline: Pipeline, ids: list[str], before: dict[float, float], wait: float
) -> tuple[list[asyncpg.Record], dict[float, float], float]:
    """Wait (at most ``wait`` s) until every post is handled and invalidated; then read."""
    started = time.monotonic()
    expected = INVALIDATIONS_PER_POST * len(ids)
    while True:
        lags = minus(lag_buckets(pipeline.invalidator_metrics), before)
        invalidated = max(lags.values(), default=0) >= expected
        handled = await pool.fetchval(HANDLED_COUNT, ids) >= len(ids)
        if (handled and invalidated) or time.monotonic() - started > wait:
            break
        await asyncio.sleep(0.1)
    rows = await pool.fetch(STAGE_TIMES, ids)
    return rows, lags, time.monotonic() - started


async def _run_rate(
    config: BenchConfig, pool: asyncpg.Pool, pipeline: Pipeline, rate: int, purpose: str
) -> RateResult:
    if not await _settle(pool, pipeline, 90):
        print("  the previous rate's backlog did not drain in 90 s; purging it", flush=True)
        await pool.execute("UPDATE outbox SET published_at = now() WHERE published_at IS NULL")
        await purge_queues(pipeline.amqp_url, pipeline.queues)
    seconds = config.seconds(config.pipeline_seconds)
    servers = {"postgres": await _backends(pool), **shared_server_pids()}
    meter = CpuMeter(pipeline.groups, servers, own_name="writer")
    lags0 = lag_buckets(pipeline.invalidator_metrics)
    cpu0 = meter.read()
    writer = await write_open_loop(
        pipeline.port, pipeline.tokens, rate=rate, seconds=seconds, nonce=uuid.uuid4().hex[:10]
    )
    cpu1 = meter.read()
    ids = writer.created_ids
    rows, lags, drained = await _drain(
        pool, pipeline, ids, lags0, wait=config.pipeline_drain_seconds
    )
    stages, trend = stages_of(ids, rows)
    result = RateResult(rate, purpose, writer, drained, stages)
    result.invalidated = BucketStage(lags, INVALIDATIONS_PER_POST * len(ids))
    result.trend = trend
    cores = CpuMeter.cores(cpu0, cpu1, writer.wall_seconds)
    result.cpu_share = {name.removeprefix("pipeline-"): v for name, v in cores.items()}
    _print_rate(result)
    return result


async def _run_rates(config: BenchConfig, pipeline: Pipeline) -> list[RateResult]:
    results: list[RateResult] = []
    pool = await asyncpg.create_pool(pipeline.dsn, min_size=1, max_size=2)
    try:
        # Warm the connections, the relays and both consumers; these posts are not measured.
        await write_open_loop(pipeline.port, pipeline.tokens, rate=50, seconds=1, nonce="warm")
        for rate in config.pipeline_rates:
            results.append(await _run_rate(config, pool, pipeline, rate, "fixed"))
        for _ in range(config.search_probes):
            probe = next_probe(
                results, config.search_low, config.search_high, config.search_resolution
            )
            if probe is None:
                break
            results.append(await _run_rate(config, pool, pipeline, probe, "search"))
    finally:
        await pool.close()
    return results


def _print_rate(result: RateResult) -> None:
    summary = result.as_dict()
    stages = "  ".join(
        f"{name} p50 {s['p50']:.1f} p99 {s['p99']:.1f} max {s['max']:.1f} ms (lost {s['lost']})"
        for name, s in summary["stages"].items()
        if name in ("published", "handled")
    )
    inv = summary["invalidated"] or {}
    print(
        f"  {result.rate:5d}/s offered ({result.purpose}), {summary['achieved_rate']:7.1f}/s "
        f"achieved, {'sustained' if result.sustained else 'NOT sustained'}; {stages}; "
        f"invalidated {inv.get('count', 0)}/{inv.get('expected', 0)} p99 <= "
        f"{inv.get('p99_at_most', math.nan)} ms; CPU (cores) {summary['cpu_share']}",
        flush=True,
    )


def _start_services(
    config: BenchConfig, groups: Groups, env: BenchEnv, data: BenchData, process_env: dict[str, str]
) -> Pipeline:
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
        started.append(groups.start("pipeline-worker", [str(BIN / "herald-worker")], process_env))
        metrics = env.work / "metrics-pipeline-invalidator"
        metrics.mkdir()
        started.append(
            groups.start(
                "pipeline-invalidator",
                [str(BIN / "herald-cache-invalidator")],
                {**process_env, "PROMETHEUS_MULTIPROC_DIR": str(metrics)},
            )
        )
        queues = [f"{env.namespace}.worker", f"{env.namespace}.cache-invalidator"]
        asyncio.run(_wait_consumers(env.amqp_url, queues))
    except BaseException:
        for group in reversed(started):
            groups.stop(group)
        raise
    return Pipeline(
        server.port,
        data.writer_tokens,
        started,
        metrics,
        env.dsn,
        env.amqp_url,
        queues,
    )


async def _prepare(env: BenchEnv) -> None:
    """Install the handled marker; forget what earlier phases left unpublished (their
    events are not this phase's) and empty the queues they filled with nobody consuming."""
    conn = await asyncpg.connect(env.dsn)
    try:
        await conn.execute(INSTALL)
        await conn.execute("UPDATE outbox SET published_at = now() WHERE published_at IS NULL")
    finally:
        await conn.close()
    await purge_queues(env.amqp_url, broker_names(env.namespace)[0])


def run_pipeline(
    config: BenchConfig, groups: Groups, env: BenchEnv, data: BenchData, process_env: dict[str, str]
) -> list[RateResult]:
    """Start the API, the worker and the cache-invalidator; write at each rate."""
    asyncio.run(_prepare(env))
    pipeline = _start_services(config, groups, env, data, process_env)
    try:
        # The writer runs on uvloop, as the services do.
        return uvloop.run(_run_rates(config, pipeline))
    finally:
        for group in reversed(pipeline.groups):
            groups.stop(group)
        asyncio.run(purge_queues(env.amqp_url, broker_names(env.namespace)[0]))
