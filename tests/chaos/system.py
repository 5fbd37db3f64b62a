"""The whole of Herald on private servers, for one chaos scenario.

``PrivateServers`` are the session's own PostgreSQL (with a migrated template database), Redis
and RabbitMQ, started from the installed binaries. A ``ChaosSystem`` gives one scenario its own
database (a copy of the template), broker namespace and Redis key prefix on them, optionally a
``FaultProxy`` in front of any of the three, and starts the real service processes
(``python -m herald_api``, ``herald_worker``, ``herald_cache_invalidator``) configured for them.
Every process is tracked as a ``Service`` that knows whether it is meant to be running or was
stopped on purpose, so the ledger can tell a crash from a planned restart.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import aio_pika
import aiormq
import asyncpg
import httpx
import redis.asyncio as redis

from herald_shared import accounts
from herald_shared.apikeys import Role
from herald_shared.events import EventEnvelope
from herald_shared.messaging.connection import open_channel
from herald_shared.messaging.depth import queue_depth
from herald_shared.messaging.publisher import build_message, publish_confirmed
from herald_shared.messaging.topology import ConsumerQueues, consumer_queues, exchange_name
from tests.chaos.load import Account
from tests.support.faults import FaultProxy
from tests.support.network import free_port
from tests.support.processes import start_process
from tests.support.servers import PrivatePostgres, PrivateRabbitMQ, PrivateRedis
from tests.support.waiting import wait_until

Dependency = Literal["postgres", "redis", "rabbitmq"]

#: The consumers' retry backoff in these scenarios: the production steps (1, 5, 30, 120, 600 s)
#: shrunk so that the budget (about 15 s) still outlasts every outage a scenario injects.
RETRY_DELAYS: tuple[float, ...] = (0.5, 1.0, 2.0, 4.0, 8.0)
READY_SECONDS = 60.0
CONSUMERS = ("worker", "cache-invalidator")

#: Settings every process gets: fast feedback, webhooks to loopback, no tracing files.
BASE_ENV: dict[str, str] = {
    "HERALD_ENV": "test",
    "HERALD_LOG_LEVEL": "INFO",
    "HERALD_LOG_JSON": "true",
    "HERALD_TRACE_ENABLED": "false",
    "HERALD_CONSUMER_RETRY_DELAYS_SECONDS": json.dumps(list(RETRY_DELAYS)),
    "HERALD_CONSUMER_PAUSE_SECONDS": "1.0",
    "HERALD_CONSUMER_SHUTDOWN_GRACE_SECONDS": "5",
    "HERALD_CONSUMER_CONCURRENCY": "8",
    "HERALD_CONSUMER_PREFETCH": "16",
    "HERALD_RELAY_SWEEP_INTERVAL_SECONDS": "0.2",
    "HERALD_API_GRACEFUL_SHUTDOWN_SECONDS": "5",
    "HERALD_RATE_LIMIT_READ_PER_WINDOW": "1000000",
    "HERALD_RATE_LIMIT_WRITE_PER_WINDOW": "1000000",
    "HERALD_RATE_LIMIT_ANONYMOUS_PER_WINDOW": "1000000",
    "HERALD_WEBHOOKS_ALLOW_HTTP": "true",
    "HERALD_WEBHOOKS_ALLOW_PRIVATE": "true",
    "HERALD_WEBHOOKS_BACKOFF_SECONDS": json.dumps([0.2, 0.4, 0.8]),
    "HERALD_WEBHOOKS_BACKOFF_JITTER": "0.1",
    "HERALD_WEBHOOKS_MAX_ATTEMPTS": "4",
    "HERALD_WEBHOOKS_RESOLVE_TIMEOUT_SECONDS": "0.5",
    "HERALD_WEBHOOKS_CONNECT_TIMEOUT_SECONDS": "0.5",
    "HERALD_WEBHOOKS_READ_TIMEOUT_SECONDS": "1.0",
    "HERALD_WEBHOOKS_LEASE_SECONDS": "4",
    "HERALD_WEBHOOKS_POLL_INTERVAL_SECONDS": "0.1",
    "HERALD_WEBHOOKS_BREAKER_FAILURES": "5",
    "HERALD_WEBHOOKS_BREAKER_RESET_SECONDS": "1.0",
    "HERALD_WORKER_JOBS_TICK_SECONDS": "1",
}


@dataclass(slots=True)
class PrivateServers:
    """The session's private servers and the migrated template each scenario copies."""

    postgres: PrivatePostgres
    redis: PrivateRedis
    rabbitmq: PrivateRabbitMQ
    template: str

    async def restore(self) -> None:
        """Whatever a scenario did to them, leave all three running and answering."""
        for server in (self.postgres, self.redis, self.rabbitmq):
            if server.process.paused:
                server.resume()
            if not server.running:
                await server.restart()

    async def close(self) -> None:
        for server in (self.rabbitmq, self.redis, self.postgres):
            await server.close()


@dataclass(slots=True)
class Service:
    """A real service process of the scenario: where it answers, and whether it is meant to
    be running (``stopped`` is set when the scenario signalled it on purpose)."""

    label: str
    module: str
    process: subprocess.Popen[bytes]
    log_path: Path
    health_url: str
    #: Where /metrics answers, when not at ``health_url`` (the API's metrics port).
    metrics_url: str | None = None
    stopped: str | None = None
    exit_code: int | None = None

    @property
    def alive(self) -> bool:
        return self.process.poll() is None

    def log_tail(self, lines: int = 40) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return "(no log)"
        return "\n".join(text.splitlines()[-lines:])

    def log_records(self) -> list[dict[str, Any]]:
        records = []
        with contextlib.suppress(FileNotFoundError):
            for line in self.log_path.read_text(errors="replace").splitlines():
                with contextlib.suppress(ValueError):
                    record = json.loads(line)
                    if isinstance(record, dict):
                        records.append(record)
        return records

    async def ready(self) -> bool:
        """``/readyz`` answers 200 (failing at once if the process died)."""
        if not self.alive:
            raise AssertionError(
                f"{self.label} exited with {self.process.poll()}:\n{self.log_tail()}"
            )
        try:
            async with httpx.AsyncClient(timeout=2) as http:
                return (await http.get(self.health_url + "/readyz")).status_code == 200
        except httpx.TransportError:
            return False

    async def wait_ready(self, seconds: float = READY_SECONDS) -> None:
        await wait_until(
            self.ready, seconds=seconds, interval=0.1, message=f"{self.label} never became ready"
        )

    async def sigkill(self) -> None:
        """SIGKILL the process group (the scenario's crash)."""
        self.stopped = "killed"
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)
        self.exit_code = await self._wait_exit(10.0)

    async def sigterm(self, seconds: float) -> tuple[int | None, float]:
        """SIGTERM the group and wait up to ``seconds``: (exit code or None if it is still
        running, seconds waited)."""
        self.stopped = "terminated"
        started = time.monotonic()
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGTERM)
        with contextlib.suppress(AssertionError):
            self.exit_code = await self._wait_exit(seconds)
        return (self.exit_code if not self.alive else None), time.monotonic() - started

    async def _wait_exit(self, seconds: float) -> int:
        async def exited() -> bool:
            return self.process.poll() is not None

        await wait_until(exited, seconds=seconds, interval=0.02, message=f"{self.label} lives on")
        code = self.process.returncode
        assert code is not None
        return code

    def kill_now(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(timeout=10)


@dataclass(slots=True)
class ChaosSystem:
    """One scenario's Herald on the private servers. Use ``open()`` and ``close()``."""

    servers: PrivateServers
    log_dir: Path
    database: str = field(default_factory=lambda: f"chaos_{uuid.uuid4().hex[:10]}")
    namespace: str = field(default_factory=lambda: f"chaos-{uuid.uuid4().hex[:8]}")
    prefix: str = field(default_factory=lambda: f"chaos:{uuid.uuid4().hex[:8]}:")
    proxies: dict[str, FaultProxy] = field(default_factory=dict)
    services: list[Service] = field(default_factory=list)
    extra_env: dict[str, str] = field(default_factory=dict)
    #: Consumers beyond the services' own whose queues the scenario declared (removed at close).
    extra_consumers: set[str] = field(default_factory=set)
    pool: asyncpg.Pool | None = None

    async def open(self) -> None:
        await self.servers.postgres.create_database(self.database, template=self.servers.template)
        self.pool = await asyncpg.create_pool(self.admin_dsn, min_size=1, max_size=4)

    async def close(self) -> None:
        for service in self.services:
            service.kill_now()
        for proxy in self.proxies.values():
            await proxy.stop()
        if self.pool is not None:
            await self.pool.close()
        await self.servers.restore()
        await self.servers.postgres.drop_database(self.database)
        # RabbitMQ 3.10: deleting quorum queues with at-least-once dead-lettering while their
        # dead-letter workers are still starting (just after the node started) crashes those
        # workers, and two crashes within 5 s stop the node's supervisor of them for good: every
        # such queue declared afterwards fails with INTERNAL_ERROR (decision 0029).
        await self.servers.rabbitmq.settled(self.servers.rabbitmq.started_at)
        await self._delete_namespace()
        client = self.servers.redis.client()
        try:
            await client.flushall()
        finally:
            await client.aclose()

    # --- where things are -------------------------------------------------------------------

    @property
    def admin_dsn(self) -> str:
        """The scenario's database, straight to the server (never through a proxy)."""
        return self.servers.postgres.dsn(self.database)

    @property
    def db(self) -> asyncpg.Pool:
        assert self.pool is not None
        return self.pool

    def _port(self, dependency: Dependency) -> int:
        if dependency in self.proxies:
            return self.proxies[dependency].port
        ports = {
            "postgres": self.servers.postgres.port,
            "redis": self.servers.redis.port,
            "rabbitmq": self.servers.rabbitmq.port,
        }
        return ports[dependency]

    def env(self) -> dict[str, str]:
        """The settings that point a service at this scenario's servers (or their proxies)."""
        return {
            **BASE_ENV,
            "HERALD_DB_DSN": f"postgresql://postgres@127.0.0.1:{self._port('postgres')}/"
            f"{self.database}",
            "HERALD_AMQP_URL": f"amqp://guest:guest@127.0.0.1:{self._port('rabbitmq')}/",
            "HERALD_AMQP_NAMESPACE": self.namespace,
            "HERALD_REDIS_URL": f"redis://127.0.0.1:{self._port('redis')}/0",
            "HERALD_REDIS_KEY_PREFIX": self.prefix,
            **self.extra_env,
        }

    def queues(self, consumer: str) -> ConsumerQueues:
        return consumer_queues(self.namespace, consumer, retry_delays=RETRY_DELAYS)

    def redis_client(self) -> redis.Redis:
        return self.servers.redis.client()

    async def proxy(self, dependency: Dependency) -> FaultProxy:
        """A fault proxy in front of ``dependency``; services started after this use it."""
        if dependency not in self.proxies:
            proxy = FaultProxy("127.0.0.1", self._port(dependency))
            await proxy.start()
            self.proxies[dependency] = proxy
        return self.proxies[dependency]

    # --- processes --------------------------------------------------------------------------

    def start_module(
        self, label: str, module: str, env: Mapping[str, str], health_port: int
    ) -> Service:
        """Start ``python -m module`` with the scenario's settings and ``env`` over them."""
        log_path = self.log_dir / f"{label}-{len(self.services)}.log"
        process = start_process(["-m", module], {**self.env(), **env}, log_path=log_path)
        service = Service(label, module, process, log_path, f"http://127.0.0.1:{health_port}")
        self.services.append(service)
        return service

    async def start_api(
        self, *, processes: int = 2, env: Mapping[str, str] | None = None
    ) -> Service:
        """``python -m herald_api`` with ``processes`` server processes on a free port."""
        port, metrics_port = free_port(), free_port()
        metrics = self.log_dir / f"api-metrics-{port}"
        service = self.start_module(
            "api",
            "herald_api",
            {
                "HERALD_API_PORT": str(port),
                "HERALD_API_PROCESSES": str(processes),
                "PROMETHEUS_MULTIPROC_DIR": str(metrics),
                "HERALD_API_METRICS_PORT": str(metrics_port),
                **(env or {}),
            },
            port,
        )
        service.metrics_url = f"http://127.0.0.1:{metrics_port}"
        await service.wait_ready()
        return service

    async def start_consumer(
        self, consumer: str, *, env: Mapping[str, str] | None = None, wait: bool = True
    ) -> Service:
        """``python -m herald_worker`` or ``herald_cache_invalidator``, health on a free port."""
        module = {"worker": "herald_worker", "cache-invalidator": "herald_cache_invalidator"}[
            consumer
        ]
        port = free_port()
        service = self.start_module(
            consumer, module, {"HERALD_CONSUMER_HEALTH_PORT": str(port), **(env or {})}, port
        )
        if wait:
            await service.wait_ready()
        return service

    async def start_all(self, *, api_processes: int = 2) -> Service:
        """The API, a worker and a cache-invalidator, started together; returns the API."""
        api, *_ = await asyncio.gather(
            self.start_api(processes=api_processes),
            self.start_consumer("worker"),
            self.start_consumer("cache-invalidator"),
        )
        return api

    def running(self, label: str) -> list[Service]:
        return [s for s in self.services if s.label == label and s.stopped is None]

    def check_services(self) -> list[str]:
        """Problems: every service meant to run is alive, and every one stopped on purpose
        with SIGTERM exited 0."""
        problems = []
        for service in self.services:
            code = service.process.poll()
            if service.stopped is None and code is not None:
                problems.append(f"{service.label} died with {code}:\n{service.log_tail(15)}")
            if service.stopped == "terminated" and code not in (0, None):
                problems.append(f"{service.label} exited with {code} after SIGTERM")
        return problems

    # --- accounts ---------------------------------------------------------------------------

    async def create_accounts(self, count: int) -> list[Account]:
        made = []
        async with self.db.acquire() as conn:
            for n in range(count):
                name = f"chaos-{n}-{uuid.uuid4().hex[:6]}"
                key = await accounts.create_key(conn, name, Role.MEMBER)
                account_id = await conn.fetchval("SELECT id FROM accounts WHERE name = $1", name)
                made.append(Account(name, account_id, key.token))
        return made

    async def subscribe(
        self, api: Service, account: Account, url: str, event_types: list[str] | None = None
    ) -> tuple[uuid.UUID, str]:
        """Register a webhook for ``account``; returns its id and signing secret."""
        async with httpx.AsyncClient(base_url=api.health_url, timeout=10) as http:
            response = await http.post(
                "/v1/webhooks",
                json={"url": url, "event_types": event_types or ["post.*"]},
                headers=account.headers,
            )
        assert response.status_code == 201, response.text
        body = response.json()
        return uuid.UUID(body["id"]), str(body["secret"])

    # --- the broker -------------------------------------------------------------------------

    async def wait_worker_progress(self, seconds: float = READY_SECONDS) -> None:
        """Wait until the worker handles an event it had not handled when this was called (a
        queue's consumer count right after a broker restart still lists the dead consumers,
        so only progress shows that consumption resumed)."""
        since = await self.db.fetchval("SELECT clock_timestamp()")

        async def progressed() -> bool:
            # Every post event is enriched in the transaction of all the worker's handlers.
            handled: bool = await self.db.fetchval(
                "SELECT EXISTS (SELECT 1 FROM posts WHERE enriched_at > $1)", since
            )
            return handled

        await wait_until(progressed, seconds=seconds, interval=0.05, message="the worker is stuck")

    async def queue_depth(self, queue: str) -> int | None:
        """Messages in ``queue`` (ready ones: with no consumer, all of them); None if absent."""
        connection = await aio_pika.connect(self.servers.rabbitmq.url, timeout=5)
        try:
            depth = await queue_depth(connection, queue)
        finally:
            await connection.close()
        return None if depth is None else depth.messages

    async def publish(self, envelopes: Sequence[EventEnvelope]) -> None:
        """Publish envelopes as the relay does: persistent, message id = event id, confirmed."""
        connection = await aio_pika.connect_robust(self.servers.rabbitmq.url, timeout=5)
        try:
            channel = await open_channel(connection)
            exchange = await channel.get_exchange(exchange_name(self.namespace), ensure=True)
            for envelope in envelopes:
                message = build_message(
                    envelope.model_dump_json().encode(),
                    message_id=envelope.id,
                    event_type=envelope.type,
                )
                await publish_confirmed(exchange, message, envelope.type, timeout=10)
        finally:
            await connection.close()

    async def _delete_namespace(self) -> None:
        connection = await aio_pika.connect(self.servers.rabbitmq.url, timeout=10)
        try:
            for consumer in (*CONSUMERS, *self.extra_consumers):
                for delays in (RETRY_DELAYS, None):
                    queues = (
                        consumer_queues(self.namespace, consumer, retry_delays=delays)
                        if delays
                        else consumer_queues(self.namespace, consumer)
                    )
                    for name in (queues.main, queues.dead_letter, *queues.retry_queues):
                        channel = await connection.channel()
                        with contextlib.suppress(aiormq.exceptions.AMQPError):
                            await channel.queue_delete(name)
                        with contextlib.suppress(aiormq.exceptions.AMQPError):
                            await channel.close()
        finally:
            await connection.close()
