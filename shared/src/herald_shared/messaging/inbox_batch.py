"""Inbox deliveries in hand at the same moment share one transaction, each in a savepoint.

Where several inbox deliveries are in flight, each paying for its own ``BEGIN; INSERT`` and
``COMMIT`` is most of a trivial event's cost (decision 0013: one round trip is ~90 µs of the
consumer's CPU). ``InboxBatcher`` gathers the events dispatched within one turn of the event
loop, up to ``max_batch``, and runs them on one connection in one transaction:

    BEGIN; SAVEPOINT e; INSERT <inbox row 1>        -- one round trip
    <event 1's handlers>
    RELEASE SAVEPOINT e; SAVEPOINT e; INSERT <row 2> -- one round trip
    <event 2's handlers>
    …
    COMMIT

so a batch of N costs N + 1 of the runtime's round trips instead of 2N. Each event's inbox row
and effects sit in its own savepoint: a handler that fails rolls back to it (its row and its
writes go, its batch-mates' stay) and only that event is reported failed. Two deliveries of one
event in the same batch: the second finds the first's row in the transaction and is skipped,
or, when the first failed and was rolled back, is applied. Nothing is reported done before the
batch's ``COMMIT``; if the transaction itself breaks (the connection, the commit), every event
of the batch is reported failed with that error and goes the usual retry way.

At most ``runners`` batches run at once (the handlers in flight divided by the batch size):
deliveries that arrive while they are all busy wait for the next free one, so batches grow with
the load, and a delivery that finds one free starts at once, in a batch of its own.

A batch runs its events one after another on its connection, so it is only worth it for
handlers that are quick: once a batch has run for ``window`` seconds, the events it has not
started are handed to batches of their own, on other connections (so batching delays no
event's start by more than the window), and while the handlers' recent cost (a moving average)
is above the window every event runs alone, in parallel, as without batching. A lone event
is claimed without a savepoint, as ``dispatch`` would.

A waiter cancelled (the consumer stopping past its grace period) cancels its batch, which
rolls back: the batch-mates are reported failed and, like the cancelled event, handed back.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import structlog

from herald_shared.db import Connection
from herald_shared.events import EventData
from herald_shared.messaging import inbox
from herald_shared.messaging.handlers import Event, Route

_log = structlog.get_logger(__name__)

#: Runs one event's handlers on the batch's transaction (the dispatcher's, with its deadline).
RunSteps = Callable[[Route, Event[EventData], Connection], Awaitable[None]]
#: Opens a connection for a batch and runs ``body`` on it (the dispatcher's classified acquire).
WithConnection = Callable[[Callable[[Connection], Awaitable[None]]], Awaitable[None]]
#: Wraps each of the batch's own statements (the dispatcher classifies their failures).
Statement = Callable[[], contextlib.AbstractAsyncContextManager[None]]


@dataclass(slots=True)
class _Item:
    route: Route
    event: Event[EventData]
    done: asyncio.Future[bool] = field(
        default_factory=lambda: asyncio.get_running_loop().create_future()
    )
    batch: asyncio.Task[None] | None = None

    def settle(self, applied: bool | BaseException) -> None:
        if self.done.done():
            return  # its waiter was cancelled
        if isinstance(applied, asyncio.CancelledError):
            self.done.cancel()  # its batch was cancelled: the consumer is stopping
        elif isinstance(applied, BaseException):
            self.done.set_exception(applied)
        else:
            self.done.set_result(applied)


class InboxBatcher:
    def __init__(
        self,
        consumer: str,
        *,
        max_batch: int,
        runners: int,
        window: float,
        with_connection: WithConnection,
        run_steps: RunSteps,
        statement: Statement,
        after_commit: Callable[[], None] | None,
    ) -> None:
        self._consumer = consumer
        self._max_batch = max_batch
        self._runners = runners
        self._running = 0
        self._overflow: asyncio.TimerHandle | None = None
        self._window = window
        self._with_connection = with_connection
        self._run_steps = run_steps
        self._statement = statement
        self._after_commit = after_commit
        self._pending: list[_Item] = []
        self._scheduled = False
        self._batches: set[asyncio.Task[None]] = set()
        #: Moving average of one event's handlers' time, in seconds.
        self._cost = 0.0

    async def submit(self, route: Route, event: Event[EventData]) -> bool:
        """Run the event's inbox handlers in the next batch; True when applied, False when the
        inbox knew the event already; raises what its handlers (or the transaction) raised."""
        item = _Item(route, event)
        self._pending.append(item)
        if not self._scheduled:
            self._scheduled = True
            asyncio.get_running_loop().call_soon(self._start)
        try:
            return await item.done
        except asyncio.CancelledError:
            if item.batch is not None:
                item.batch.cancel()
            raise

    def _start(self) -> None:
        self._scheduled = False
        if self._cost > self._window:
            # Slow handlers: every event alone, side by side, as without batching.
            pending, self._pending = self._pending, []
            for item in pending:
                self._launch([item], counted=False)
            return
        # Group commit: at most ``runners`` batches at once; what arrives meanwhile waits for
        # the next free one, so batches grow with the load and a lone event starts at once.
        while self._pending and self._running < self._runners:
            batch, self._pending = (
                self._pending[: self._max_batch],
                self._pending[self._max_batch :],
            )
            self._launch(batch, counted=True)
        if self._pending and self._overflow is None:
            # A runner held up by a slow event must not hold the rest up longer than the window.
            self._overflow = asyncio.get_running_loop().call_later(self._window, self._spill)

    def _spill(self) -> None:
        """Start what has waited a whole window for a runner, beside the busy ones."""
        self._overflow = None
        pending, self._pending = self._pending, []
        for first in range(0, len(pending), self._max_batch):
            self._launch(pending[first : first + self._max_batch], counted=False)

    def _launch(self, batch: list[_Item], *, counted: bool) -> None:
        task = asyncio.get_running_loop().create_task(self._run_batch(batch))
        for item in batch:
            item.batch = task
        self._batches.add(task)
        task.add_done_callback(self._batches.discard)
        if counted:
            self._running += 1
            task.add_done_callback(self._runner_done)

    def _runner_done(self, _: asyncio.Task[None]) -> None:
        self._running -= 1
        if self._pending and not self._scheduled:
            self._scheduled = True
            asyncio.get_running_loop().call_soon(self._start)

    async def _run_batch(self, batch: list[_Item]) -> None:
        applied: list[_Item] = []
        try:
            await self._with_connection(lambda tx: self._in_transaction(tx, batch, applied))
        except BaseException as exc:
            # The transaction broke (or never began): nothing of the batch was committed.
            for item in batch:
                item.settle(exc)
            if not isinstance(exc, Exception):
                raise
            return
        for item in applied:
            item.settle(True)
        if applied and self._after_commit is not None:
            self._after_commit()

    async def _execute(self, tx: Connection, sql: str) -> str:
        async with self._statement():
            return await tx.execute(sql)

    async def _in_transaction(
        self, tx: Connection, batch: list[_Item], applied: list[_Item]
    ) -> None:
        loop = asyncio.get_running_loop()
        failed: list[tuple[_Item, BaseException]] = []
        skipped: list[_Item] = []
        alone = len(batch) == 1  # no savepoint needed: its failure rolls back everything
        opened = False
        started = 0

        def hand_off() -> None:
            # Slow handlers: the events not started go on other connections, each alone.
            for rest in batch[started:]:
                self._launch([rest], counted=False)
            del batch[started:]

        timer = None if alone else loop.call_later(self._window, hand_off)
        try:
            while started < len(batch):
                item = batch[started]
                started += 1
                if alone:
                    claim = inbox.claim_sql(self._consumer, item.event.id)
                else:
                    claim = inbox.savepoint_claim_sql(
                        self._consumer, item.event.id, first=not opened
                    )
                opened = True
                if await self._execute(tx, claim) != "INSERT 0 1":
                    skipped.append(item)
                    continue
                ran = loop.time()
                try:
                    await self._run_steps(item.route, item.event, tx)
                except Exception as exc:
                    if alone:
                        raise
                    await self._execute(tx, "ROLLBACK TO SAVEPOINT inbox_event")
                    failed.append((item, exc))
                else:
                    applied.append(item)
                finally:
                    self._cost = 0.8 * self._cost + 0.2 * (loop.time() - ran)
            if timer is not None:
                timer.cancel()
            await self._execute(tx, "COMMIT")
        except BaseException:
            if timer is not None:
                timer.cancel()
            applied.clear()
            if opened:
                await inbox.rollback(tx)
            raise
        for item, error in failed:
            item.settle(error)
        for item in skipped:
            _log.info(
                "duplicate event skipped", consumer=self._consumer, event_id=str(item.event.id)
            )
            item.settle(False)
