"""What becomes of a delivery once its handlers have run: the consumer's one decision.

``decide`` is a pure function of the error (None when the handlers succeeded), the attempt, the
deferrals so far and the consumer's settings. It answers ack, retry through retry queue N,
defer (reschedule without spending an attempt, and pause intake) or dead-letter with a reason;
``herald_shared.messaging.settlement`` carries the answer out. ``classify`` says what kind of
failure an error is: the one place that tells "a dependency is down" from "this event failed".
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from typing import ClassVar

from herald_shared.db import UNAVAILABLE_ERRORS
from herald_shared.messaging.handlers import (
    DependencyUnavailableError,
    PermanentError,
    TransientError,
)
from herald_shared.resilience import BreakerOpenError
from herald_shared.settings import ConsumerSettings

#: Retried a few times in-process (with jittered backoff) before a retry queue is used.
IN_PROCESS_RETRYABLE: tuple[type[BaseException], ...] = (TransientError, *UNAVAILABLE_ERRORS)

#: A dependency is down, not this event at fault: reschedule without spending an attempt, so an
#: outage (of PostgreSQL too) never pushes events into the dead-letter queue.
_UNAVAILABLE: tuple[type[BaseException], ...] = (
    DependencyUnavailableError,
    BreakerOpenError,
    *UNAVAILABLE_ERRORS,
)

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


class Failure(Enum):
    #: A dependency is down: not this event's fault.
    UNAVAILABLE = "unavailable"
    #: Retrying cannot help.
    PERMANENT = "permanent"
    #: This event's handling failed: worth another attempt later.
    FAILED = "failed"


def classify(error: BaseException) -> Failure:
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
    and pause intake for ``pause_seconds``."""

    pause_seconds: float
    attempts: int
    outcome: ClassVar[str] = "deferred"


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """Re-publish to the dead-letter queue, recording why and after how many attempts."""

    reason: str
    attempts: int
    outcome: ClassVar[str] = "dead_lettered"


Decision = Ack | Retry | Defer | DeadLetter


def decide(
    error: BaseException | None, *, attempt: int, deferrals: int, settings: ConsumerSettings
) -> Decision:
    """What to do with delivery number ``attempt`` (1 for the first) of an event that was put
    off ``deferrals`` times already, after its handlers ended with ``error``."""
    if error is None:
        return Ack()
    kind = classify(error)
    if kind is Failure.UNAVAILABLE and deferrals < settings.max_deferrals:
        retry_after = getattr(error, "retry_after", None)
        return Defer(pause_seconds=retry_after or settings.pause_seconds, attempts=attempt - 1)
    if kind is Failure.PERMANENT:
        return DeadLetter(PERMANENT_ERROR, attempt)
    # A failure, or an "unavailable" that kept coming back: spend an attempt.
    if attempt > len(settings.retry_delays_seconds):
        return DeadLetter(RETRIES_EXHAUSTED, attempt)
    return Retry(step=attempt - 1, attempts=attempt)
