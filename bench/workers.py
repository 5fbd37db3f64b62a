"""Worker throughput: Herald's consumer runtime against Celery 5 on the same RabbitMQ.

Each case pre-fills its queue with ``N`` messages, starts the worker process(es) in their own
process groups, and times from the first to the ``N``-th handled message (both sides time the
same way: one Redis ``INCR`` per message). Cases, interleaved per repetition:

- ``herald-1``: one ``bench.consumer_app`` process (inbox deduplication, acks, default
  concurrency 16 and prefetch 32);
- ``herald-2``: two such processes on the same queue;
- ``celery-solo``: ``-P solo``, prefetch 32, late acks;
- ``celery-prefork2``: ``-P prefork -c 2``, prefetch 2 x 16, late acks.

Celery runs in a RabbitMQ virtual host of the run's own (named like the run's namespace): with
quorum queues it declares broker-wide delayed-delivery queues and exchanges
(``celery_delayed_*``), and deleting the vhost afterwards removes them with everything else.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from dataclasses import dataclass
from typing import Any

import asyncpg
import redis

from bench.config import BenchConfig
from bench.env import BenchEnv, private_vhost
from bench.procs import BIN, CLOCK_TICKS, Group, Groups, cpu_seconds, machine_busy, pids_named
from bench.stats import Spread
from herald_shared.events import EventEnvelope, PostCreated
from herald_shared.messaging.connection import connect, open_channel
from herald_shared.messaging.publisher import build_message, publish_confirmed
from herald_shared.messaging.topology import consumer_queues, declare_consumer
from herald_shared.settings import AmqpSettings

CONSUMER = "bench-throughput"
PREFETCH = 32


@dataclass(frozen=True, slots=True)
class Case:
    name: str
    title: str
    runtime: str
    processes: int
    pool: str = ""


CASES = (
    Case("herald-1", "Herald runtime, 1 process", "herald", 1),
    Case("herald-2", "Herald runtime, 2 processes", "herald", 2),
    Case("celery-solo", "Celery -P solo", "celery", 1, "solo"),
    Case("celery-prefork2", "Celery -P prefork -c 2", "celery", 2, "prefork"),
)


async def fill_herald_queue(amqp: AmqpSettings, messages: int) -> None:
    connection = await connect(amqp, name="bench-fill", attempts=3)
    try:
        channel = await open_channel(connection)
        queues = consumer_queues(amqp.namespace, CONSUMER, quorum=amqp.quorum_queues)
        await declare_consumer(channel, queues, bindings=("post.created",))
        await (await channel.get_queue(queues.main)).purge()
        for first in range(0, messages, 200):
            batch = []
            for _ in range(min(200, messages - first)):
                event = EventEnvelope.wrap(
                    PostCreated(author_id=uuid.uuid4(), status="published", title="t", tags=[]),
                    aggregate_id=uuid.uuid4(),
                    aggregate_version=1,
                )
                message = build_message(
                    event.model_dump_json().encode(), message_id=event.id, event_type=event.type
                )
                batch.append(
                    publish_confirmed(channel.default_exchange, message, queues.main, timeout=10)
                )
            await asyncio.gather(*batch)
    finally:
        await connection.close()


def _fill_celery(queue: str, amqp_url: str, messages: int) -> None:
    from bench.celery_app import TASK, create_app

    app = create_app(queue, amqp_url)
    with app.connection_for_write() as conn:
        declared = app.amqp.queues[queue](conn.default_channel)
        declared.declare()
        declared.purge()
        with app.producer_or_acquire() as producer:
            for _ in range(messages):
                app.send_task(TASK, args=[uuid.uuid4().hex], producer=producer)


def _start(case: Case, groups: Groups, env: dict[str, str], label: str) -> list[Group]:
    if case.runtime == "herald":
        return [
            groups.start(
                f"{label}-{i}",
                [str(BIN / "python"), "-m", "bench.consumer_app"],
                {**env, "BENCH_CONSUMER": CONSUMER, "BENCH_MODE": "count"},
            )
            for i in range(case.processes)
        ]
    args = [str(BIN / "celery"), "-A", "bench.celery_app", "worker", "-P", case.pool]
    args += ["-c", str(case.processes), "--loglevel", "WARNING"]
    args += ["--without-gossip", "--without-mingle", "--without-heartbeat"]
    multiplier = PREFETCH // case.processes
    return [groups.start(label, args, {**env, "BENCH_PREFETCH_MULTIPLIER": str(multiplier)})]


async def _backends(dsn: str) -> list[int]:
    conn = await asyncpg.connect(dsn)
    try:
        rows = await conn.fetch(
            "SELECT pid FROM pg_stat_activity WHERE datname = current_database() "
            "AND pid <> pg_backend_pid()"
        )
        return [r["pid"] for r in rows]
    finally:
        await conn.close()


def _cpu(started: list[Group], servers: dict[str, list[int]]) -> dict[str, float]:
    """CPU seconds so far of the workers, the shared servers and the whole machine."""
    busy, _ = machine_busy()
    return (
        {"workers": sum(g.cpu_seconds() for g in started)}
        | {name: cpu_seconds(pids) for name, pids in servers.items()}
        | {"machine": busy / CLOCK_TICKS}
    )


def _run_case(
    case: Case,
    groups: Groups,
    env: BenchEnv,
    process_env: dict[str, str],
    messages: int,
    rep: int,
    celery_url: str,
) -> tuple[float, dict[str, float]]:
    """Messages per second from the first to the last handled, and the CPU used meanwhile
    (cores: CPU seconds per second) by the workers, PostgreSQL, RabbitMQ, Redis, the machine."""
    key = f"{env.prefix}workers:{case.name}:{rep}"
    queue = f"{env.namespace}.celery"
    amqp = AmqpSettings(url=env.amqp_url, namespace=env.namespace)
    if case.runtime == "herald":
        asyncio.run(fill_herald_queue(amqp, messages))
    else:
        _fill_celery(queue, celery_url, messages)
    case_env = {
        **process_env,
        **({} if case.runtime == "herald" else {"HERALD_AMQP_URL": celery_url}),
        "BENCH_COUNTER_KEY": key,
        "BENCH_EXPECTED": str(messages),
        "BENCH_CELERY_QUEUE": queue,
        "HERALD_CONSUMER_PREFETCH": str(PREFETCH),
    }
    started = _start(case, groups, case_env, f"{case.name}-r{rep + 1}")
    client = redis.Redis.from_url(env.redis_url)
    cpu0: dict[str, float] | None = None
    servers: dict[str, list[int]] = {}
    try:
        deadline = time.monotonic() + 60 + messages / 50
        while client.get(f"{key}:last") is None:
            if cpu0 is None and client.get(f"{key}:first") is not None:
                servers = {
                    "postgres": asyncio.run(_backends(env.dsn)),
                    "rabbitmq": pids_named("beam.smp"),
                    "redis": pids_named("redis-server"),
                }
                cpu0 = _cpu(started, servers)
            if time.monotonic() > deadline:
                raise RuntimeError(f"{case.name}: not all {messages} messages were handled")
            for group in started:
                if not group.running():
                    raise RuntimeError(f"{case.name} exited:\n{group.log_tail()}")
            time.sleep(0.05)
        cpu1 = _cpu(started, servers)
        first, last = (float(client.get(f"{key}:{end}") or 0) for end in ("first", "last"))
        count = int(client.get(f"{key}:count") or 0)
    finally:
        client.close()
        for group in started:
            groups.stop(group)
    if count != messages:
        raise RuntimeError(f"{case.name}: {count} handled for {messages} sent")
    # Polled every 50 ms: a coarse window, good enough to see who was busy.
    cores = {k: (cpu1[k] - cpu0[k]) / (last - first) for k in cpu1} if cpu0 else {}
    return (messages - 1) / (last - first), cores


def run_workers(
    config: BenchConfig, groups: Groups, env: BenchEnv, process_env: dict[str, str]
) -> dict[str, Any]:
    messages = config.count(config.worker_messages)
    cases = [c for c in CASES if config.wants("workers", c.name)]
    rates: dict[str, list[float]] = {c.name: [] for c in cases}
    cores: dict[str, list[dict[str, float]]] = {c.name: [] for c in cases}
    with contextlib.ExitStack() as stack:
        celery_url = env.amqp_url
        if any(c.runtime == "celery" for c in cases):
            celery_url = stack.enter_context(private_vhost(env.amqp_url, env.namespace))
        for rep in range(config.reps):
            for case in cases:
                rate, used = _run_case(case, groups, env, process_env, messages, rep, celery_url)
                rates[case.name].append(rate)
                cores[case.name].append({k: round(v, 2) for k, v in used.items()})
                print(
                    f"  rep {rep + 1} {case.title:<30} {rate:8,.0f} messages/s  "
                    f"CPU (cores) {cores[case.name][-1]}",
                    flush=True,
                )
    return {
        "messages": messages,
        "prefetch": PREFETCH,
        "cases": {
            c.name: {
                "title": c.title,
                **Spread.of(rates[c.name]).as_dict(),
                "runs": rates[c.name],
                "cpu_cores": cores[c.name],
            }
            for c in cases
        },
    }
