"""Running an event's handlers: under one deadline, inside one transaction when any of them takes
one (holding the inbox record when any of them uses the inbox), with a few quick in-process
retries of transient errors.

Whatever the handlers raise is passed on for ``herald_shared.messaging.failures.decide``. What
the runtime's own inbox statements meet is told apart here, where it is known to be PostgreSQL:
no connection free (``PoolExhaustedError``), or PostgreSQL unreachable, gone or not answering
(``DatabaseUnavailableError``) — whereas the same ``OSError`` or ``TimeoutError`` raised inside a
handler is the handler's own.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable

import structlog

from herald_shared.db import (
    CONNECTING_ERRORS,
    Connection,
    Database,
    DatabaseUnavailableError,
    acquire,
)
from herald_shared.events import EventData
from herald_shared.messaging import inbox
from herald_shared.messaging.failures import IN_PROCESS_RETRYABLE
from herald_shared.messaging.handlers import Event, HandlerTimeoutError, Route
from herald_shared.messaging.inbox_batch import InboxBatcher
from herald_shared.resilience import RetryPolicy, retry_transient
from herald_shared.settings import ConsumerSettings

_log = structlog.get_logger(__name__)


class Dispatcher:
    def __init__(
        self,
        consumer: str,
        *,
        db: Database | None,
        settings: ConsumerSettings,
        after_commit: Callable[[], None] | None = None,
    ) -> None:
        """``after_commit`` is called after each committed inbox transaction (e.g. to wake an
        outbox relay)."""
        self._consumer = consumer
        self._db = db
        self._timeout = settings.handler_timeout_seconds
        self._after_commit = after_commit
        self._in_process = RetryPolicy(
            attempts=settings.in_process_attempts,
            initial_delay=0.05,
            max_delay=1.0,
            retry_on=IN_PROCESS_RETRYABLE,
        )
        self._batcher = (
            InboxBatcher(
                consumer,
                max_batch=settings.inbox_batch_max,
                runners=max(1, settings.concurrency // settings.inbox_batch_max),
                window=settings.inbox_batch_window_seconds,
                with_connection=self._with_connection,
                run_steps=self._steps_in_time,
                statement=_inbox_statement,
                after_commit=after_commit,
            )
            if db is not None and settings.inbox_batch_max > 1
            else None
        )

    async def dispatch(self, route: Route, event: Event[EventData]) -> None:
        """Run ``route``'s handlers for ``event``; raises what they raised last."""
        if route.uses_inbox and self._batcher is not None:
            # The deadline covers the handlers, in the batch; not the wait for the batch.
            batcher = self._batcher
            await retry_transient(
                lambda: batcher.submit(route, event),
                policy=self._in_process,
                log_name=f"{self._consumer}:{event.type}",
            )
            return
        await retry_transient(
            lambda: self._run_in_time(route, event),
            policy=self._in_process,
            log_name=f"{self._consumer}:{event.type}",
        )

    async def _with_connection(self, body: Callable[[Connection], Awaitable[None]]) -> None:
        assert self._db is not None
        async with acquire(self._db.primary, self._db.acquire_timeout) as tx:
            await body(tx)

    async def _steps_in_time(self, route: Route, event: Event[EventData], tx: Connection) -> None:
        try:
            async with asyncio.timeout(self._timeout) as deadline:
                for step in route.steps:
                    await (step.call(event, tx) if step.takes_tx else step.call(event))
        except TimeoutError as exc:
            if deadline.expired():
                raise HandlerTimeoutError(f"handlers ran past {self._timeout} s") from exc
            raise

    async def _run_in_time(self, route: Route, event: Event[EventData]) -> None:
        try:
            async with asyncio.timeout(self._timeout) as deadline:
                await self._run(route, event)
        except TimeoutError as exc:
            if deadline.expired():
                raise HandlerTimeoutError(f"handlers ran past {self._timeout} s") from exc
            raise  # a timeout of the handlers' own (or a query's): classified as what it is

    async def _run(self, route: Route, event: Event[EventData]) -> None:
        if not route.uses_transaction:
            for step in route.steps:
                await step.call(event)
            return
        if self._db is None:
            raise RuntimeError("handlers that take a transaction need a database")
        async with acquire(self._db.primary, self._db.acquire_timeout) as tx:
            async with _inbox_statement():
                if route.uses_inbox:
                    opened = await inbox.open_inbox(tx, self._consumer, event.id)
                else:
                    opened = await inbox.begin(tx)
            if not opened:
                await inbox.rollback(tx)
                _log.info(
                    "duplicate event skipped", consumer=self._consumer, event_id=str(event.id)
                )
                return
            try:
                for step in route.steps:
                    await (step.call(event, tx) if step.takes_tx else step.call(event))
            except BaseException:
                await inbox.rollback(tx)
                raise
            async with _inbox_statement():
                await inbox.commit(tx)
        if self._after_commit is not None:
            self._after_commit()


@contextlib.asynccontextmanager
async def _inbox_statement() -> AsyncIterator[None]:
    """One of the runtime's own inbox statements: any connection failure, and a command
    timeout (PostgreSQL did not answer, not even to cancel the statement), is PostgreSQL's."""
    try:
        yield
    except CONNECTING_ERRORS as exc:
        raise DatabaseUnavailableError(f"inbox statement failed: {exc!r}") from exc
