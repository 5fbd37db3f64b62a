"""The outbox relay: publishes committed outbox rows to RabbitMQ and marks them published.

It runs as a background task in every process that writes events. It wakes when that process
commits a write (an in-process signal, no extra round trip: every writer calls ``wake`` after
its commit — the API's routes, the consumer's inbox transactions, the webhook delivery loop) and
on a short periodic sweep that picks up rows a crashed process left behind or a broker outage
held back. Rows are claimed with
``FOR UPDATE SKIP LOCKED``, so any number of relays work side by side without publishing a row
twice in the normal case (a crash between confirm and commit can repeat one: consumers
deduplicate by event id).

A wake-up does not claim at once: it waits ``coalesce_seconds`` (a millisecond) first, so
the commits of a burst that arrive within that window share one claim transaction and one batch
of pipelined publishes instead of paying for one each. A single event waits at most that long.

A broker outage never fails a write: rows wait in the outbox, the relay backs off behind a
circuit breaker, and the sweep drains the backlog once the broker is back. The relay owns its
connection: a plain one, made again when it is lost, each failed attempt doubling the wait
before the next (up to ``reconnect_max_seconds``) with jitter, so the relays of many processes
neither hammer a broker that is down nor come back in step.

An event no queue is bound to yet (its consumers have never started) is returned by the broker:
its row is held back with a growing delay, at most ``UNROUTABLE_MAX_DELAY_SECONDS``, and
published once a queue is bound.

The relay is a background job: ``run(stop)`` in a consuming service's ``serve``, or under
``herald_shared.background.running`` in the API's lifespan.
"""

from __future__ import annotations

import asyncio
import json
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import aio_pika
import asyncpg
import structlog
from aio_pika.abc import AbstractChannel, AbstractConnection, AbstractExchange
from opentelemetry import propagate, trace
from opentelemetry.context import Context
from opentelemetry.instrumentation.utils import suppress_instrumentation
from opentelemetry.trace import SpanKind

from herald_shared.db import Connection, borrow
from herald_shared.messaging.connection import BROKER_ERRORS, connect_once, open_channel
from herald_shared.messaging.publisher import UnroutableError, build_message, publish_confirmed
from herald_shared.messaging.topology import declare_exchange
from herald_shared.metrics import (
    OUTBOX_BACKLOG,
    OUTBOX_OLDEST_SECONDS,
    PUBLISH_CONFIRM_SECONDS,
    PUBLISHED,
)
from herald_shared.resilience import Breaker, BreakerOpenError
from herald_shared.settings import AmqpSettings, RelaySettings

_log = structlog.get_logger(__name__)
_tracer = trace.get_tracer(__name__)

_PUBLISH_FAILURES: tuple[type[BaseException], ...] = (BreakerOpenError, *BROKER_ERRORS)

_BACKLOG_EVERY_SECONDS = 5.0
#: The longest an unroutable row waits before the relay tries it again. Rows are unroutable
#: mainly before any consumer of their type has first started (consumers declare their own
#: queues): once one has, the rows it missed go out within this delay.
UNROUTABLE_MAX_DELAY_SECONDS = 60.0
_NOT_SENT = ConnectionError("not published: the batch stopped before publishing")
#: The longest closing the broker connection may take when the relay stops.
_CLOSE_SECONDS = 1.0

_CLAIM = """
    SELECT id, event_id, event_type, payload::text AS payload, headers::text AS headers,
           attempts, created_at
    FROM outbox
    WHERE published_at IS NULL AND next_attempt_at <= now()
    ORDER BY id
    LIMIT $1
    FOR UPDATE SKIP LOCKED
"""


def reconnect_delay(
    failures: int,
    *,
    initial: float,
    maximum: float,
    uniform: Callable[[float, float], float] = random.uniform,
) -> float:
    """The wait after ``failures`` failed connection attempts in a row: doubling from
    ``initial`` up to ``maximum``, then a random half to all of it (relays that lost the broker
    together do not all try again together)."""
    ceiling = min(maximum, initial * 2.0 ** min(failures - 1, 30))
    wait: float = ceiling * uniform(0.5, 1.0)
    return wait


@dataclass
class RelayStats:
    published: int = 0
    #: Claim transactions that found rows to publish.
    batches: int = 0
    unroutable: int = 0
    failed_batches: int = 0
    failed_connects: int = 0


class OutboxRelay:
    def __init__(
        self,
        pool: asyncpg.Pool,
        amqp: AmqpSettings,
        settings: RelaySettings,
        *,
        name: str,
        connect_broker: Callable[[], Awaitable[AbstractConnection]] | None = None,
        coalesce: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        """``connect_broker`` makes one attempt at a broker connection; ``coalesce`` is the
        wait after a wake-up, ``coalesce_seconds`` of sleep (tests inject both)."""
        self._pool = pool
        self._coalesce = coalesce or self._sleep_coalescing
        self._amqp = amqp
        self._settings = settings
        self._name = name
        self._connect_broker = connect_broker or (lambda: connect_once(amqp, name=f"{name}-relay"))
        self._wakeup = asyncio.Event()
        self._stopping = False
        self._connection: AbstractConnection | None = None
        self._channel: AbstractChannel | None = None
        self._exchange: AbstractExchange | None = None
        self._connect_failures = 0
        self._connect_at = float("-inf")
        self.breaker = Breaker(
            f"{name}.broker",
            fail_max=settings.breaker_failures,
            reset_timeout=settings.breaker_reset_seconds,
            counts=BROKER_ERRORS,
        )
        self.stats = RelayStats()
        self._measured_at = float("-inf")

    @property
    def connected(self) -> bool:
        """Connected, with the publishing channel open (a plain connection may outlive a channel
        the broker or a broken socket closed)."""
        connection, channel = self._connection, self._channel
        return (
            connection is not None
            and not connection.is_closed
            and channel is not None
            and not channel.is_closed
        )

    def wake(self) -> None:
        """Tell the relay a transaction with events just committed."""
        self._wakeup.set()

    async def run(self, stop: asyncio.Event) -> None:
        """Relay until ``stop`` is set; failures (broker, database or other) are retried, never
        raised. A batch in flight when ``stop`` is set is finished first."""
        self._stopping = stop.is_set()
        watcher = asyncio.create_task(self._stop_on(stop), name=f"{self._name}-relay-stop")
        try:
            while not self._stopping:
                try:
                    # Polling is not traced: each published event gets a span in the trace
                    # of the request that wrote it instead (see _publish_traced).
                    with suppress_instrumentation():
                        if self._exchange is not None and not self.connected:
                            await self._disconnect("the broker connection was lost")
                        if self._exchange is None and time.monotonic() >= self._connect_at:
                            await self._try_connect()
                        if self._exchange is not None:
                            await self.drain()
                        await self._measure_backlog()
                except Exception:
                    # Nothing else publishes the outbox: the relay must outlive any one failed
                    # sweep (a database error, a statement timeout); the rows wait for the next.
                    self.stats.failed_batches += 1
                    _log.exception("relay sweep failed", relay=self._name)
                await self._sleep_until_woken()
        finally:
            watcher.cancel()
            await self._disconnect(None)

    async def _stop_on(self, stop: asyncio.Event) -> None:
        await stop.wait()
        self._stopping = True
        self._wakeup.set()

    async def _measure_backlog(self) -> None:
        """Update the backlog gauges, at most every few seconds (a partial-index count)."""
        now = time.monotonic()
        if now - self._measured_at < _BACKLOG_EVERY_SECONDS:
            return
        self._measured_at = now
        row = await self._pool.fetchrow(
            "SELECT count(*) AS n, extract(epoch FROM now() - min(created_at)) AS age "
            "FROM outbox WHERE published_at IS NULL"
        )
        if row is not None:
            OUTBOX_BACKLOG.set(row["n"])
            OUTBOX_OLDEST_SECONDS.set(float(row["age"] or 0))

    async def _sleep_until_woken(self) -> None:
        """Until a wake-up and its coalescing window, or the next sweep. The wake-up is cleared
        only after the window, just before the claim: a commit after that sets it again."""
        try:
            async with asyncio.timeout(self._settings.sweep_interval_seconds):
                await self._wakeup.wait()
        except TimeoutError:
            pass
        else:
            if not self._stopping:
                await self._coalesce()
        self._wakeup.clear()

    async def _sleep_coalescing(self) -> None:
        if self._settings.coalesce_seconds > 0:
            await asyncio.sleep(self._settings.coalesce_seconds)

    async def _try_connect(self) -> None:
        try:
            self._connection = await self._connect_broker()
            self._channel = await open_channel(self._connection)
            self._exchange = await declare_exchange(self._channel, self._amqp.namespace)
        except BROKER_ERRORS as exc:
            self.stats.failed_connects += 1
            self._connect_failures += 1
            wait = reconnect_delay(
                self._connect_failures,
                initial=self._settings.reconnect_initial_seconds,
                maximum=self._settings.reconnect_max_seconds,
            )
            self._connect_at = time.monotonic() + wait
            _log.warning(
                "relay cannot reach the broker",
                relay=self._name,
                error=repr(exc),
                failures=self._connect_failures,
                retry_in=round(wait, 2),
            )
            await self._disconnect(None)
            return
        self._connect_failures = 0
        _log.info("relay connected", relay=self._name)

    async def _disconnect(self, reason: str | None) -> None:
        """Drop the connection (closing it within a deadline); the next loop reconnects."""
        if reason is not None:
            _log.warning("relay disconnected", relay=self._name, reason=reason)
        connection, self._connection = self._connection, None
        self._channel = self._exchange = None
        if connection is None or connection.is_closed:
            return
        try:
            async with asyncio.timeout(_CLOSE_SECONDS):
                await connection.close()
        except BROKER_ERRORS as exc:  # TimeoutError included
            _log.warning("relay connection not closed", relay=self._name, error=repr(exc))

    async def drain(self) -> int:
        """Publish batches until the outbox has nothing due; returns how many were published."""
        total = 0
        while not self._stopping and not self.breaker.is_open:
            try:
                published, claimed = await self.publish_batch()
            except BreakerOpenError:
                break
            except BROKER_ERRORS as exc:
                self.stats.failed_batches += 1
                _log.warning("relay publish failed", relay=self._name, error=repr(exc))
                break
            total += published
            if claimed < self._settings.batch_size:
                break
        return total

    async def publish_batch(self) -> tuple[int, int]:
        """Claim one batch, publish it with confirms in flight together, mark what was confirmed.

        Returns (published, claimed). Only the publishing runs under the broker's breaker, so a
        database error never counts against the broker. A broker error is raised after the rows
        that were confirmed are committed as published.
        """
        assert self._exchange is not None
        exchange = self._exchange
        timeout = self._amqp.publish_timeout_seconds
        failure: BaseException | None = None
        acquire = borrow(self._pool, self._amqp.publish_timeout_seconds)
        async with acquire as conn, conn.transaction():
            rows = await conn.fetch(_CLAIM, self._settings.batch_size)
            if not rows:
                return 0, 0
            self.stats.batches += 1
            # Until the publishes ran, nothing is confirmed.
            results: list[BaseException | None] = [_NOT_SENT] * len(rows)
            started = time.perf_counter()
            try:
                async with self.breaker.guard():
                    results = await asyncio.gather(
                        *(_publish_traced(exchange, row, timeout) for row in rows),
                        return_exceptions=True,
                    )
                    PUBLISH_CONFIRM_SECONDS.observe(time.perf_counter() - started)
                    errors = [r for r in results if isinstance(r, BaseException) and _is_failure(r)]
                    if errors:
                        raise errors[0]  # counted once by the breaker for the whole batch
            except _PUBLISH_FAILURES as exc:
                failure = exc
            confirmed = [row["id"] for row, r in zip(rows, results, strict=True) if r is None]
            unroutable = [
                row["id"]
                for row, r in zip(rows, results, strict=True)
                if isinstance(r, UnroutableError)
            ]
            if confirmed:
                await conn.execute(
                    "UPDATE outbox SET published_at = now() WHERE id = ANY($1::bigint[])",
                    confirmed,
                )
            if unroutable:
                await self._hold_back(conn, unroutable)
        self.stats.published += len(confirmed)
        PUBLISHED.labels("confirmed").inc(len(confirmed))
        PUBLISHED.labels("unroutable").inc(len(unroutable))
        PUBLISHED.labels("failed").inc(len(rows) - len(confirmed) - len(unroutable))
        if failure is not None:
            raise failure
        return len(confirmed), len(rows)

    async def _hold_back(self, conn: Connection, ids: list[int]) -> None:
        """Keep unroutable rows, retrying them with backoff so they never block later rows."""
        self.stats.unroutable += len(ids)
        _log.error("unroutable events held in the outbox", relay=self._name, count=len(ids))
        await conn.execute(
            """
            UPDATE outbox SET attempts = attempts + 1, last_error = 'unroutable',
                next_attempt_at = now()
                    + make_interval(secs => least($2::float8, 2 ^ least(attempts, 9)))
            WHERE id = ANY($1::bigint[])
            """,
            ids,
            UNROUTABLE_MAX_DELAY_SECONDS,
        )


async def _publish_traced(
    exchange: AbstractExchange,
    row: asyncpg.Record,
    timeout: float,  # noqa: ASYNC109 - passed on to publish_confirmed's deadline
) -> None:
    """Publish one row inside the trace of the request that wrote it."""
    message = _message(row)
    # A fresh context: the request's, not the relay loop's (where instrumentation is off).
    parent = propagate.extract(dict(message.headers), context=Context())
    with _tracer.start_as_current_span(
        f"outbox publish {row['event_type']}",
        context=parent,
        kind=SpanKind.PRODUCER,
        attributes={
            "messaging.system": "rabbitmq",
            "messaging.destination.name": exchange.name,
            "messaging.message.id": str(row["event_id"]),
            "herald.event_type": row["event_type"],
            "herald.outbox_id": row["id"],
        },
    ):
        # Consumers continue the trace from this span.
        propagate.inject(message.headers)
        await publish_confirmed(exchange, message, row["event_type"], timeout=timeout)


def _is_failure(result: object) -> bool:
    return isinstance(result, BaseException) and not isinstance(result, UnroutableError)


def _message(row: asyncpg.Record) -> aio_pika.Message:
    return build_message(
        row["payload"].encode(),
        message_id=row["event_id"],
        event_type=row["event_type"],
        headers=json.loads(row["headers"]),
        timestamp=row["created_at"],
    )
