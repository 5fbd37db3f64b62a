"""Fixtures for the event tests: real consumer processes, the broker as tests see it, and
queries over the tables the recording handler of ``tests.support.consumer_app`` writes.

Every test names its own consumer (``consumer_name``), so its queues are its own; the consumers
bind every routing key of the run's namespace, so a test only ever counts its own event ids.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import subprocess
import sys
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import aio_pika
import aiormq
import asyncpg
import pytest
from aio_pika.abc import AbstractIncomingMessage, AbstractRobustConnection

from herald_shared.events import EventEnvelope, PostCreated
from herald_shared.messaging.connection import open_channel
from herald_shared.messaging.publisher import build_message, publish_confirmed
from herald_shared.messaging.topology import ConsumerQueues, consumer_queues, exchange_name
from herald_shared.settings import AmqpSettings
from tests.conftest import TEST_CONSUMERS, TEST_RETRY_DELAYS
from tests.support.processes import kill_group, start_process
from tests.support.waiting import wait_until

#: Short retry steps, so a message goes through every retry queue in well under a second.
FAST_RETRY_DELAYS: tuple[float, ...] = (0.2, 0.5)
READY_SECONDS = 30.0
STOP_SECONDS = 15.0
BIN = Path(sys.executable).parent


@dataclass(frozen=True, slots=True)
class QueueDepth:
    """What a passive declare reports: ready messages (not unacked ones) and consumers."""

    messages: int
    consumers: int


@dataclass(slots=True)
class ServiceProcess:
    """A real process started by a test, in a process group of its own, logging to a file."""

    label: str
    process: subprocess.Popen[bytes]
    log_path: Path

    @property
    def pid(self) -> int:
        return self.process.pid

    def log_tail(self, lines: int = 40) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return "(no log)"
        return "\n".join(text.splitlines()[-lines:])

    def check_running(self) -> None:
        """Fail, with the end of the log, if the process has already exited."""
        code = self.process.poll()
        if code is not None:
            raise AssertionError(f"{self.label} exited early with {code}:\n{self.log_tail()}")

    async def wait_exit(self, seconds: float) -> int:
        """The exit code, once the process has exited (fails after ``seconds``)."""

        async def exited() -> bool:
            return self.process.poll() is not None

        await wait_until(exited, seconds=seconds, message=f"{self.label} did not exit")
        code = self.process.returncode
        assert code is not None
        return code

    async def terminate(self, seconds: float = STOP_SECONDS) -> int:
        """SIGTERM the group and wait for the exit code."""
        kill_group(self.process, signal.SIGTERM)
        return await self.wait_exit(seconds)


class Broker:
    """The run's namespace seen from a test: publish events, inspect queues, read messages."""

    def __init__(self, connection: AbstractRobustConnection, settings: AmqpSettings) -> None:
        self._connection = connection
        self.settings = settings
        self.namespace = settings.namespace

    def queues(
        self, consumer: str, retry_delays: Sequence[float] = FAST_RETRY_DELAYS
    ) -> ConsumerQueues:
        return consumer_queues(self.namespace, consumer, retry_delays=retry_delays)

    async def publish(self, envelopes: Iterable[EventEnvelope], *, batch: int = 200) -> None:
        """Publish envelopes as the relay does (persistent, message id = event id, confirmed)."""
        messages = [
            (
                build_message(e.model_dump_json().encode(), message_id=e.id, event_type=e.type),
                e.type,
            )
            for e in envelopes
        ]
        await self._publish(messages, batch=batch)

    async def publish_raw(self, body: bytes, *, message_id: str, routing_key: str) -> None:
        """Publish any body under an event's routing key (for messages that do not decode)."""
        message = build_message(body, message_id=message_id, event_type=routing_key)
        await self._publish([(message, routing_key)], batch=1)

    async def _publish(self, messages: list[tuple[aio_pika.Message, str]], *, batch: int) -> None:
        channel = await open_channel(self._connection)
        try:
            exchange = await channel.get_exchange(exchange_name(self.namespace), ensure=True)
            for start in range(0, len(messages), batch):
                await asyncio.gather(
                    *(
                        publish_confirmed(exchange, message, key, timeout=10)
                        for message, key in messages[start : start + batch]
                    )
                )
        finally:
            await channel.close()

    async def depth(self, queue: str) -> QueueDepth | None:
        """Ready messages and consumers of ``queue``; None when it does not exist."""
        channel = await self._connection.channel()
        try:
            declared = await channel.declare_queue(queue, passive=True)
        except aiormq.exceptions.ChannelNotFoundEntity:
            return None
        result = declared.declaration_result
        await channel.close()
        return QueueDepth(result.message_count or 0, result.consumer_count or 0)

    async def peek(self, queue: str, limit: int = 100) -> list[AbstractIncomingMessage]:
        """Up to ``limit`` messages of ``queue``, left in it (taken unacked, returned on close)."""
        channel = await self._connection.channel()
        try:
            declared = await channel.get_queue(queue, ensure=True)
            messages: list[AbstractIncomingMessage] = []
            while len(messages) < limit:
                message = await declared.get(no_ack=False, fail=False)
                if message is None:
                    break
                messages.append(message)
            return messages
        finally:
            await channel.close()

    async def wait_depth(
        self,
        queue: str,
        *,
        messages: int | None = None,
        consumers: int | None = None,
        seconds: float = 20.0,
    ) -> None:
        """Wait until ``queue`` has exactly ``messages`` ready and at least ``consumers``."""

        async def reached() -> bool:
            depth = await self.depth(queue)
            if depth is None:
                return False
            return (messages is None or depth.messages == messages) and (
                consumers is None or depth.consumers >= consumers
            )

        await wait_until(
            reached,
            seconds=seconds,
            interval=0.05,
            message=f"{queue} never had messages={messages} consumers>={consumers}",
        )

    async def assert_drained(
        self, consumer: str, retry_delays: Sequence[float] = FAST_RETRY_DELAYS
    ) -> None:
        """With the consumer stopped, nothing is left: every message was acked, none waits."""
        queues = self.queues(consumer, retry_delays)
        for name in (queues.main, *queues.retry_queues):
            depth = await self.depth(name)
            assert depth is not None, f"{name} does not exist"
            assert depth.messages == 0, f"{name} still holds {depth.messages} message(s)"


@pytest.fixture
async def broker(amqp_settings: AmqpSettings) -> AsyncIterator[Broker]:
    connection = await aio_pika.connect_robust(amqp_settings.url.get_secret_value())
    try:
        yield Broker(connection, amqp_settings)
    finally:
        await connection.close()


@pytest.fixture
def consumer_name() -> str:
    """A consumer (queue) name of this test's own, removed with the run's namespace."""
    name = f"t{uuid.uuid4().hex[:8]}"
    TEST_CONSUMERS.add(name)
    TEST_RETRY_DELAYS.add(FAST_RETRY_DELAYS)
    return name


@dataclass(slots=True)
class Processes:
    """Starts real processes for one test and kills every process group it started at the end."""

    database_dsn: str
    amqp: AmqpSettings
    broker: Broker
    log_dir: Path
    started: list[ServiceProcess] = field(default_factory=list)

    def base_env(self) -> dict[str, str]:
        return {
            "HERALD_DB_DSN": self.database_dsn,
            "HERALD_AMQP_URL": self.amqp.url.get_secret_value(),
            "HERALD_AMQP_NAMESPACE": self.amqp.namespace,
            "HERALD_LOG_LEVEL": "INFO",
        }

    def start(self, label: str, args: list[str], env: Mapping[str, str]) -> ServiceProcess:
        log_path = self.log_dir / f"{label}-{len(self.started)}.log"
        process = start_process(args, {**self.base_env(), **env}, log_path=log_path)
        service = ServiceProcess(label, process, log_path)
        self.started.append(service)
        return service

    async def start_consumer(
        self,
        name: str,
        *,
        behaviour: str = "ok",
        concurrency: int = 4,
        prefetch: int | None = None,
        grace: float = 10.0,
        retry_delays: Sequence[float] = FAST_RETRY_DELAYS,
        in_process_attempts: int | None = None,
        job_period: float | None = None,
        consumers: int = 1,
    ) -> ServiceProcess:
        """Start ``tests.support.consumer_app`` and wait until its queue has ``consumers``."""
        TEST_RETRY_DELAYS.add(tuple(retry_delays))
        env = {
            "HERALD_TEST_CONSUMER": name,
            "HERALD_TEST_BEHAVIOUR": behaviour,
            "HERALD_CONSUMER_RETRY_DELAYS_SECONDS": json.dumps(list(retry_delays)),
            "HERALD_CONSUMER_CONCURRENCY": str(concurrency),
            "HERALD_CONSUMER_PREFETCH": str(prefetch or max(2 * concurrency, 8)),
            "HERALD_CONSUMER_SHUTDOWN_GRACE_SECONDS": str(grace),
        }
        if in_process_attempts is not None:
            env["HERALD_CONSUMER_IN_PROCESS_ATTEMPTS"] = str(in_process_attempts)
        if job_period is not None:
            env["HERALD_TEST_JOB_PERIOD"] = str(job_period)
        service = self.start(name, ["-m", "tests.support.consumer_app"], env)
        await self.wait_consuming(service, self.broker.queues(name, retry_delays).main, consumers)
        return service

    async def wait_consuming(self, service: ServiceProcess, queue: str, consumers: int = 1) -> None:
        """Wait until ``queue`` has at least ``consumers`` (failing early if ``service`` died)."""

        async def consuming() -> bool:
            service.check_running()
            depth = await self.broker.depth(queue)
            return depth is not None and depth.consumers >= consumers

        await wait_until(
            consuming, seconds=READY_SECONDS, interval=0.05, message=f"{queue} has no consumer"
        )

    def kill_all(self) -> None:
        for service in self.started:
            kill_group(service.process)
            with contextlib.suppress(subprocess.TimeoutExpired):
                service.process.wait(timeout=10)


@pytest.fixture
async def processes(
    database_dsn: str, amqp_settings: AmqpSettings, broker: Broker, tmp_path: Path
) -> AsyncIterator[Processes]:
    running = Processes(database_dsn, amqp_settings, broker, tmp_path)
    try:
        yield running
    finally:
        running.kill_all()


async def run_cli(
    args: Sequence[str], env: Mapping[str, str], *, seconds: float = 30.0
) -> tuple[int, str, str]:
    """Run the real ``herald`` command; returns (exit code, stdout, stderr)."""
    process = await asyncio.create_subprocess_exec(
        str(BIN / "herald"),
        *args,
        env=env,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        async with asyncio.timeout(seconds):
            out, err = await process.communicate()
    except TimeoutError:
        process.kill()
        await process.wait()
        raise
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


def post_created(author_id: uuid.UUID | None = None) -> EventEnvelope:
    """A ``post.created`` envelope for a post of its own."""
    data = PostCreated(
        author_id=author_id or uuid.uuid4(), status="draft", title="An event", tags=["events"]
    )
    return EventEnvelope.wrap(data, aggregate_id=uuid.uuid4(), aggregate_version=1)


async def effects(
    pool: asyncpg.Pool, consumer: str, event_ids: Iterable[uuid.UUID]
) -> Counter[uuid.UUID]:
    """How many effects each of ``event_ids`` had for ``consumer`` (events with none are absent)."""
    rows = await pool.fetch(
        "SELECT event_id FROM test_effects WHERE consumer = $1 AND event_id = ANY($2::uuid[])",
        consumer,
        list(event_ids),
    )
    return Counter(row["event_id"] for row in rows)


async def count_effects(pool: asyncpg.Pool, consumer: str, event_ids: Iterable[uuid.UUID]) -> int:
    count: int = await pool.fetchval(
        "SELECT count(*) FROM test_effects WHERE consumer = $1 AND event_id = ANY($2::uuid[])",
        consumer,
        list(event_ids),
    )
    return count


async def effects_by_pid(
    pool: asyncpg.Pool, consumer: str, event_ids: Iterable[uuid.UUID]
) -> Counter[int]:
    """How many of the effects of ``event_ids`` each consumer process had."""
    rows = await pool.fetch(
        "SELECT pid, count(*) AS n FROM test_effects "
        "WHERE consumer = $1 AND event_id = ANY($2::uuid[]) GROUP BY pid",
        consumer,
        list(event_ids),
    )
    return Counter({row["pid"]: row["n"] for row in rows})


async def attempted(
    pool: asyncpg.Pool, consumer: str, event_ids: Iterable[uuid.UUID]
) -> set[uuid.UUID]:
    """Which of ``event_ids`` a handler of ``consumer`` has started on."""
    rows = await pool.fetch(
        "SELECT DISTINCT event_id FROM test_attempts "
        "WHERE consumer = $1 AND event_id = ANY($2::uuid[])",
        consumer,
        list(event_ids),
    )
    return {row["event_id"] for row in rows}


async def attempts(pool: asyncpg.Pool, consumer: str, event_id: uuid.UUID) -> list[asyncpg.Record]:
    """The tries of one event, oldest first (attempt number, pid, time)."""
    return list(
        await pool.fetch(
            "SELECT attempt, pid, at FROM test_attempts WHERE consumer = $1 AND event_id = $2 "
            "ORDER BY at",
            consumer,
            event_id,
        )
    )


async def wait_for_effects(
    pool: asyncpg.Pool, consumer: str, event_ids: Iterable[uuid.UUID], *, seconds: float = 30.0
) -> None:
    """Wait until every one of ``event_ids`` has at least one effect."""
    wanted = list(set(event_ids))

    async def all_done() -> bool:
        handled = await pool.fetchval(
            "SELECT count(DISTINCT event_id) FROM test_effects "
            "WHERE consumer = $1 AND event_id = ANY($2::uuid[])",
            consumer,
            wanted,
        )
        return bool(handled == len(wanted))

    await wait_until(
        all_done, seconds=seconds, interval=0.05, message=f"not all {len(wanted)} events handled"
    )
