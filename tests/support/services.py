"""Real service processes and the broker as tests see them.

``Processes`` starts real processes (each in its own process group, logging to a file) and kills
every group it started when the test ends; ``Broker`` publishes envelopes and inspects queues in
the run's namespace. The ``processes`` and ``broker`` fixtures in tests/conftest.py provide them.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import subprocess
import sys
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import aio_pika
import aiormq
import httpx
from aio_pika.abc import AbstractIncomingMessage, AbstractRobustConnection

from herald_shared.events import EventEnvelope
from herald_shared.messaging.connection import open_channel
from herald_shared.messaging.publisher import build_message, publish_confirmed
from herald_shared.messaging.topology import ConsumerQueues, consumer_queues, exchange_name
from herald_shared.settings import AmqpSettings
from tests.support.processes import kill_group, start_process
from tests.support.tcp_proxy import free_port
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

    async def purge(self, queue: str) -> None:
        """Empty ``queue`` (e.g. of events earlier tests left for a consumer nobody ran)."""
        channel = await self._connection.channel()
        try:
            declared = await channel.get_queue(queue, ensure=True)
            await declared.purge()
        finally:
            await channel.close()

    async def assert_drained(
        self, consumer: str, retry_delays: Sequence[float] = FAST_RETRY_DELAYS
    ) -> None:
        """With the consumer stopped, nothing is left: every message was acked, none waits."""
        queues = self.queues(consumer, retry_delays)
        for name in (queues.main, *queues.retry_queues):
            depth = await self.depth(name)
            assert depth is not None, f"{name} does not exist"
            assert depth.messages == 0, f"{name} still holds {depth.messages} message(s)"


@dataclass(slots=True)
class Processes:
    """Starts real processes for one test and kills every process group it started at the end."""

    database_dsn: str
    amqp: AmqpSettings
    redis_prefix: str
    broker: Broker
    log_dir: Path
    #: Retry-delay sets the processes declared queues for (so the run can delete them).
    retry_delays: set[tuple[float, ...]]
    started: list[ServiceProcess] = field(default_factory=list)

    def base_env(self) -> dict[str, str]:
        return {
            "HERALD_DB_DSN": self.database_dsn,
            "HERALD_AMQP_URL": self.amqp.url.get_secret_value(),
            "HERALD_AMQP_NAMESPACE": self.amqp.namespace,
            "HERALD_REDIS_KEY_PREFIX": self.redis_prefix,
            "HERALD_CONSUMER_RETRY_DELAYS_SECONDS": json.dumps(list(FAST_RETRY_DELAYS)),
            "HERALD_LOG_LEVEL": "INFO",
            "HERALD_CONSUMER_HEALTH_PORT": "0",
        }

    def start(self, label: str, args: list[str], env: Mapping[str, str]) -> ServiceProcess:
        log_path = self.log_dir / f"{label}-{len(self.started)}.log"
        merged = {**self.base_env(), **env}
        # The process declares retry queues named after its delays: remember them for cleanup.
        delays = merged.get("HERALD_CONSUMER_RETRY_DELAYS_SECONDS")
        if delays:
            self.retry_delays.add(tuple(float(d) for d in json.loads(delays)))
        process = start_process(args, merged, log_path=log_path)
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
        self.retry_delays.add(tuple(retry_delays))
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

    async def start_service(
        self, module: str, consumer: str, env: Mapping[str, str], *, consumers: int = 1
    ) -> ServiceProcess:
        """Start a real Herald service (``python -m module``) and wait until it consumes.

        The first one of a test purges what earlier tests left in the service's queue.
        """
        if not any(s.label == consumer for s in self.started):
            with contextlib.suppress(aiormq.exceptions.ChannelNotFoundEntity):
                await self.broker.purge(self.broker.queues(consumer).main)
        service = self.start(consumer, ["-m", module], env)
        await self.wait_consuming(service, self.broker.queues(consumer).main, consumers)
        return service

    async def start_api(self, env: Mapping[str, str]) -> tuple[ServiceProcess, str]:
        """Start ``python -m herald_api`` on a free port; returns it and its base URL once
        ``/readyz`` answers 200."""
        port = free_port()
        service = self.start("api", ["-m", "herald_api"], {"HERALD_API_PORT": str(port), **env})
        base_url = f"http://127.0.0.1:{port}"

        async def ready() -> bool:
            service.check_running()
            try:
                async with httpx.AsyncClient(base_url=base_url, timeout=2) as http:
                    return (await http.get("/readyz")).status_code == 200
            except httpx.TransportError:
                return False

        await wait_until(ready, seconds=READY_SECONDS, interval=0.1, message="the API is not ready")
        return service, base_url

    def kill_all(self) -> None:
        for service in self.started:
            kill_group(service.process)
            with contextlib.suppress(subprocess.TimeoutExpired):
                service.process.wait(timeout=10)
