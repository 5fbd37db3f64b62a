"""The event pipeline under open-loop writers: commit → published → handled → invalidated, with
Herald's real services: ``herald-api`` (2 processes, with its outbox relay), ``herald-worker``
and ``herald-cache-invalidator``, each in its own process group, logging at WARNING.

Per created post, from the event's ``occurred_at`` (stamped in the API's write transaction,
just before its commit; so every figure below includes the commit itself):

- published: ``outbox.published_at`` — ``now()`` of the relay's claim transaction, just before
  it publishes the row (commit → claimed);
- handled: when ``bench.observer`` received the notification a trigger sends as the worker's
  enrichment sets the post's ``enriched_version``. PostgreSQL delivers a notification only after
  the sending transaction committed, so this time is after the worker's commit (the trigger's
  own ``clock_timestamp()``, inside the transaction, is kept as ``handled_in_tx``, a lower bound);
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
from bench.data import BenchData
from bench.env import BenchEnv, broker_names, purge_queues
from bench.observer import TRIGGER, is_ready, read_observed
from bench.openloop import WriterResult, write_open_loop
from bench.procs import BIN, CpuMeter, Group, Groups, shared_server_pids
from bench.servers import read_histogram, start_server
from bench.stats import Latencies, percentile

QUANTILES = [*range(1, 100), 99.5, 99.9, 100]
LAG_METRIC = "herald_cache_invalidation_lag_seconds"
#: Invalidations each created post causes: its post.created and its post.enriched.
INVALIDATIONS_PER_POST = 2
_TIMES = """
SELECT o.aggregate_id::text AS post_id,
       extract(epoch FROM (o.payload->>'occurred_at')::timestamptz)::float8 AS occurred,
       extract(epoch FROM o.published_at)::float8 AS published
FROM outbox o
WHERE o.event_type = 'post.created' AND o.aggregate_id = ANY($1::uuid[])
ORDER BY o.id
"""


@dataclass(slots=True)
class Stage:
    """One stage's per-event latencies (ms from commit), losses and duplicates for one rate."""

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
class BucketStage:
    """A stage known from a histogram: how many observations fell at or under each bound."""

    #: Upper bound (ms) → observations at or under it (cumulative), this rate only.
    cumulative: dict[float, float]
    expected: int

    @property
    def count(self) -> int:
        return round(max(self.cumulative.values(), default=0))

    def bound(self, pct: float) -> float:
        """The smallest bucket bound (ms) that holds ``pct`` % of the observations."""
        need = pct / 100 * self.count
        for upper, seen in sorted(self.cumulative.items()):
            if seen >= need and self.count:
                return upper
        return math.nan

    def share_within(self, limit_ms: float) -> float:
        return self.cumulative.get(limit_ms, math.nan) / self.count if self.count else math.nan

    def as_dict(self) -> dict[str, Any]:
        return {
            "count": self.count,
            "expected": self.expected,
            "lost": max(0, self.expected - self.count),
            "p50_at_most": self.bound(50),
            "p95_at_most": self.bound(95),
            "p99_at_most": self.bound(99),
            "cumulative": {str(k): v for k, v in sorted(self.cumulative.items())},
        }


@dataclass(slots=True)
class RateResult:
    rate: int
    purpose: str  # "fixed" or "search"
    writer: WriterResult
    drained_seconds: float
    stages: dict[str, Stage] = field(default_factory=dict)
    invalidated: BucketStage | None = None
    #: CPU seconds per second of writing (cores): each service, the load generators, the
    #: servers (this run's PostgreSQL backends; all of RabbitMQ and Redis) and the machine.
    cpu_share: dict[str, float] = field(default_factory=dict)
    #: Median commit → handled latency of the first and the last fifth of the events (ms).
    trend: tuple[float, float] = (0.0, 0.0)

    @property
    def backlog_grew(self) -> bool:
        """The pipeline fell behind: the last events waited much longer than the first."""
        first, last = self.trend
        return last > 2 * first + 10

    @property
    def kept_pace(self) -> bool:
        http_errors = sum(1 for r in self.writer.responses if r[2] != 201)
        return (
            self.writer.achieved_rate >= 0.95 * self.rate
            and self.writer.errors + http_errors + self.writer.abandoned == 0
        )

    @property
    def lossless(self) -> bool:
        handled = all(s.lost == 0 for s in self.stages.values())
        invalidated = self.invalidated is not None and self.invalidated.as_dict()["lost"] == 0
        return handled and invalidated

    @property
    def sustained(self) -> bool:
        """The writes kept pace (≥ 95 % of the offered rate, nothing failed or abandoned), every
        event was handled and invalidated before the drain deadline, and no backlog grew."""
        return self.kept_pace and self.lossless and not self.backlog_grew

    def as_dict(self) -> dict[str, Any]:
        http = Latencies.of([r[1] * 1000 for r in self.writer.responses])
        return {
            "rate": self.rate,
            "purpose": self.purpose,
            "sent": self.writer.sent,
            "abandoned": self.writer.abandoned,
            "created": len(self.writer.created_ids),
            "achieved_rate": round(self.writer.achieved_rate, 1),
            "http_errors": self.writer.errors
            + sum(1 for r in self.writer.responses if r[2] != 201),
            "http_latency_ms": http.as_dict(),
            "drained_seconds": round(self.drained_seconds, 2),
            "sustained": self.sustained,
            "kept_pace": self.kept_pace,
            "lossless": self.lossless,
            "backlog_grew": self.backlog_grew,
            "handled_ms_first_vs_last_fifth": [round(v, 1) for v in self.trend],
            "cpu_share": {k: round(v, 3) for k, v in self.cpu_share.items()},
            "stages": {name: stage.as_dict() for name, stage in self.stages.items()},
            "invalidated": self.invalidated.as_dict() if self.invalidated else None,
        }


@dataclass(slots=True)
class Pipeline:
    """The running services and where their observations are."""

    port: int
    token: str
    groups: list[Group]
    observed_path: Path
    invalidator_metrics: Path
    dsn: str
    amqp_url: str
    queues: list[str]


def _lag_buckets(directory: Path) -> dict[float, float]:
    """Cumulative invalidations at or under each bound (ms), since the invalidator started."""
    running = 0.0
    cumulative: dict[float, float] = {}
    for upper, count in sorted(read_histogram(directory, LAG_METRIC).items()):
        running += count
        cumulative[round(upper * 1000, 6) if math.isfinite(upper) else math.inf] = running
    return cumulative


def _minus(after: dict[float, float], before: dict[float, float]) -> dict[float, float]:
    return {k: v - before.get(k, 0.0) for k, v in after.items()}


async def _queue_depths(amqp_url: str, queues: list[str]) -> int:
    """Messages ready or unacknowledged in ``queues`` (asked with passive declares)."""
    connection = await aio_pika.connect(amqp_url)
    total = 0
    try:
        for name in queues:
            channel = await connection.channel()
            try:
                queue = await channel.declare_queue(name, passive=True)
                total += queue.declaration_result.message_count or 0
            except aiormq.exceptions.ChannelNotFoundEntity:
                pass
            finally:
                if not channel.is_closed:
                    await channel.close()
    finally:
        await connection.close()
    return total


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


def _stages(
    ids: list[str], rows: list[asyncpg.Record], observed: dict[str, list[tuple[float, float]]]
) -> tuple[dict[str, Stage], tuple[float, float]]:
    """Per-event stages of the created posts (rows in commit order), and the handled trend."""
    published, handled, in_tx, after_claim = [], [], [], []
    duplicated = 0
    for row in rows:
        occurred = row["occurred"]
        if row["published"] is not None:
            published.append((row["published"] - occurred) * 1000)
        seen = observed.get(row["post_id"])
        if seen:
            duplicated += len(seen) - 1
            trigger, received = min(seen, key=lambda s: s[1])
            handled.append((received - occurred) * 1000)
            in_tx.append((trigger - occurred) * 1000)
            if row["published"] is not None:
                after_claim.append((received - row["published"]) * 1000)
    fifth = max(1, len(handled) // 5)
    trend = (
        (statistics.median(handled[:fifth]), statistics.median(handled[-fifth:]))
        if handled
        else (0.0, 0.0)
    )
    stages = {
        "published": Stage.of(published, len(ids) - len(published), 0),
        "handled": Stage.of(handled, len(ids) - len(handled), duplicated),
        # Not stages of their own: the trigger's time inside the worker's transaction (before
        # its commit), and from the relay's claim to the handled time.
        "handled_in_tx": Stage.of(in_tx, 0, 0),
        "claimed_to_handled": Stage.of(after_claim, 0, 0),
    }
    return stages, trend


async def _drain(
    pool: asyncpg.Pool, pipeline: Pipeline, ids: list[str], before: dict[float, float], wait: float
) -> tuple[list[asyncpg.Record], dict[str, list[tuple[float, float]]], dict[float, float], float]:
    """Wait (at most ``wait`` s) until every post is handled and invalidated; then read."""
    started = time.monotonic()
    wanted = set(ids)
    expected = INVALIDATIONS_PER_POST * len(ids)
    while True:
        observed = read_observed(str(pipeline.observed_path))
        lags = _minus(_lag_buckets(pipeline.invalidator_metrics), before)
        handled = wanted.issubset(observed)
        invalidated = max(lags.values(), default=0) >= expected
        if (handled and invalidated) or time.monotonic() - started > wait:
            break
        await asyncio.sleep(0.1)
    rows = await pool.fetch(_TIMES, ids)
    return rows, observed, lags, time.monotonic() - started


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
    lags0 = _lag_buckets(pipeline.invalidator_metrics)
    cpu0 = meter.read()
    writer = await write_open_loop(
        pipeline.port, pipeline.token, rate=rate, seconds=seconds, nonce=uuid.uuid4().hex[:10]
    )
    cpu1 = meter.read()
    ids = writer.created_ids
    rows, observed, lags, drained = await _drain(
        pool, pipeline, ids, lags0, wait=config.pipeline_drain_seconds
    )
    stages, trend = _stages(ids, rows, observed)
    result = RateResult(rate, purpose, writer, drained, stages)
    result.invalidated = BucketStage(lags, INVALIDATIONS_PER_POST * len(ids))
    result.trend = trend
    cores = CpuMeter.cores(cpu0, cpu1, writer.wall_seconds)
    result.cpu_share = {name.removeprefix("pipeline-"): v for name, v in cores.items()}
    _print_rate(result)
    return result


def _next_probe(results: list[RateResult], low: int, high: int, resolution: float) -> int | None:
    """The next rate to try: bisect between the highest sustained and the lowest failed rate
    (geometric mean); None when they are within ``resolution`` of each other."""
    sustained = [r.rate for r in results if r.sustained]
    failed = [r.rate for r in results if not r.sustained]
    best = max(sustained, default=None)
    if best is None:
        lowest_failed = min(failed, default=high)
        return low if lowest_failed > low else None
    worst = min((f for f in failed if f > best), default=None)
    if worst is None:
        return high if best < high else None
    if worst / best <= 1 + resolution:
        return None
    return round(math.sqrt(best * worst))


def highest_sustained(results: list[dict[str, Any]]) -> int | None:
    """The highest rate that was sustained (from the JSON rows), as the search took it."""
    return max((r["rate"] for r in results if r["sustained"]), default=None)


async def _run_rates(config: BenchConfig, pipeline: Pipeline) -> list[RateResult]:
    results: list[RateResult] = []
    pool = await asyncpg.create_pool(pipeline.dsn, min_size=1, max_size=2)
    try:
        # Warm the connections, the relays and both consumers; these posts are not measured.
        await write_open_loop(pipeline.port, pipeline.token, rate=50, seconds=1, nonce="warm")
        for rate in config.pipeline_rates:
            results.append(await _run_rate(config, pool, pipeline, rate, "fixed"))
        for _ in range(config.search_probes):
            probe = _next_probe(
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
        observed = env.work / "observed.txt"
        started.append(
            groups.start(
                "pipeline-observer", [str(BIN / "python"), "-m", "bench.observer", str(observed)],
                process_env,
            )
        )  # fmt: skip
        queues = [f"{env.namespace}.worker", f"{env.namespace}.cache-invalidator"]
        asyncio.run(_wait_consumers(env.amqp_url, queues))
        deadline = time.monotonic() + 30
        while not is_ready(str(observed)):
            if time.monotonic() > deadline:
                raise RuntimeError("the observer did not start listening")
            time.sleep(0.05)
    except BaseException:
        for group in reversed(started):
            groups.stop(group)
        raise
    return Pipeline(
        server.port, data.reader_token, started, observed, metrics, env.dsn, env.amqp_url, queues
    )


async def _prepare(env: BenchEnv) -> None:
    """Install the observer's trigger; forget what earlier phases left unpublished (their
    events are not this phase's) and empty the queues they filled with nobody consuming."""
    conn = await asyncpg.connect(env.dsn)
    try:
        await conn.execute(TRIGGER)
        await conn.execute("UPDATE outbox SET published_at = now() WHERE published_at IS NULL")
    finally:
        await conn.close()
    await purge_queues(env.amqp_url, broker_names(env.namespace)[0])


def run_pipeline(
    config: BenchConfig, groups: Groups, env: BenchEnv, data: BenchData, process_env: dict[str, str]
) -> list[RateResult]:
    """Start the API, the worker, the cache-invalidator and the observer; write at each rate."""
    asyncio.run(_prepare(env))
    pipeline = _start_services(config, groups, env, data, process_env)
    try:
        # The writer runs on uvloop, as the services do.
        return uvloop.run(_run_rates(config, pipeline))
    finally:
        for group in reversed(pipeline.groups):
            groups.stop(group)
        asyncio.run(purge_queues(env.amqp_url, broker_names(env.namespace)[0]))
