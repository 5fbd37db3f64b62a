"""The outbox relay's CPU per event at a steady low rate and in a burst, and a single event's
wait, with and without coalescing wake-ups.

``python -m bench.relay_cost`` runs, in one uvloop process as the relay runs inside the API:

- a writer alone: one outbox row per autocommit insert, each followed by ``wake()`` (a no-op
  here), at a steady rate (``--rate``, open loop) or as a burst (``--writers`` inserting back
  to back); its process CPU is the writer's cost;
- the same writes with Herald's ``OutboxRelay`` running, until it has published every row;
  relay CPU per event = (this phase's process CPU - the writer's) / events;
- the publish latency of single events (one write, then wait for the relay to publish it),

each for ``coalesce_seconds`` = 0 and the default, interleaved A B A B. The relay publishes to
a queue of the run's namespace, purged after each phase.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
import uuid
from dataclasses import dataclass
from typing import Any

import asyncpg
import uvloop

from bench.env import BenchEnv, broker_names, purge_queues
from bench.relay import _bind_a_queue, _payload
from bench.seams import AmqpSettings, OutboxRelay, RelaySettings

_INSERT = """
INSERT INTO outbox (event_id, event_type, aggregate_id, aggregate_version, payload, headers)
VALUES ($1, 'post.created', $2, 1, $3::jsonb, '{}'::jsonb)
"""


_SETTLE = "UPDATE outbox SET published_at = now() WHERE published_at IS NULL"


@dataclass(slots=True)
class Phase:
    cpu_seconds: float
    batches: int


async def _write(pool: asyncpg.Pool, payload: str, relay: OutboxRelay | None) -> None:
    await pool.execute(_INSERT, uuid.uuid4(), uuid.uuid4(), payload)
    if relay is not None:
        relay.wake()


async def _writes(
    pool: asyncpg.Pool, relay: OutboxRelay | None, events: int, rate: float | None, writers: int
) -> None:
    payload = _payload()
    if rate is not None:
        started = time.perf_counter()
        for i in range(events):
            await _write(pool, payload, relay)
            delay = started + (i + 1) / rate - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
        return

    async def writer(count: int) -> None:
        for _ in range(count):
            await _write(pool, payload, relay)

    await asyncio.gather(*(writer(events // writers) for _ in range(writers)))


async def _started(pool: asyncpg.Pool, amqp: AmqpSettings, coalesce: float) -> OutboxRelay:
    settings = RelaySettings(coalesce_seconds=coalesce, sweep_interval_seconds=5.0)
    relay = OutboxRelay(pool, amqp, settings, name="bench-relay-cost")
    return relay


async def _phase(
    pool: asyncpg.Pool,
    amqp: AmqpSettings,
    *,
    events: int,
    rate: float | None,
    writers: int,
    coalesce: float | None,
) -> Phase:
    """``coalesce`` None: the writer alone."""
    # Rows an earlier phase left (the writer alone publishes nothing) are not this phase's.
    await pool.execute(_SETTLE)
    if coalesce is None:
        started = time.process_time()
        await _writes(pool, None, events, rate, writers)
        return Phase(time.process_time() - started, 0)
    relay = await _started(pool, amqp, coalesce)
    stop = asyncio.Event()
    task = asyncio.create_task(relay.run(stop))
    try:
        await _until(lambda: relay.connected, 30, "the relay did not connect")
        await asyncio.sleep(0.2)  # its start-up sweep
        before = relay.stats.published
        batches = relay.stats.batches
        started = time.process_time()
        await _writes(pool, relay, events, rate, writers)
        await _until(lambda: relay.stats.published - before >= events, 60, "not all published")
        return Phase(time.process_time() - started, relay.stats.batches - batches)
    finally:
        stop.set()
        await task


async def _latencies(
    pool: asyncpg.Pool, amqp: AmqpSettings, *, events: int, coalesce: float
) -> list[float]:
    """Seconds from each single event's wake-up to its publication (polled every 0.1 ms)."""
    relay = await _started(pool, amqp, coalesce)
    stop = asyncio.Event()
    task = asyncio.create_task(relay.run(stop))
    waits = []
    payload = _payload()
    try:
        await _until(lambda: relay.connected, 30, "the relay did not connect")
        await asyncio.sleep(0.2)
        for _ in range(events):
            target = relay.stats.published + 1
            await pool.execute(_INSERT, uuid.uuid4(), uuid.uuid4(), payload)
            woken = time.perf_counter()
            relay.wake()
            while relay.stats.published < target:  # noqa: ASYNC110 - a 0.1 ms poll is the clock
                await asyncio.sleep(0.0001)
            waits.append(time.perf_counter() - woken)
            await asyncio.sleep(0.02)
    finally:
        stop.set()
        await task
    return waits


async def _until(check: Any, seconds: float, message: str) -> None:
    deadline = time.monotonic() + seconds
    while not check():
        if time.monotonic() > deadline:
            raise RuntimeError(message)
        await asyncio.sleep(0.002)


async def _run(args: argparse.Namespace) -> None:
    env = BenchEnv.create()
    await env.create_database()
    amqp = AmqpSettings(url=env.amqp_url, namespace=env.namespace)
    pool = await asyncpg.create_pool(env.dsn, min_size=2, max_size=max(4, args.writers + 2))
    try:
        await _bind_a_queue(amqp)
        queues = broker_names(amqp.namespace)[0]
        default = RelaySettings().coalesce_seconds
        shapes = (("steady", args.rate, 1), ("burst", None, args.writers))
        for shape, rate, writers in shapes:
            cpu: dict[str, list[float]] = {}
            per_batch: dict[str, list[float]] = {}
            for _ in range(args.reps):
                alone = await _phase(
                    pool, amqp, events=args.events, rate=rate, writers=writers, coalesce=None
                )
                for coalesce in (0.0, default):
                    name = f"coalesce {coalesce * 1000:g} ms"
                    phase = await _phase(
                        pool,
                        amqp,
                        events=args.events,
                        rate=rate,
                        writers=writers,
                        coalesce=coalesce,
                    )
                    await purge_queues(env.amqp_url, queues)
                    relay_cpu = (phase.cpu_seconds - alone.cpu_seconds) / args.events * 1e6
                    cpu.setdefault(name, []).append(relay_cpu)
                    per_batch.setdefault(name, []).append(args.events / max(phase.batches, 1))
            label = f"{args.rate:g}/s" if rate is not None else f"burst of {args.writers} writers"
            for name, values in cpu.items():
                print(
                    f"{shape:6} ({label}), {name}: relay CPU {statistics.median(values):6,.0f} us"
                    f"/event (runs {', '.join(f'{v:,.0f}' for v in values)}), "
                    f"{statistics.median(per_batch[name]):5.1f} events per claim"
                )
        for coalesce in (0.0, default):
            waits = await _latencies(pool, amqp, events=args.single, coalesce=coalesce)
            await purge_queues(env.amqp_url, queues)
            waits.sort()
            print(
                f"single event, coalesce {coalesce * 1000:g} ms: wake to published "
                f"p50 {waits[len(waits) // 2] * 1000:.2f} ms, "
                f"p90 {waits[int(len(waits) * 0.9)] * 1000:.2f} ms"
            )
    finally:
        await pool.close()
        for problem in await env.cleanup():
            print(f"LEFT BEHIND: {problem}")


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.relay_cost", description=__doc__)
    parser.add_argument("--rate", type=float, default=50.0, help="steady writes per second")
    parser.add_argument("--events", type=int, default=500)
    parser.add_argument("--writers", type=int, default=20, help="concurrent writers in a burst")
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--single", type=int, default=100, help="single events timed")
    uvloop.run(_run(parser.parse_args()))


if __name__ == "__main__":
    main()
