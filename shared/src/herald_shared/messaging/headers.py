"""The AMQP headers Herald adds when a message is retried or dead-lettered."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from aio_pika.abc import AbstractIncomingMessage

ATTEMPTS = "x-herald-attempts"
DEFERRALS = "x-herald-deferrals"
ERROR_CLASS = "x-herald-error-class"
ERROR_MESSAGE = "x-herald-error"
REASON = "x-herald-reason"
ORIGINAL_QUEUE = "x-herald-original-queue"
FIRST_FAILURE = "x-herald-first-failure-at"
LAST_FAILURE = "x-herald-last-failure-at"

_MAX_ERROR_CHARS = 1000
#: Broker bookkeeping that must not be copied onto a re-published message.
_DROPPED = (
    "x-death",
    "x-first-death-exchange",
    "x-first-death-queue",
    "x-first-death-reason",
    "x-last-death-exchange",
    "x-last-death-queue",
    "x-last-death-reason",
    "x-delivery-count",
)


def attempts_of(message: AbstractIncomingMessage) -> int:
    """How many deliveries of this event failed before (0 for a first delivery)."""
    value = (message.headers or {}).get(ATTEMPTS, 0)
    return value if isinstance(value, int) and value >= 0 else 0


def _carried(message: AbstractIncomingMessage) -> dict[str, Any]:
    return {k: v for k, v in (message.headers or {}).items() if k not in _DROPPED}


def _failure(message: AbstractIncomingMessage, error: BaseException) -> dict[str, Any]:
    now = datetime.now(UTC).isoformat()
    headers = _carried(message)
    headers.setdefault(FIRST_FAILURE, now)
    headers[LAST_FAILURE] = now
    headers[ERROR_CLASS] = type(error).__name__
    headers[ERROR_MESSAGE] = str(error)[:_MAX_ERROR_CHARS]
    return headers


def deferrals_of(message: AbstractIncomingMessage) -> int:
    """How often this delivery was put off because a dependency was down."""
    value = (message.headers or {}).get(DEFERRALS, 0)
    return value if isinstance(value, int) and value >= 0 else 0


def deferral_headers(
    message: AbstractIncomingMessage, error: BaseException, attempts: int
) -> dict[str, Any]:
    """Headers for a delivery put off without spending an attempt."""
    return {**retry_headers(message, error, attempts), DEFERRALS: deferrals_of(message) + 1}


def retry_headers(
    message: AbstractIncomingMessage, error: BaseException, attempts: int
) -> dict[str, Any]:
    return {**_failure(message, error), ATTEMPTS: attempts}


def dead_letter_headers(
    message: AbstractIncomingMessage,
    error: BaseException,
    attempts: int,
    reason: str,
    original_queue: str,
) -> dict[str, Any]:
    return {
        **_failure(message, error),
        ATTEMPTS: attempts,
        REASON: reason,
        ORIGINAL_QUEUE: original_queue,
    }


def replay_headers(headers: dict[str, Any]) -> dict[str, Any]:
    """Headers for a dead letter sent back to its queue: a fresh set of attempts."""
    kept = {k: v for k, v in headers.items() if k not in _DROPPED and not k.startswith("x-herald-")}
    return kept
