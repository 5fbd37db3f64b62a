"""The consumer's intake: which delivered messages may run their handlers now.

Normally every message runs as soon as one of ``concurrency`` slots is free. When a handler
finds a dependency down (a deferral), intake pauses: messages already delivered wait, unacked,
and the broker sends no more than the prefetch allows, so the backlog stays in its queue instead
of cycling through the retry queues. When the pause is over one message runs alone as a probe:
if it is deferred too, the next pause is twice as long (up to ``max_pause``); any other outcome
opens intake again. Deferrals of messages that were already running when intake paused only
put those messages back.

A message that waited ``max_hold`` seconds is put back unrun (re-published without spending an
attempt, by the caller): RabbitMQ closes a channel holding a delivery unacked beyond its consumer
timeout, which would count a redelivery against every message the channel held.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass


@dataclass(slots=True)
class Ticket:
    """One message's admission; ``probe`` when it runs alone after a pause."""

    probe: bool
    reported: bool = False


class HeldTooLongError(Exception):
    """The message waited its longest hold at paused intake."""


class Intake:
    def __init__(self, concurrency: int, *, max_pause: float, max_hold: float) -> None:
        self._slots = asyncio.Semaphore(concurrency)
        self._max_pause = max_pause
        self._max_hold = max_hold
        #: Set (and replaced) whenever the state changes: waiters look again.
        self._changed = asyncio.Event()
        #: Loop time until which intake is paused; 0 when open.
        self._paused_until = 0.0
        self._probing = False
        self._backoff = 0.0
        self._closed = False

    @property
    def paused(self) -> bool:
        return self._paused_until > 0 or self._probing

    @contextlib.asynccontextmanager
    async def admit(self, arrived: float) -> AsyncIterator[Ticket]:
        """Wait for a slot and for intake to be open (or for this message's turn to probe).

        ``arrived`` is the loop time the message was delivered at; raises ``HeldTooLongError``
        once it has waited ``max_hold`` seconds. Returns at once when intake is closed (the
        caller hands the message back).
        """
        try:
            async with asyncio.timeout_at(arrived + self._max_hold):
                await self._slots.acquire()
        except TimeoutError:
            raise HeldTooLongError from None
        try:
            ticket = await self._wait_open(arrived + self._max_hold)
            try:
                yield ticket
            finally:
                if ticket.probe and not ticket.reported:
                    # The probe proved nothing (cut short, or its handlers never ran): the next
                    # message probes instead.
                    self._probing = False
                    self._notify()
        finally:
            self._slots.release()

    async def _wait_open(self, deadline: float) -> Ticket:
        loop = asyncio.get_running_loop()
        while True:
            if self._closed or not self.paused:
                return Ticket(probe=False)
            now = loop.time()
            if not self._probing and now >= self._paused_until:
                self._probing = True
                return Ticket(probe=True)
            if now >= deadline:
                raise HeldTooLongError
            changed = self._changed
            wake_at = deadline if self._probing else min(deadline, self._paused_until)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout_at(wake_at):
                    await changed.wait()

    def deferred(self, ticket: Ticket, pause: float) -> None:
        """The message's handlers found a dependency down; ``pause`` is how long it says."""
        ticket.reported = True
        if ticket.probe:
            self._report_probe(deferred=pause)
        elif not self.paused:
            self._backoff = pause
            self._pause_for(pause)

    def done(self, ticket: Ticket) -> None:
        """The message's handlers ran and it was acked, retried or dead-lettered."""
        ticket.reported = True
        if ticket.probe:
            self._report_probe(deferred=None)

    def close(self) -> None:
        """Stop holding messages back: every waiter is let through (to be handed back)."""
        self._closed = True
        self._notify()

    def _report_probe(self, *, deferred: float | None) -> None:
        self._probing = False
        if deferred is None:
            self._paused_until = 0.0
            self._backoff = 0.0
            self._notify()
            return
        self._backoff = min(max(self._backoff * 2, deferred), self._max_pause)
        self._pause_for(self._backoff)

    def _pause_for(self, seconds: float) -> None:
        self._paused_until = asyncio.get_running_loop().time() + seconds
        self._notify()

    def _notify(self) -> None:
        self._changed.set()
        self._changed = asyncio.Event()
