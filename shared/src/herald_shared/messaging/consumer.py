"""The consumer runtime: one service's queue, consumed until stop, each message handled once.

Every consuming service (worker, cache-invalidator) is this runtime plus a ``HandlerTable``.
At start it declares the service's own queues, binding the main queue to the table's event
types. Per message:

1. decode the envelope and find the handlers of its type and schema version; a message that
   does not decode, or that has no handler (it came through an old binding, say), goes to the
   dead-letter queue with the reason recorded — nothing is acknowledged unhandled;
2. run the handlers (``dispatch``: deadline, inbox transaction, in-process retries);
3. decide what the outcome means (``failures.decide``: ack, retry, defer, dead-letter) and carry
   it out (``settlement``); a deferral also pauses intake. Acks, asked for once the effects are
   committed, go out in batches (``acks``).

Intake (``intake``) is bounded by ``concurrency`` handlers in flight and paused while a dependency
is down; on stop, consuming is cancelled and the handlers in flight get the grace period to
finish, after which the rest go back to the queue. Every step of stopping has a deadline, so a
process stops within its grace period plus a few seconds whatever the broker does (a robust
channel would otherwise wait for a lost connection to come back); so do the metrics scrape and
the readiness probe.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from typing import Any, cast

import aio_pika
import aiormq
import structlog
from aio_pika.abc import (
    AbstractIncomingMessage,
    AbstractQueue,
    AbstractRobustChannel,
    AbstractRobustConnection,
)
from opentelemetry import trace
from opentelemetry.instrumentation.utils import suppress_instrumentation
from opentelemetry.trace import Status, StatusCode
from pydantic import ValidationError

from herald_shared.background import finish
from herald_shared.db import Database
from herald_shared.events import EventEnvelope
from herald_shared.messaging import inbox
from herald_shared.messaging.acks import Acks
from herald_shared.messaging.connection import BROKER_ERRORS, connect, open_channel
from herald_shared.messaging.depth import DepthProbe
from herald_shared.messaging.dispatch import Dispatcher
from herald_shared.messaging.failures import (
    PERMANENT_ERROR,
    UNDECODABLE,
    UNHANDLED,
    DeadLetter,
    Decision,
    Defer,
    HeldBackError,
    Retry,
    UnhandledEventError,
    decide,
)
from herald_shared.messaging.handlers import HandlerTable, event_of
from herald_shared.messaging.headers import attempts_of
from herald_shared.messaging.intake import HeldTooLongError, Intake, Ticket
from herald_shared.messaging.labels import ConsumerMetrics
from herald_shared.messaging.publisher import UnroutableError
from herald_shared.messaging.settlement import Settlement
from herald_shared.messaging.topology import ConsumerQueues, consumer_queues, declare_consumer
from herald_shared.metrics import (
    DB_POOL_IN_USE,
    DB_POOL_SIZE,
    QUEUE_DEPTH,
    UNHANDLED_MESSAGES,
)
from herald_shared.settings import AmqpSettings, ConsumerSettings
from herald_shared.telemetry import tracing_enabled

_log = structlog.get_logger(__name__)
_std_log = logging.getLogger(__name__)
_tracer = trace.get_tracer(__name__)


#: The longest a metrics scrape waits for the broker's queue depths (it keeps the last ones).
METRICS_DEADLINE_SECONDS = 2.0
#: The longest closing the broker connection may take when stopping.
CLOSE_SECONDS = 1.0


class Consumer:
    def __init__(
        self,
        name: str,
        handlers: HandlerTable,
        *,
        db: Database | None,
        amqp: AmqpSettings,
        settings: ConsumerSettings,
        after_commit: Callable[[], None] | None = None,
    ) -> None:
        """``after_commit`` is called after each committed handlers' transaction (e.g. to wake an
        outbox relay)."""
        if handlers.uses_database and db is None:
            raise ValueError("handlers that take a transaction need a database")
        self.name = inbox.check_consumer_name(name)
        self.queues: ConsumerQueues = consumer_queues(
            amqp.namespace,
            name,
            retry_delays=settings.retry_delays_seconds,
            quorum=amqp.quorum_queues,
            delivery_limit=settings.delivery_limit,
            at_least_once=amqp.at_least_once_dead_lettering,
        )
        self._handlers = handlers
        self._dispatcher = Dispatcher(name, db=db, settings=settings, after_commit=after_commit)
        self._db = db
        self._amqp = amqp
        self._settings = settings
        self._intake = Intake(
            settings.concurrency,
            max_pause=settings.max_pause_seconds,
            max_hold=settings.max_hold_seconds,
        )
        self._inflight: set[asyncio.Task[Any]] = set()
        self._stopping = False
        self._settlement: Settlement | None = None
        # Done deliveries held behind one still in flight: a quarter of the prefetch, so the
        # broker keeps sending while a slow handler runs.
        self._acks = Acks(max_held=max(1, settings.prefetch // 4))
        self._metrics = ConsumerMetrics(name, self.queues.main)
        # Strong references: aio-pika restores consumers through weak ones.
        self._connection: AbstractRobustConnection | None = None
        self._channel: AbstractRobustChannel | None = None
        self._queue: AbstractQueue | None = None
        self._tag: str | None = None
        self._depths: DepthProbe | None = None
        self.ready = asyncio.Event()

    async def run(self, stop: asyncio.Event) -> None:
        """Consume until ``stop`` is set, then drain in-flight handlers within the grace period."""
        self._connection = await connect(self._amqp, name=f"herald-{self.name}")
        self._depths = DepthProbe(self._connection, timeout=METRICS_DEADLINE_SECONDS)
        try:
            channel = self._channel = await open_channel(self._connection)
            await channel.set_qos(prefetch_count=self._settings.prefetch)
            await declare_consumer(channel, self.queues, bindings=self._handlers.event_types)
            self._settlement = Settlement(
                channel,
                self.queues,
                acks=self._acks,
                publish_timeout=self._amqp.publish_timeout_seconds,
            )
            self._queue = await channel.get_queue(self.queues.main, ensure=True)
            self._tag = await self._queue.consume(self._on_message)
            _log.info("consuming", consumer=self.name, queue=self.queues.main)
            self.ready.set()
            await stop.wait()
            await self._shutdown(self._queue, self._tag)
        finally:
            await self._close()

    async def is_ready(self) -> bool:
        """Consuming: the channel open, and the broker's consumer for the queue registered on it
        (a probe for ``/readyz``; no round trip). A channel restored without its consumer, or a
        consumer the broker cancelled, is not ready."""
        channel = self._channel
        if not self.ready.is_set() or self._stopping or channel is None or channel.is_closed:
            return False
        try:
            underlay = await channel.get_underlay_channel()
        except aio_pika.exceptions.ChannelInvalidStateError:
            return False
        # aio-pika's own consumer restore reads the same table (aiormq's concrete channel).
        consumers = cast(aiormq.Channel, underlay).consumers
        return not underlay.is_closed and self._tag in consumers

    async def refresh_metrics(self) -> None:
        """Update the queue-depth and pool gauges (called when metrics are scraped). The depths
        are read within ``METRICS_DEADLINE_SECONDS``; when the broker cannot answer in time the
        gauges keep the last depths read."""
        if self._depths is not None:
            names = [self.queues.main, self.queues.dead_letter, *self.queues.retry_queues]
            try:
                with suppress_instrumentation():
                    depths = await self._depths.depths(names)
            except BROKER_ERRORS as exc:
                _log.warning("queue depths not read", consumer=self.name, error=repr(exc))
            else:
                for name, depth in depths.items():
                    QUEUE_DEPTH.labels(name).set(depth.messages if depth else 0)
        if self._db is not None:
            for label, pool in (("primary", self._db.primary), ("replica", self._db.replica)):
                DB_POOL_SIZE.labels(label).set(pool.get_size())
                DB_POOL_IN_USE.labels(label).set(pool.get_size() - pool.get_idle_size())

    async def _shutdown(self, queue: AbstractQueue, tag: str) -> None:
        """Stop deliveries and drain, all within the grace period: cancelling the consumer waits
        for the broker's answer, which a robust channel whose connection is lost would wait for
        until it comes back."""
        self._stopping = True
        self._intake.close()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._settings.shutdown_grace_seconds
        try:
            async with asyncio.timeout_at(deadline):
                await queue.cancel(tag)
        except BROKER_ERRORS as exc:  # TimeoutError included
            _log.warning("could not cancel consuming", consumer=self.name, error=repr(exc))
        if self._inflight:
            _log.info("draining in-flight handlers", consumer=self.name, count=len(self._inflight))
            await finish(self._inflight, grace=max(deadline - loop.time(), 0.0))
        try:
            async with asyncio.timeout(CLOSE_SECONDS):
                await self._acks.flush()
        except TimeoutError:
            _log.warning("acks not sent before closing", consumer=self.name)
        _log.info("consumer stopped", consumer=self.name)

    async def _close(self) -> None:
        if self._depths is not None:
            await self._depths.close()
        if self._connection is None:
            return
        try:
            async with asyncio.timeout(CLOSE_SECONDS):
                await self._connection.close()
        except BROKER_ERRORS as exc:  # TimeoutError included
            _log.warning("broker connection not closed", consumer=self.name, error=repr(exc))

    async def _on_message(self, message: AbstractIncomingMessage) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._inflight.add(task)
        self._acks.delivered(message)
        arrived = asyncio.get_running_loop().time()
        try:
            async with self._intake.admit(arrived) as ticket:
                if self._stopping:
                    await self._nack(message)
                    return
                try:
                    await self._process(message, ticket)
                except UnroutableError as exc:
                    # A retry or dead-letter queue is missing (deleted by hand?): keep the
                    # message in its queue, and give the operator time to redeclare before it
                    # comes back.
                    _log.error(
                        "retry or dead-letter queue missing", consumer=self.name, error=repr(exc)
                    )
                    self._intake.deferred(ticket, self._settings.pause_seconds)
                    with contextlib.suppress(*BROKER_ERRORS):
                        await self._nack(message)
        except HeldTooLongError:
            await self._put_back(message)
        except asyncio.CancelledError:
            # Shutdown ran out of grace: hand the message back for another consumer.
            with contextlib.suppress(*BROKER_ERRORS):
                await asyncio.shield(self._nack(message))
            raise
        except BROKER_ERRORS as exc:
            # The channel broke while settling: the broker redelivers unacked messages.
            _log.warning("could not settle message", consumer=self.name, error=repr(exc))
            self._acks.forget(message)
        except UnroutableError as exc:
            _log.error("retry queue missing", consumer=self.name, error=repr(exc))
            with contextlib.suppress(*BROKER_ERRORS):
                await self._nack(message)
        finally:
            self._inflight.discard(task)

    async def _nack(self, message: AbstractIncomingMessage) -> None:
        """Hand the message back to the queue at once (never batched)."""
        try:
            await message.nack(requeue=True)
        finally:
            self._acks.forget(message)

    async def _put_back(self, message: AbstractIncomingMessage) -> None:
        """Re-publish a message that waited its longest hold at paused intake, unrun and without
        spending an attempt (see ``intake``)."""
        _log.info(
            "held back while a dependency is down; putting it back",
            consumer=self.name,
            message_id=message.message_id,
        )
        error = HeldBackError(f"held back {self._settings.max_hold_seconds} s by paused intake")
        await self._settle(message, Defer(0.0, attempts_of(message)), error)

    async def _process(self, message: AbstractIncomingMessage, ticket: Ticket) -> None:
        attempt = attempts_of(message) + 1
        try:
            envelope = EventEnvelope.model_validate_json(message.body)
            route = self._handlers.route(envelope.type, envelope.schema_version)
            if route is None:
                await self._unhandled(message, envelope, attempt)
                return
            payload = route.model.model_validate(envelope.data)
        except ValidationError as exc:
            _log.error(
                "undecodable message; dead-lettering it",
                consumer=self.name,
                message_id=message.message_id,
                error=repr(exc),
            )
            await self._settle(message, DeadLetter(UNDECODABLE, attempt), exc)
            return
        event = event_of(envelope, payload, attempt)
        event_id = str(event.id)
        # Tracing off, a message opens no span at all (not even a non-recording one).
        span_scope = (
            _tracer.start_as_current_span(
                f"handle {event.type}",
                attributes={
                    "herald.consumer": self.name,
                    "herald.event_type": event.type,
                    "herald.event_id": event_id,
                    "herald.aggregate_id": str(event.aggregate_id),
                    "herald.attempt": attempt,
                    "messaging.destination.name": self.queues.main,
                },
            )
            if tracing_enabled()
            else contextlib.nullcontext(trace.INVALID_SPAN)
        )
        with structlog.contextvars.bound_contextvars(event_id=event_id), span_scope as span:
            started = time.perf_counter()
            error: Exception | None = None
            try:
                await self._dispatcher.dispatch(route, event)
            except Exception as exc:
                error = exc
            finally:
                self._metrics.handler_seconds(event.type).observe(time.perf_counter() - started)
            decision = decide(error, attempt=attempt, settings=self._settings)
            if error is not None:
                log = _log.bind(consumer=self.name, event_id=event_id, event_type=event.type)
                _log_decision(log, decision, error)
            if isinstance(decision, Defer):
                self._intake.deferred(ticket, decision.pause_seconds)
            else:
                self._intake.done(ticket)
            await self._settle(message, decision, error)
            span.set_attribute("herald.outcome", decision.outcome)
            if _std_log.isEnabledFor(logging.INFO):
                _log.info(
                    "event handled",
                    consumer=self.name,
                    event_id=event_id,
                    event_type=event.type,
                    outcome=decision.outcome,
                    attempt=attempt,
                    duration_ms=round((time.perf_counter() - started) * 1000, 2),
                )
            if decision.outcome != "ok":
                span.set_status(Status(StatusCode.ERROR, decision.outcome))

    async def _unhandled(
        self, message: AbstractIncomingMessage, envelope: EventEnvelope, attempt: int
    ) -> None:
        """A type (or schema version) this consumer has no handler for: never acked unhandled,
        but counted, logged and dead-lettered, so nothing is lost."""
        UNHANDLED_MESSAGES.labels(self.queues.main, envelope.type).inc()
        _log.error(
            "no handler for this event; dead-lettering it",
            consumer=self.name,
            event_id=str(envelope.id),
            event_type=envelope.type,
            schema_version=envelope.schema_version,
        )
        error = UnhandledEventError(envelope.type, envelope.schema_version)
        await self._settle(message, DeadLetter(UNHANDLED, attempt), error)

    async def _settle(
        self, message: AbstractIncomingMessage, decision: Decision, error: BaseException | None
    ) -> None:
        assert self._settlement is not None
        await self._settlement.settle(message, decision, error)
        self._metrics.consumed(decision.outcome).inc()


def _log_decision(
    log: structlog.stdlib.BoundLogger, decision: Decision, error: BaseException | None
) -> None:
    if isinstance(decision, Defer) and decision.overloaded:
        log.warning("no pooled connection free; rescheduling", error=repr(error))
    elif isinstance(decision, Defer):
        log.warning(
            "dependency unavailable; rescheduling", error=repr(error), pause=decision.pause_seconds
        )
    elif isinstance(decision, Retry):
        log.warning("handler failed; retrying later", error=repr(error), attempt=decision.attempts)
    elif isinstance(decision, DeadLetter):
        what = "permanent failure" if decision.reason == PERMANENT_ERROR else decision.reason
        log.error(what, error=repr(error), attempts=decision.attempts)
