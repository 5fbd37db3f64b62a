"""What becomes of a delivery once its handlers have run: the consumer's one decision.

``decide`` is a pure function of the error (None when the handlers succeeded), the attempt and
the consumer's settings. It answers ack, retry through retry queue N, defer (reschedule without
spending an attempt, and pause intake) or dead-letter with a reason;
``herald_shared.messaging.settlement`` carries the answer out. ``classify`` says what kind of
failure an error is: the one place that tells "a dependency is down" from "this event failed".

It goes by what failed, not by the Python type alone: an ``OSError`` or a ``TimeoutError`` from a
handler is that handler's failure (its own file, its own deadline, a slow query) and is retried
like any other; "a dependency is down" takes an error that can only mean it — a connection-level
error of PostgreSQL, Redis or RabbitMQ, an open breaker, a handler's explicit
``DependencyUnavailableError``, or the runtime's own inbox connection failing
(``DatabaseUnavailableError``). A deferral never spends an attempt, however long the outage:
the consumer pauses its intake instead (``herald_shared.messaging.intake``), so an outage keeps
events waiting and never dead-letters them.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from typing import ClassVar

import aiormq
import redis.exceptions

from herald_shared.db import CONNECTION_ERRORS, DatabaseUnavailableError, PoolExhaustedError
from herald_shared.messaging.handlers import (
    DependencyUnavailableError,
    PermanentError,
    TransientError,
)
from herald_shared.redis_client import POOL_EXHAUSTED
from herald_shared.resilience import BreakerOpenError
from herald_shared.settings import ConsumerSettings

#: Retried a few times in-process (with jittered backoff) before a retry queue is used: a
#: transient failure, or a connection-level blip of PostgreSQL (a failover, a restart).
IN_PROCESS_RETRYABLE: tuple[type[BaseException], ...] = (
    TransientError,
    DatabaseUnavailableError,
    *CONNECTION_ERRORS,
)

#: This process ran out of pooled connections: a local overload, not the event's fault.
_OVERLOADED: tuple[type[BaseException], ...] = (PoolExhaustedError, *POOL_EXHAUSTED)

#: Errors that can only mean a dependency is down (or refuses to be called).
_UNAVAILABLE: tuple[type[BaseException], ...] = (
    DependencyUnavailableError,
    BreakerOpenError,
    DatabaseUnavailableError,
    *CONNECTION_ERRORS,
    redis.exceptions.ConnectionError,
    aiormq.exceptions.AMQPConnectionError,
)

#: How long intake pauses after running out of pooled connections: long enough for the
#: handlers in flight to give some back, short enough not to hold up the consumer.
OVERLOAD_PAUSE_SECONDS = 1.0

PERMANENT_ERROR = "permanent error"
RETRIES_EXHAUSTED = "retries exhausted"
UNDECODABLE = "undecodable message"
UNHANDLED = "no handler for this event type"


class UnhandledEventError(Exception):
    """A delivered event of a type (or schema version) the consumer has no handler for."""

    def __init__(self, event_type: str, schema_version: int) -> None:
        super().__init__(f"no handler for {event_type} schema version {schema_version}")
        self.event_type = event_type
        self.schema_version = schema_version


class HeldBackError(Exception):
    """A delivery waited at the paused intake for its longest hold and is put back unrun."""


class Failure(Enum):
    #: A dependency is down: not this event's fault.
    UNAVAILABLE = "unavailable"
    #: This process has no pooled connection free: not this event's fault either.
    OVERLOADED = "overloaded"
    #: Retrying cannot help.
    PERMANENT = "permanent"
    #: This event's handling failed: worth another attempt later.
    FAILED = "failed"


def classify(error: BaseException) -> Failure:
    # Overload first: redis-py's pool errors are ConnectionErrors too.
    if isinstance(error, _OVERLOADED):
        return Failure.OVERLOADED
    if isinstance(error, _UNAVAILABLE):
        return Failure.UNAVAILABLE
    if isinstance(error, PermanentError):
        return Failure.PERMANENT
    return Failure.FAILED


@dataclass(frozen=True, slots=True)
class Ack:
    outcome: ClassVar[str] = "ok"


@dataclass(frozen=True, slots=True)
class Retry:
    """Re-publish to retry queue ``step`` (0: the shortest delay), recording ``attempts``."""

    step: int
    attempts: int
    outcome: ClassVar[str] = "retried"


@dataclass(frozen=True, slots=True)
class Defer:
    """Re-publish to the first retry queue with ``attempts`` unchanged and one more deferral,
    and pause intake for ``pause_seconds`` (``overloaded``: this process, not a dependency)."""

    pause_seconds: float
    attempts: int
    overloaded: bool = False
    outcome: ClassVar[str] = "deferred"


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """Re-publish to the dead-letter queue, recording why and after how many attempts."""

    reason: str
    attempts: int
    outcome: ClassVar[str] = "dead_lettered"


Decision = Ack | Retry | Defer | DeadLetter


def decide(error: BaseException | None, *, attempt: int, settings: ConsumerSettings) -> Decision:
    """What to do with delivery number ``attempt`` (1 for the first) of an event after its
    handlers ended with ``error``."""
    if error is None:
        return Ack()
    kind = classify(error)
    if kind is Failure.UNAVAILABLE:
        retry_after = getattr(error, "retry_after", None)
        return Defer(pause_seconds=retry_after or settings.pause_seconds, attempts=attempt - 1)
    if kind is Failure.OVERLOADED:
        return Defer(OVERLOAD_PAUSE_SECONDS, attempts=attempt - 1, overloaded=True)
    if kind is Failure.PERMANENT:
        return DeadLetter(PERMANENT_ERROR, attempt)
    if attempt > len(settings.retry_delays_seconds):
        return DeadLetter(RETRIES_EXHAUSTED, attempt)
    return Retry(step=attempt - 1, attempts=attempt)
