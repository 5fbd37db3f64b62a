"""What handlers are, and how they say that something went wrong.

A handler is a plain ``async def handle(event, delivery)``: the decoded envelope and a
``Delivery`` with the attempt number and, for handlers that use the inbox, the transaction its
database effects must go into. No broker type appears in its signature.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from herald_shared.db import Connection
from herald_shared.events import EventEnvelope


class PermanentError(Exception):
    """Retrying cannot help (bad data, a rule violated): dead-letter at once."""


class TransientError(Exception):
    """Worth retrying soon (a timeout, a conflict)."""


class HandlerTimeoutError(TransientError):
    """The handler ran past its deadline (retried like any transient failure)."""


class DependencyUnavailableError(Exception):
    """A dependency is known to be down: reschedule without spending an attempt, and pause."""

    def __init__(self, dependency: str, retry_after: float | None = None) -> None:
        super().__init__(f"{dependency} is unavailable")
        self.dependency = dependency
        self.retry_after = retry_after


@dataclass(frozen=True, slots=True)
class Delivery:
    consumer: str
    event_id: uuid.UUID
    #: 1 for the first delivery; grows with each trip through the retry queues.
    attempt: int
    #: The connection whose open transaction holds this event's inbox row (``uses_inbox``
    #: handlers only). The transaction is begun in SQL (``herald_shared.messaging.inbox``), so
    #: asyncpg's ``tx.transaction()`` cannot nest in it: use ``SAVEPOINT`` to nest.
    tx: Connection | None


Handle = Callable[[EventEnvelope, Delivery], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class HandlerSpec:
    event_type: str
    handle: Handle
    #: Run inside a transaction that first records (consumer, event id): a redelivered event
    #: is skipped, and the handler's own database effects commit atomically with the record.
    uses_inbox: bool = True
    timeout_seconds: float | None = None
