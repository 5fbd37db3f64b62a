"""What the cache, rate-limit and resilience tests share: the API in-process with its lifespan
state in reach, a real cache-invalidator process, and the broker's view of its queues."""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import subprocess
import uuid
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import aio_pika
import aiormq
import httpx
from aio_pika.abc import AbstractRobustConnection
from asgi_lifespan import LifespanManager
from starlette.types import ASGIApp, Receive, Scope, Send

from herald_api.app import create_app
from herald_api.lifespan import AppState
from herald_api.settings import Settings
from herald_shared.messaging.topology import ConsumerQueues, consumer_queues
from herald_shared.settings import AmqpSettings
from tests.conftest import TEST_CONSUMERS, TEST_RETRY_DELAYS, ApiKey
from tests.support.apps import CopyStatePerRequest
from tests.support.processes import start_process, stop_process
from tests.support.waiting import wait_until

INVALIDATOR = "cache-invalidator"
INVALIDATOR_RETRY_DELAYS: tuple[float, ...] = (0.2, 0.5, 1.0)


class _CaptureLifespanState:
    """Keeps a reference to the lifespan's state dict, which the app fills at start-up."""

    def __init__(self, app: ASGIApp, into: dict[str, Any]) -> None:
        self.app = app
        self.into = into

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            self.into["state"] = scope["state"]
        await self.app(scope, receive, send)


def http_client(app: ASGIApp, client_ip: str) -> httpx.AsyncClient:
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False, client=(client_ip, 50_000))
    return httpx.AsyncClient(transport=transport, base_url="http://herald.test")


@dataclass(frozen=True, slots=True)
class RunningApi:
    http: httpx.AsyncClient
    #: The app's own clients (pool, Redis breaker, ...), for observing it from outside.
    state: AppState
    app: ASGIApp

    def client_from(self, client_ip: str) -> httpx.AsyncClient:
        """Another client of the same app, connecting from ``client_ip``."""
        return http_client(self.app, client_ip)


@contextlib.asynccontextmanager
async def running_api(
    settings: Settings, *, client_ip: str = "127.0.0.1"
) -> AsyncIterator[RunningApi]:
    """The API in-process (per-request state, as uvicorn gives), seen from ``client_ip``."""
    app = create_app(settings)
    app.add_middleware(CopyStatePerRequest)
    captured: dict[str, Any] = {}
    app.add_middleware(_CaptureLifespanState, into=captured)
    async with LifespanManager(app) as manager, http_client(manager.app, client_ip) as http:
        yield RunningApi(http, captured["state"]["herald"], manager.app)


async def create_published(http: httpx.AsyncClient, key: ApiKey, **fields: Any) -> dict[str, Any]:
    payload = {"title": "A title", "body": "A body", "status": "published"} | fields
    response = await http.post("/v1/posts", json=payload, headers=key.headers)
    assert response.status_code == 201, response.text
    post: dict[str, Any] = response.json()
    return post


def version_of(response: httpx.Response) -> int:
    """The post version a response carries, from its ETag (``"7"``, or ``"7-e"`` enriched)."""
    return int(response.headers["ETag"].strip('"').split("-")[0])


@dataclass(frozen=True, slots=True)
class QueueDepth:
    messages: int
    consumers: int


class BrokerView:
    """Passive declares: how many messages wait in a queue and how many consume it."""

    def __init__(self, connection: AbstractRobustConnection, namespace: str) -> None:
        self._connection = connection
        self.namespace = namespace

    @classmethod
    @contextlib.asynccontextmanager
    async def open(cls, amqp: AmqpSettings) -> AsyncIterator[BrokerView]:
        connection = await aio_pika.connect_robust(amqp.url.get_secret_value())
        try:
            yield cls(connection, amqp.namespace)
        finally:
            await connection.close()

    def invalidator_queues(self) -> ConsumerQueues:
        return consumer_queues(self.namespace, INVALIDATOR, retry_delays=INVALIDATOR_RETRY_DELAYS)

    async def depth(self, queue: str) -> QueueDepth | None:
        channel = await self._connection.channel()
        try:
            declared = await channel.declare_queue(queue, passive=True)
        except aiormq.exceptions.ChannelNotFoundEntity:
            return None
        result = declared.declaration_result
        with contextlib.suppress(aiormq.exceptions.AMQPError):
            await channel.close()
        return QueueDepth(result.message_count or 0, result.consumer_count or 0)

    async def waiting(self) -> int:
        """Messages waiting for the invalidator: in its queue and its retry queues."""
        queues = self.invalidator_queues()
        total = 0
        for name in (queues.main, *queues.retry_queues):
            depth = await self.depth(name)
            total += depth.messages if depth is not None else 0
        return total

    async def dead_letters(self) -> int:
        depth = await self.depth(self.invalidator_queues().dead_letter)
        return depth.messages if depth is not None else 0

    async def wait_drained(self, seconds: float = 20.0) -> None:
        async def drained() -> bool:
            return await self.waiting() == 0

        await wait_until(
            drained,
            seconds=seconds,
            interval=0.05,
            message="the invalidator's queues never drained",
        )


@dataclass(slots=True)
class InvalidatorProcess:
    process: subprocess.Popen[bytes]
    log_path: Path

    def log_lines(self) -> list[dict[str, Any]]:
        """The JSON log records written so far."""
        records = []
        with contextlib.suppress(FileNotFoundError):
            for line in self.log_path.read_text(errors="replace").splitlines():
                with contextlib.suppress(ValueError):
                    records.append(json.loads(line))
        return records

    def log_tail(self, lines: int = 30) -> str:
        with contextlib.suppress(FileNotFoundError):
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        return "(no log)"

    def check_running(self) -> None:
        code = self.process.poll()
        if code is not None:
            raise AssertionError(f"the cache-invalidator exited with {code}:\n{self.log_tail()}")

    async def stop(self) -> int:
        if self.process.poll() is not None:
            return self.process.returncode
        return await asyncio.to_thread(stop_process, self.process, 15.0)


@contextlib.asynccontextmanager
async def running_invalidator(
    broker: BrokerView,
    amqp: AmqpSettings,
    *,
    redis_url: str,
    redis_prefix: str,
    log_dir: Path,
    env: Mapping[str, str] | None = None,
) -> AsyncIterator[InvalidatorProcess]:
    """The real ``herald_cache_invalidator`` process, consuming the run's namespace."""
    TEST_CONSUMERS.add(INVALIDATOR)
    TEST_RETRY_DELAYS.add(INVALIDATOR_RETRY_DELAYS)
    log_path = log_dir / f"cache-invalidator-{uuid.uuid4().hex[:6]}.log"
    process = start_process(
        ["-m", "herald_cache_invalidator"],
        env={
            "HERALD_AMQP_URL": amqp.url.get_secret_value(),
            "HERALD_AMQP_NAMESPACE": amqp.namespace,
            "HERALD_REDIS_URL": redis_url,
            "HERALD_REDIS_KEY_PREFIX": redis_prefix,
            "HERALD_LOG_LEVEL": "WARNING",
            "HERALD_LOG_JSON": "true",
            "HERALD_CONSUMER_RETRY_DELAYS_SECONDS": json.dumps(list(INVALIDATOR_RETRY_DELAYS)),
            **(env or {}),
        },
        log_path=log_path,
    )
    invalidator = InvalidatorProcess(process, log_path)
    try:
        main_queue = broker.invalidator_queues().main

        async def consuming() -> bool:
            invalidator.check_running()
            depth = await broker.depth(main_queue)
            return depth is not None and depth.consumers >= 1

        await wait_until(
            consuming, seconds=30, interval=0.05, message="the cache-invalidator never consumed"
        )
        yield invalidator
    finally:
        await invalidator.stop()


class HoldingProxy:
    """A TCP proxy that can hold back the server's answers (the client's requests still reach
    the server): a query runs, but its result arrives only on ``release()``. With ``latency``
    every answer also arrives that many seconds late."""

    def __init__(self, target_host: str, target_port: int, *, latency: float = 0.0) -> None:
        self.target = (target_host, target_port)
        self.latency = latency
        self.port = 0
        self._server: asyncio.Server | None = None
        self._flowing = asyncio.Event()
        self._flowing.set()
        self._tasks: set[asyncio.Task[None]] = set()
        self._writers: set[asyncio.StreamWriter] = set()

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        self._flowing.set()
        if self._server is not None:
            self._server.close()
        for writer in list(self._writers):
            writer.transport.abort()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._server is not None:
            await self._server.wait_closed()

    def hold(self) -> None:
        self._flowing.clear()

    def release(self) -> None:
        self._flowing.set()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection(*self.target)
        self._writers.update((writer, up_writer))
        for src, dst, held in ((reader, up_writer, False), (up_reader, writer, True)):
            task = asyncio.create_task(self._pipe(src, dst, held))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _pipe(self, src: asyncio.StreamReader, dst: asyncio.StreamWriter, held: bool) -> None:
        try:
            while data := await src.read(65536):
                if held:
                    await self._flowing.wait()
                    if self.latency:
                        await asyncio.sleep(self.latency)
                dst.write(data)
                await dst.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            with contextlib.suppress(Exception):
                dst.close()


@contextlib.asynccontextmanager
async def holding_proxy(
    target_host: str, target_port: int, *, latency: float = 0.0
) -> AsyncIterator[HoldingProxy]:
    proxy = HoldingProxy(target_host, target_port, latency=latency)
    await proxy.start()
    try:
        yield proxy
    finally:
        await proxy.stop()


def with_port(dsn: str, port: int) -> str:
    """``dsn`` (a postgresql:// URL on 127.0.0.1) pointing at another local port."""
    parts = urlsplit(dsn)
    netloc = parts.netloc.rsplit("@", 1)
    host = f"127.0.0.1:{port}"
    return urlunsplit(parts._replace(netloc=f"{netloc[0]}@{host}" if len(netloc) == 2 else host))


#: Lines the tests measured, repeated in the terminal summary of every run (see conftest).
MEASUREMENTS: list[str] = []


def report(line: str) -> None:
    """Print a measurement (seen with ``-s``) and keep it for the terminal summary."""
    print(line)
    MEASUREMENTS.append(line)


def percentile(values: list[float], fraction: float) -> float:
    """Nearest-rank percentile of ``values`` (not empty)."""
    ordered = sorted(values)
    return ordered[max(1, math.ceil(fraction * len(ordered))) - 1]
