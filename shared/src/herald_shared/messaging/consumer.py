"""The consumer runtime: decode, dispatch, deduplicate, ack, retry or dead-letter.

Every consuming service (worker, cache-invalidator) is this runtime plus a table of handlers.
Per message:

1. decode the envelope; an undecodable message goes to the dead-letter queue at once;
2. find the handler for its type (no handler: ack and move on);
3. run it under its timeout, inside the inbox transaction when it uses one; a transient error
   is retried in-process a few times (tenacity, jitter);
4. on success ack; on a permanent error dead-letter; on a still-failing transient error publish
   to the next retry queue (its TTL brings the message back) or, after the last, dead-letter;
   on "dependency unavailable" (an open breaker) reschedule without spending an attempt and
   pause intake.

Re-publishing to a retry or dead-letter queue is confirmed before the original is acked, so a
crash in between can only duplicate a message, which the inbox absorbs.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any

import structlog
from aio_pika.abc import (
    AbstractChannel,
    AbstractIncomingMessage,
    AbstractQueue,
    AbstractRobustConnection,
)
from opentelemetry import propagate, trace
from opentelemetry.instrumentation.utils import suppress_instrumentation
from opentelemetry.trace import Status, StatusCode
from pydantic import ValidationError

from herald_shared.db import UNAVAILABLE_ERRORS, Database
from herald_shared.events import EventEnvelope
from herald_shared.messaging import inbox
from herald_shared.messaging.connection import BROKER_ERRORS, connect, open_channel
from herald_shared.messaging.handlers import (
    Delivery,
    DependencyUnavailableError,
    HandlerSpec,
    HandlerTimeoutError,
    PermanentError,
    TransientError,
)
from herald_shared.messaging.headers import (
    attempts_of,
    dead_letter_headers,
    deferral_headers,
    deferrals_of,
    retry_headers,
)
from herald_shared.messaging.publisher import UnroutableError, build_message, publish_confirmed
from herald_shared.messaging.topology import (
    ConsumerQueues,
    consumer_queues,
    declare_all,
    declare_consumer,
)
from herald_shared.metrics import (
    CONSUMED,
    DB_POOL_IN_USE,
    DB_POOL_SIZE,
    HANDLER_SECONDS,
    QUEUE_DEPTH,
)
from herald_shared.resilience import BreakerOpenError, RetryPolicy, retry_transient
from herald_shared.settings import AmqpSettings, ConsumerSettings

_log = structlog.get_logger(__name__)
_tracer = trace.get_tracer(__name__)

TRANSIENT_ERRORS: tuple[type[BaseException], ...] = (TransientError, *UNAVAILABLE_ERRORS)
#: A dependency is down, not this event at fault: reschedule without spending an attempt, so an
#: outage (of PostgreSQL too) never pushes events into the dead-letter queue.
_DEFERRING_ERRORS: tuple[type[BaseException], ...] = (
    DependencyUnavailableError,
    BreakerOpenError,
    *UNAVAILABLE_ERRORS,
)


class Consumer:
    def __init__(
        self,
        name: str,
        handlers: Sequence[HandlerSpec],
        *,
        db: Database | None,
        amqp: AmqpSettings,
        settings: ConsumerSettings,
        after_commit: Callable[[], None] | None = None,
    ) -> None:
        """``handlers`` may hold several specs for one event type: they run in order, in one
        inbox transaction when any of them uses the inbox. ``after_commit`` is called after
        each committed inbox transaction (e.g. to wake an outbox relay)."""
        if any(spec.uses_inbox for spec in handlers) and db is None:
            raise ValueError("handlers that use the inbox need a database")
        self.name = inbox.check_consumer_name(name)
        self.queues: ConsumerQueues = consumer_queues(
            amqp.namespace,
            name,
            retry_delays=settings.retry_delays_seconds,
            quorum=amqp.quorum_queues,
        )
        self._handlers: dict[str, list[HandlerSpec]] = {}
        for spec in handlers:
            self._handlers.setdefault(spec.event_type, []).append(spec)
        self._after_commit = after_commit
        self._db = db
        self._amqp = amqp
        self._settings = settings
        self._slots = asyncio.Semaphore(settings.concurrency)
        self._inflight: set[asyncio.Task[Any]] = set()
        self._stopping = False
        self._resume_at = 0.0
        self._channel: AbstractChannel | None = None
        # Strong references: aio-pika restores consumers through weak ones.
        self._connection: AbstractRobustConnection | None = None
        self._queue: AbstractQueue | None = None
        self._in_process = RetryPolicy(
            attempts=settings.in_process_attempts,
            initial_delay=0.05,
            max_delay=1.0,
            retry_on=TRANSIENT_ERRORS,
        )
        self.ready = asyncio.Event()

    async def run(self, stop: asyncio.Event) -> None:
        """Consume until ``stop`` is set, then drain in-flight handlers within the grace period."""
        self._connection = await connect(self._amqp, name=f"herald-{self.name}")
        try:
            channel = await open_channel(self._connection)
            self._channel = channel
            await channel.set_qos(prefetch_count=self._settings.prefetch)
            await declare_all(channel, self._amqp.namespace, quorum=self._amqp.quorum_queues)
            await declare_consumer(channel, self.queues)
            self._queue = await channel.get_queue(self.queues.main, ensure=True)
            tag = await self._queue.consume(self._on_message)
            _log.info("consuming", consumer=self.name, queue=self.queues.main)
            self.ready.set()
            await stop.wait()
            await self._shutdown(tag)
        finally:
            await self._connection.close()

    async def is_ready(self) -> bool:
        """Consuming, with the connection up (a probe for ``/readyz``)."""
        connection = self._connection
        return (
            self.ready.is_set()
            and not self._stopping
            and connection is not None
            and not connection.is_closed
        )

    async def refresh_metrics(self) -> None:
        """Update the queue-depth gauges (called when metrics are scraped)."""
        if self._connection is None or self._connection.is_closed:
            return
        with suppress_instrumentation():
            await self._refresh_metrics(self._connection)

    async def _refresh_metrics(self, connection: AbstractRobustConnection) -> None:
        for name in (self.queues.main, self.queues.dead_letter, *self.queues.retry_queues):
            with contextlib.suppress(*BROKER_ERRORS):
                channel = await connection.channel()
                try:
                    queue = await channel.declare_queue(name, passive=True)
                    QUEUE_DEPTH.labels(name).set(queue.declaration_result.message_count or 0)
                finally:
                    await channel.close()
        if self._db is not None:
            for label, pool in (("primary", self._db.primary), ("replica", self._db.replica)):
                DB_POOL_SIZE.labels(label).set(pool.get_size())
                DB_POOL_IN_USE.labels(label).set(pool.get_size() - pool.get_idle_size())

    async def _shutdown(self, tag: str) -> None:
        self._stopping = True
        assert self._queue is not None
        with contextlib.suppress(*BROKER_ERRORS):
            await self._queue.cancel(tag)
        pending = set(self._inflight)
        if pending:
            _log.info("draining in-flight handlers", consumer=self.name, count=len(pending))
            _, still = await asyncio.wait(pending, timeout=self._settings.shutdown_grace_seconds)
            for task in still:
                task.cancel()
            if still:
                await asyncio.wait(still, timeout=5)
        _log.info("consumer stopped", consumer=self.name)

    async def _on_message(self, message: AbstractIncomingMessage) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._inflight.add(task)
        try:
            async with self._slots:
                if self._stopping:
                    await message.nack(requeue=True)
                    return
                await self._wait_if_paused()
                await self._process(message)
        except asyncio.CancelledError:
            # Shutdown ran out of grace: hand the message back for another consumer.
            with contextlib.suppress(*BROKER_ERRORS):
                await asyncio.shield(message.nack(requeue=True))
            raise
        except BROKER_ERRORS as exc:
            # The channel broke while settling: the broker redelivers unacked messages.
            _log.warning("could not settle message", consumer=self.name, error=repr(exc))
        except UnroutableError as exc:
            # A retry or dead-letter queue is missing (deleted by hand?): keep the message in
            # its queue, and give the operator time to redeclare before it comes back.
            _log.error("retry or dead-letter queue missing", consumer=self.name, error=repr(exc))
            self._pause(self._settings.pause_seconds)
            with contextlib.suppress(*BROKER_ERRORS):
                await message.nack(requeue=True)
        finally:
            self._inflight.discard(task)

    async def _wait_if_paused(self) -> None:
        loop = asyncio.get_running_loop()
        delay = self._resume_at - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)

    def _pause(self, seconds: float) -> None:
        loop = asyncio.get_running_loop()
        self._resume_at = max(self._resume_at, loop.time() + seconds)

    async def _process(self, message: AbstractIncomingMessage) -> None:
        previous_attempts = attempts_of(message)
        try:
            envelope = EventEnvelope.model_validate_json(message.body)
        except ValidationError as exc:
            await self._dead_letter(message, exc, previous_attempts + 1, "undecodable message")
            return
        specs = self._handlers.get(envelope.type)
        if not specs:
            await message.ack()
            return
        log = _log.bind(consumer=self.name, event_id=str(envelope.id), event_type=envelope.type)
        attempt = previous_attempts + 1
        with (
            structlog.contextvars.bound_contextvars(event_id=str(envelope.id)),
            _tracer.start_as_current_span(
                f"handle {envelope.type}",
                attributes={
                    "herald.consumer": self.name,
                    "herald.event_type": envelope.type,
                    "herald.event_id": str(envelope.id),
                    "herald.aggregate_id": str(envelope.aggregate_id),
                    "herald.attempt": attempt,
                    "messaging.destination.name": self.queues.main,
                },
            ) as span,
        ):
            started = time.perf_counter()
            outcome = await self._dispatch(
                message, specs, envelope, attempt, previous_attempts, log
            )
            span.set_attribute("herald.outcome", outcome)
            log.info(
                "event handled",
                outcome=outcome,
                attempt=attempt,
                duration_ms=round((time.perf_counter() - started) * 1000, 2),
            )
            if outcome != "ok":
                span.set_status(Status(StatusCode.ERROR, outcome))
        CONSUMED.labels(self.queues.main, outcome).inc()

    async def _dispatch(
        self,
        message: AbstractIncomingMessage,
        specs: list[HandlerSpec],
        envelope: EventEnvelope,
        attempt: int,
        previous_attempts: int,
        log: structlog.stdlib.BoundLogger,
    ) -> str:
        """Run the handlers and settle the message; returns the outcome for metrics and spans."""
        started = time.perf_counter()
        try:
            await retry_transient(
                lambda: self._invoke(specs, envelope, attempt),
                policy=self._in_process,
                log_name=f"{self.name}:{envelope.type}",
            )
        except _DEFERRING_ERRORS as exc:
            if deferrals_of(message) < self._settings.max_deferrals:
                retry_after = getattr(exc, "retry_after", None) or self._settings.pause_seconds
                log.warning(
                    "dependency unavailable; rescheduling", error=str(exc), pause=retry_after
                )
                self._pause(retry_after)
                headers = deferral_headers(message, exc, previous_attempts)
                await self._republish(message, self.queues.retry(0), headers)
                return "deferred"
            return await self._retry_or_dead_letter(message, exc, attempt, log)
        except PermanentError as exc:
            log.error("permanent failure", error=repr(exc))
            await self._dead_letter(message, exc, attempt, "permanent error")
            return "dead_lettered"
        except Exception as exc:
            return await self._retry_or_dead_letter(message, exc, attempt, log)
        finally:
            HANDLER_SECONDS.labels(self.name, envelope.type).observe(time.perf_counter() - started)
        await message.ack()
        return "ok"

    async def _retry_or_dead_letter(
        self,
        message: AbstractIncomingMessage,
        error: BaseException,
        attempt: int,
        log: structlog.stdlib.BoundLogger,
    ) -> str:
        if attempt > len(self.queues.retry_delays):
            log.error("retries exhausted", error=repr(error), attempts=attempt)
            await self._dead_letter(message, error, attempt, "retries exhausted")
            return "dead_lettered"
        log.warning("handler failed; retrying later", error=repr(error), attempt=attempt)
        headers = retry_headers(message, error, attempt)
        await self._republish(message, self.queues.retry(attempt - 1), headers)
        return "retried"

    async def _invoke(
        self, specs: list[HandlerSpec], envelope: EventEnvelope, attempt: int
    ) -> None:
        timeout = max(
            spec.timeout_seconds or self._settings.handler_timeout_seconds for spec in specs
        )
        try:
            async with asyncio.timeout(timeout) as deadline:
                await self._run_handlers(specs, envelope, attempt)
        except TimeoutError as exc:
            if deadline.expired():
                raise HandlerTimeoutError(f"handlers ran past {timeout} s") from exc
            raise  # a dependency's own timeout: unavailable, not this event's fault

    async def _run_handlers(
        self, specs: list[HandlerSpec], envelope: EventEnvelope, attempt: int
    ) -> None:
        if not any(spec.uses_inbox for spec in specs):
            delivery = Delivery(self.name, envelope.id, attempt, None)
            for spec in specs:
                await spec.handle(envelope, delivery)
            return
        assert self._db is not None
        async with self._db.writer() as conn:
            if not await inbox.open_inbox(conn, self.name, envelope.id):
                await inbox.rollback(conn)
                _log.info("duplicate event skipped", consumer=self.name, event_id=str(envelope.id))
                return
            delivery = Delivery(self.name, envelope.id, attempt, conn)
            try:
                for spec in specs:
                    await spec.handle(envelope, delivery)
            except BaseException:
                await inbox.rollback(conn)
                raise
            await inbox.commit(conn)
        if self._after_commit is not None:
            self._after_commit()

    async def _dead_letter(
        self, message: AbstractIncomingMessage, error: BaseException, attempts: int, reason: str
    ) -> None:
        headers = dead_letter_headers(message, error, attempts, reason, self.queues.main)
        await self._republish(message, self.queues.dead_letter, headers)

    async def _republish(
        self, message: AbstractIncomingMessage, queue: str, headers: dict[str, Any]
    ) -> None:
        assert self._channel is not None
        propagate.inject(headers)  # the retry continues the trace from this attempt
        copy = build_message(
            message.body,
            message_id=message.message_id or "",
            event_type=message.type or "",
            headers=headers,
            timestamp=message.timestamp or datetime.now(UTC),
        )
        await publish_confirmed(
            self._channel.default_exchange, copy, queue, timeout=self._amqp.publish_timeout_seconds
        )
        await message.ack()
