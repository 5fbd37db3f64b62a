"""The delivery loop: claim due deliveries, call their endpoints, record what happened.

Bounded everywhere: at most ``concurrency`` deliveries in flight per worker and
``per_host_concurrency`` per destination; every call has one deadline; a destination whose
breaker is open gets its deliveries back without an attempt, due when the breaker may probe.
Database connections are held only to claim and to record, never during a call.

Outcomes: any 2xx succeeds; anything else (3xx included: redirects are not followed) counts an
attempt and retries after the backoff, until ``max_attempts`` make the delivery dead; a target
refused by the address check is dead at once, without an attempt. Deliveries are at least once:
a worker that dies mid-call leaves a lease that expires, and the call is made again (receivers
drop repeats by ``webhook-id``).

Disabling an endpoint writes ``webhook.disabled`` to the outbox: once that commits, the loop
tells the process's outbox relay (``events_committed``), as the consumer does after its handlers'
commits, so the event goes out at once rather than at the relay's next sweep.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import TypeVar

import asyncpg
import httpx
import structlog
from opentelemetry import propagate, trace
from opentelemetry.context import Context
from opentelemetry.instrumentation.utils import suppress_instrumentation

from herald_shared.background import finish
from herald_shared.db import UNAVAILABLE_ERRORS, Connection, Database
from herald_shared.metrics import WEBHOOK_DELIVERIES
from herald_shared.resilience import BreakerOpenError
from herald_shared.webhooks.settings import WebhookSettings
from herald_shared.webhooks.signing import signature_headers
from herald_shared.webhooks.ssrf import (
    ResolutionError,
    Resolver,
    Target,
    UnsafeTargetError,
    parse_target,
    resolve_target,
    system_resolver,
)
from herald_worker.webhooks.destinations import Destination, Destinations, HostFailureError
from herald_worker.webhooks.sender import AttemptResult, send
from herald_worker.webhooks.store import (
    Attempt,
    ClaimedDelivery,
    DisablePolicy,
    Recorded,
    cancel,
    claim_due,
    record_failure,
    record_success,
    reschedule,
)

_log = structlog.get_logger(__name__)
_tracer = trace.get_tracer(__name__)
R = TypeVar("R")
_DB_ERRORS: tuple[type[BaseException], ...] = (*UNAVAILABLE_ERRORS, asyncpg.PostgresError)


def backoff_delay(settings: WebhookSettings, attempts_made: int) -> float:
    """Seconds to wait after the ``attempts_made``-th failed attempt: the schedule, jittered."""
    schedule = settings.backoff_seconds
    base = schedule[min(attempts_made, len(schedule)) - 1]
    return base * (1 + settings.backoff_jitter * random.uniform(-1.0, 1.0))


class DeliveryLoop:
    def __init__(
        self,
        db: Database,
        settings: WebhookSettings,
        client: httpx.AsyncClient,
        *,
        resolver: Resolver = system_resolver,
        events_committed: Callable[[], None] | None = None,
    ) -> None:
        """``events_committed`` is called after a transaction that wrote outbox rows commits
        (e.g. to wake an outbox relay)."""
        self._db = db
        self._events_committed = events_committed
        self._settings = settings
        self._client = client
        self._resolver = resolver
        self._destinations = Destinations(
            failures=settings.breaker_failures, reset_seconds=settings.breaker_reset_seconds
        )
        self._policy = DisablePolicy(
            after_consecutive_dead=settings.disable_after_consecutive_dead,
            after_failing=timedelta(seconds=settings.disable_after_failing_seconds),
        )
        self._lease = timedelta(seconds=settings.lease_seconds)
        self._inflight: set[asyncio.Task[None]] = set()
        self._wake = asyncio.Event()

    async def run(self, stop: asyncio.Event) -> None:
        """Deliver until ``stop`` is set, then let the calls in flight finish (within their
        deadline); any cut short are retried by some worker when their lease runs out."""
        watcher = asyncio.create_task(self._wake_on(stop))
        try:
            while not stop.is_set():
                self._wake.clear()
                free = self._settings.concurrency - len(self._inflight)
                claimed = await self._claim(free) if free > 0 else 0
                if free > 0 and claimed == free:
                    continue  # a full batch: more may be due now
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(self._settings.poll_interval_seconds):
                        await self._wake.wait()
        finally:
            watcher.cancel()
            await self._drain()

    async def _wake_on(self, stop: asyncio.Event) -> None:
        await stop.wait()
        self._wake.set()

    async def _drain(self) -> None:
        await finish(self._inflight, grace=self._settings.call_deadline_seconds + 1)

    async def _claim(self, limit: int) -> int:
        """Claim and start up to ``limit`` deliveries; returns how many.

        Each claim takes no more of a webhook's rows than its destination has room for; a
        destination it fills is left out of the next claim, so one endpoint's backlog at the
        head of the queue cannot hide everyone else's deliveries.
        """
        per_host = self._settings.per_host_concurrency
        started = 0
        while started < limit:
            try:
                with suppress_instrumentation():  # polling would bury real traces
                    async with self._db.writer() as conn:
                        batch = await claim_due(
                            conn,
                            limit - started,
                            self._lease,
                            room=self._destinations.room(per_host),
                            per_webhook=per_host,
                        )
            except _DB_ERRORS as exc:
                _log.warning("could not claim webhook deliveries", error=repr(exc))
                break
            for delivery in batch:
                self._start(delivery)
            started += len(batch)
            if not batch:
                break
        return started

    def _start(self, delivery: ClaimedDelivery) -> None:
        """Start the delivery's task. Its destination slot is taken now, so that the next claim
        already counts it, and given back when the task ends, however it ends."""
        per_host = self._settings.per_host_concurrency
        try:
            target = parse_target(delivery.url, allow_http=self._settings.allow_http)
        except UnsafeTargetError as exc:
            work = self._refuse(delivery, str(exc))
            destination = None
        else:
            destination = self._destinations.get(target.origin)
            destination.webhooks.add(delivery.webhook_id)
            if destination.active >= per_host:
                # Several webhooks share this destination: one claim can overshoot its room.
                work = self._put_back(delivery, self._settings.poll_interval_seconds)
                destination = None
            else:
                destination.active += 1
                work = self._deliver_once(delivery, target, destination)
        task = asyncio.create_task(self._traced(delivery, work), name=f"webhook:{delivery.id}")
        self._inflight.add(task)

        def finished(done: asyncio.Task[None]) -> None:
            self._inflight.discard(done)
            if destination is not None:
                destination.active -= 1
            # A slot is free, overall and at its destination: rows held back may go now.
            self._wake.set()

        task.add_done_callback(finished)

    async def _traced(self, delivery: ClaimedDelivery, work: Awaitable[str]) -> None:
        # A fresh context: the request's trace, not the delivery loop's.
        parent = propagate.extract(json.loads(delivery.trace_headers), context=Context())
        with _tracer.start_as_current_span(
            "webhook.deliver",
            context=parent,
            attributes={
                "herald.webhook_id": str(delivery.webhook_id),
                "herald.delivery_id": str(delivery.id),
                "herald.event_id": str(delivery.event_id),
                "herald.event_type": delivery.event_type,
                "herald.attempt": delivery.attempts + 1,
            },
        ) as span:
            try:
                outcome = await work
            except _DB_ERRORS as exc:
                # The outcome could not be recorded: the lease runs out and the call is repeated.
                outcome = "unrecorded"
                _log.warning(
                    "could not record a webhook delivery",
                    delivery_id=str(delivery.id),
                    error=repr(exc),
                )
            except Exception:
                outcome = "error"
                _log.exception("webhook delivery failed unexpectedly", delivery_id=str(delivery.id))
            span.set_attribute("herald.outcome", outcome)
        WEBHOOK_DELIVERIES.labels(outcome).inc()

    async def _deliver_once(
        self, delivery: ClaimedDelivery, target: Target, destination: Destination
    ) -> str:
        if not delivery.enabled:
            await self._record(
                delivery, lambda conn: cancel(conn, delivery, "the webhook was disabled")
            )
            return "cancelled"
        try:
            result = await self._call(destination, target, delivery)
        except UnsafeTargetError as exc:
            return await self._refuse(delivery, str(exc))
        except BreakerOpenError as exc:
            return await self._breaker_open(delivery, destination, exc)
        return await self._settle(delivery, result)

    async def _call(
        self, destination: Destination, target: Target, delivery: ClaimedDelivery
    ) -> AttemptResult:
        """One attempt under the destination's breaker; host failures count against it."""
        try:
            async with destination.breaker.guard():
                result = await self._attempt(target, delivery)
                if result.host_failure:
                    raise HostFailureError(result)
                return result
        except HostFailureError as exc:
            return exc.result

    async def _attempt(self, target: Target, delivery: ClaimedDelivery) -> AttemptResult:
        settings = self._settings
        try:
            addresses = await resolve_target(
                target,
                allow_private=settings.allow_private,
                resolve_seconds=settings.resolve_timeout_seconds,
                resolver=self._resolver,
            )
        except ResolutionError as exc:
            return AttemptResult("failed", None, str(exc), 0, host_failure=True)
        body = delivery.payload.encode()
        also = () if delivery.previous_secret is None else (delivery.previous_secret,)
        headers = signature_headers(delivery.secret, str(delivery.id), body, also=also)
        return await send(self._client, target, addresses, body, headers, settings)

    async def _settle(self, delivery: ClaimedDelivery, result: AttemptResult) -> str:
        attempt = Attempt(result.status_code, result.error, result.latency_ms)
        if result.outcome == "succeeded":
            await self._record(delivery, lambda conn: record_success(conn, delivery, attempt))
            return "succeeded"
        made = delivery.attempts + 1
        last = made >= self._settings.max_attempts
        retry_after = None if last else timedelta(seconds=backoff_delay(self._settings, made))
        await self._record_failure(delivery, attempt, retry_after=retry_after, counts_attempt=True)
        _log.info(
            "webhook attempt failed",
            delivery_id=str(delivery.id),
            attempt=made,
            error=result.error,
            dead=last,
        )
        return "dead" if last else "failed"

    async def _refuse(self, delivery: ClaimedDelivery, reason: str) -> str:
        _log.warning("webhook target refused", delivery_id=str(delivery.id), reason=reason)
        refused = Attempt(None, f"refused: {reason}", None)
        await self._record_failure(delivery, refused, retry_after=None, counts_attempt=False)
        return "refused"

    async def _record_failure(
        self,
        delivery: ClaimedDelivery,
        attempt: Attempt,
        *,
        retry_after: timedelta | None,
        counts_attempt: bool,
    ) -> None:
        recorded = await self._record(
            delivery,
            lambda conn: record_failure(
                conn,
                delivery,
                attempt,
                retry_after=retry_after,
                counts_attempt=counts_attempt,
                policy=self._policy,
            ),
        )
        if recorded is Recorded.DISABLED and self._events_committed is not None:
            self._events_committed()

    async def _breaker_open(
        self, delivery: ClaimedDelivery, destination: Destination, exc: BreakerOpenError
    ) -> str:
        # Open: due when the breaker may probe. Otherwise a probe is in flight: its answer is
        # known within one call's deadline.
        delay = (
            exc.retry_after
            if destination.breaker.is_open
            else min(self._settings.call_deadline_seconds, destination.breaker.reset_timeout)
        )
        return await self._put_back(delivery, delay * random.uniform(1.0, 1.1))

    async def _put_back(self, delivery: ClaimedDelivery, seconds: float) -> str:
        """Make the delivery due again after ``seconds``, without counting an attempt."""
        delay = timedelta(seconds=seconds)
        await self._record(delivery, lambda conn: reschedule(conn, delivery, delay))
        return "deferred"

    async def _record(
        self, delivery: ClaimedDelivery, write: Callable[[Connection], Awaitable[R]]
    ) -> R:
        """Run one recording statement; a false result means another worker holds the row now."""
        async with self._db.writer() as conn:
            result = await write(conn)
        if not result:
            _log.warning("webhook delivery lease lost", delivery_id=str(delivery.id))
        return result
