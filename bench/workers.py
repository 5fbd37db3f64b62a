"""Worker throughput: Herald's consumer runtime against Celery 5, Dramatiq and FastStream on the
same RabbitMQ, each running the same trivial task (one Redis ``INCR`` per message).

Each case pre-fills its queue with ``N`` messages (published with the library's own client),
starts the worker process(es) in their own process groups, and times from the first to the
``N``-th handled message (every task stores the time of the first and the ``N``-th). Cases,
interleaved per repetition:

- ``herald-inbox``: one ``bench.consumer_app`` process, the task inside the inbox transaction
  (the event recorded as applied, in PostgreSQL), concurrency 16, prefetch 32; the deliveries
  in flight together share a transaction, each in a savepoint (inbox batches, the default);
  ``herald-inbox-single``: the same with one transaction per event
  (``HERALD_CONSUMER_INBOX_BATCH_MAX=1``);
- ``herald-idempotent``: the same, with the task registered as idempotent by construction (the
  runtime skips the inbox); ``herald-idempotent-classic``: that on a classic queue, as
  Dramatiq's (it has no quorum option; a classic queue costs the broker less per message);
- ``celery-solo``: ``-P solo``, prefetch 32, late acks; ``celery-prefork2``: ``-P prefork -c 2``,
  prefetch 2 x 16, late acks (``bench.celery_app``);
- ``dramatiq``: one process, 16 threads, prefetch 32 (``bench.dramatiq_app``);
- ``faststream``: one process, prefetch 32 (``bench.faststream_app``).

The peers run in the RabbitMQ virtual host of the run's own (``bench.env.private_vhost``):
Celery with quorum queues declares broker-wide delayed-delivery queues and exchanges
(``celery_delayed_*``), Dramatiq its delay and dead-letter queues, and deleting the vhost
afterwards removes them with everything else.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import time
import uuid
from dataclasses import dataclass
from typing import Any

import asyncpg
import redis

from bench.config import BenchConfig
from bench.env import BenchEnv
from bench.procs import BIN, ROOT, CpuMeter, Group, Groups, shared_server_pids
from bench.seams import (
    AmqpSettings,
    EventEnvelope,
    PostCreated,
    build_message,
    connect,
    consumer_queues,
    declare_consumer,
    open_channel,
    publish_confirmed,
)
from bench.stats import Spread

CONSUMER = "bench-throughput"
PREFETCH = 32


@dataclass(frozen=True, slots=True)
class Case:
    name: str
    title: str
    runtime: str
    processes: int
    pool: str = ""
    #: Herald: the task registered as idempotent (no inbox); its queue a quorum queue.
    idempotent: bool = False
    quorum: bool = True
    #: Herald: settings of the case's own, over the common ones.
    settings: tuple[tuple[str, str], ...] = ()

    def namespace(self, run: str) -> str:
        """Herald's broker namespace: its queues cannot change their type once declared."""
        return run if self.quorum else f"{run}.classic"


CASES = (
    Case("herald-inbox", "Herald runtime, task in the inbox transaction", "herald", 1),
    Case(
        "herald-inbox-single",
        "Herald runtime, inbox, one transaction per event",
        "herald",
        1,
        settings=(("HERALD_CONSUMER_INBOX_BATCH_MAX", "1"),),
    ),
    Case(
        "herald-idempotent",
        "Herald runtime, idempotent task (no inbox)",
        "herald",
        1,
        idempotent=True,
    ),
    Case(
        "herald-idempotent-classic",
        "Herald runtime, idempotent task, classic queue",
        "herald",
        1,
        idempotent=True,
        quorum=False,
    ),
    Case("celery-solo", "Celery -P solo", "celery", 1, "solo"),
    Case("celery-prefork2", "Celery -P prefork -c 2", "celery", 2, "prefork"),
    Case("dramatiq", "Dramatiq, 1 process x 16 threads", "dramatiq", 1),
    Case("faststream", "FastStream", "faststream", 1),
)
CONCURRENCY = 16
#: The modules that run (and fill) the peers other than Celery.
_PEER_MODULES = {"dramatiq": "bench.dramatiq_app", "faststream": "bench.faststream_app"}


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


def _fill_peer(case: Case, env: dict[str, str], messages: int) -> None:
    subprocess.run(  # noqa: S603 - our own module, no shell
        [str(BIN / "python"), "-m", _PEER_MODULES[case.runtime], "fill", str(messages)],
        cwd=ROOT,
        env={**os.environ, **env},
        check=True,
        capture_output=True,
        timeout=120 + messages / 100,
    )


def _start(case: Case, groups: Groups, env: dict[str, str], label: str) -> list[Group]:
    if case.runtime == "herald":
        idempotent = "1" if case.idempotent else "0"
        return [
            groups.start(
                f"{label}-{i}",
                [str(BIN / "python"), "-m", "bench.consumer_app"],
                {**env, "BENCH_CONSUMER": CONSUMER, "BENCH_IDEMPOTENT": idempotent},
            )
            for i in range(case.processes)
        ]
    if case.runtime == "dramatiq":
        args = [str(BIN / "dramatiq"), _PEER_MODULES["dramatiq"], "--processes", "1"]
        args += ["--threads", str(CONCURRENCY), "--skip-logging"]
        return [groups.start(label, args, {**env, "dramatiq_queue_prefetch": str(PREFETCH)})]
    if case.runtime == "faststream":
        args = [str(BIN / "python"), "-m", _PEER_MODULES["faststream"]]
        return [groups.start(label, args, {**env, "BENCH_PREFETCH": str(PREFETCH)})]
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


def _run_case(
    case: Case,
    groups: Groups,
    env: BenchEnv,
    process_env: dict[str, str],
    messages: int,
    rep: int,
    peer_url: str,
) -> tuple[float, dict[str, float]]:
    """Messages per second from the first to the last handled, and the CPU used meanwhile
    (cores: CPU seconds per second) by the workers, PostgreSQL, RabbitMQ, Redis, the machine."""
    key = f"{env.prefix}workers:{case.name}:{rep}"
    queue = f"{env.namespace}.celery"
    case_env = {
        **process_env,
        **({} if case.runtime == "herald" else {"HERALD_AMQP_URL": peer_url}),
        "BENCH_PEER_AMQP_URL": peer_url,
        "BENCH_PEER_QUEUE": f"{env.namespace}.{case.runtime}",
        "BENCH_COUNTER_KEY": key,
        "BENCH_EXPECTED": str(messages),
        "BENCH_CELERY_QUEUE": queue,
        "HERALD_CONSUMER_PREFETCH": str(PREFETCH),
        "HERALD_CONSUMER_CONCURRENCY": str(CONCURRENCY),
        "HERALD_AMQP_QUORUM_QUEUES": "true" if case.quorum else "false",
        "HERALD_AMQP_NAMESPACE": case.namespace(env.namespace),
        **dict(case.settings),
    }
    if case.runtime == "herald":
        namespace = case.namespace(env.namespace)
        amqp = AmqpSettings(url=env.amqp_url, namespace=namespace, quorum_queues=case.quorum)
        asyncio.run(fill_herald_queue(amqp, messages))
    elif case.runtime == "celery":
        _fill_celery(queue, peer_url, messages)
    else:
        _fill_peer(case, case_env, messages)
    started = _start(case, groups, case_env, f"{case.name}-r{rep + 1}")
    client = redis.Redis.from_url(env.redis_url)
    meter = CpuMeter(started, {})
    cpu0: dict[str, dict[int, float]] | None = None
    try:
        deadline = time.monotonic() + 60 + messages / 50
        while client.get(f"{key}:last") is None:
            if cpu0 is None and client.get(f"{key}:first") is not None:
                meter.servers = {"postgres": asyncio.run(_backends(env.dsn))}
                meter.servers |= shared_server_pids()
                cpu0 = meter.read()
            if time.monotonic() > deadline:
                raise RuntimeError(f"{case.name}: not all {messages} messages were handled")
            for group in started:
                if not group.running():
                    raise RuntimeError(f"{case.name} exited:\n{group.log_tail()}")
            time.sleep(0.05)
        cpu1 = meter.read()
        first, last = (float(client.get(f"{key}:{end}") or 0) for end in ("first", "last"))
        count = int(client.get(f"{key}:count") or 0)
    finally:
        client.close()
        for group in started:
            groups.stop(group)
    if count != messages:
        raise RuntimeError(f"{case.name}: {count} handled for {messages} sent")
    # Polled every 50 ms: a coarse window, good enough to see who was busy.
    cores: dict[str, float] = {}
    if cpu0 is not None:
        for name, used in CpuMeter.cores(cpu0, cpu1, last - first).items():
            shown = "workers" if name.startswith(case.name) else name
            cores[shown] = round(cores.get(shown, 0.0) + used, 3)
        cores.pop("harness", None)
    return (messages - 1) / (last - first), cores


def run_workers(
    config: BenchConfig,
    groups: Groups,
    env: BenchEnv,
    process_env: dict[str, str],
    peer_url: str,
) -> dict[str, Any]:
    """Every selected case, ``config.reps`` times, interleaved; the peers use the virtual host
    at ``peer_url``."""
    messages = config.count(config.worker_messages)
    cases = [c for c in CASES if config.wants("workers", c.name)]
    rates: dict[str, list[float]] = {c.name: [] for c in cases}
    cores: dict[str, list[dict[str, float]]] = {c.name: [] for c in cases}
    for rep in range(config.reps):
        for case in cases:
            rate, used = _run_case(case, groups, env, process_env, messages, rep, peer_url)
            rates[case.name].append(rate)
            cores[case.name].append({k: round(v, 2) for k, v in used.items()})
            per_message = used.get("workers", 0.0) / rate * 1e6
            print(
                f"  rep {rep + 1} {case.title:<45} {rate:8,.0f} messages/s  "
                f"workers {per_message:,.0f} µs CPU/message  CPU (cores) {cores[case.name][-1]}",
                flush=True,
            )
    return {
        "messages": messages,
        "prefetch": PREFETCH,
        "concurrency": CONCURRENCY,
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
