"""Carrying out a decision on a delivered message: ack it, or re-publish it to a retry or the
dead-letter queue (with headers saying why) and then ack it.

A re-published copy is confirmed by the broker before the original is acked, so a crash in
between can only duplicate the message, which the inbox (or an idempotent handler) absorbs.
Acks are asked of ``Acks``, which sends them in batches.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from aio_pika.abc import AbstractChannel, AbstractIncomingMessage
from opentelemetry import propagate

from herald_shared.messaging.acks import Acks
from herald_shared.messaging.failures import Ack, DeadLetter, Decision, Defer, Retry
from herald_shared.messaging.headers import dead_letter_headers, deferral_headers, retry_headers
from herald_shared.messaging.publisher import build_message, publish_confirmed
from herald_shared.messaging.topology import ConsumerQueues


class Settlement:
    """Settles the messages of one consumer, on the channel they were delivered on."""

    def __init__(
        self,
        channel: AbstractChannel,
        queues: ConsumerQueues,
        *,
        acks: Acks,
        publish_timeout: float,
    ) -> None:
        self._channel = channel
        self._acks = acks
        self._queues = queues
        self._publish_timeout = publish_timeout

    async def settle(
        self, message: AbstractIncomingMessage, decision: Decision, error: BaseException | None
    ) -> None:
        """Carry out ``decision``; ``error`` is what the handlers (or decoding) raised."""
        match decision:
            case Ack():
                self._acks.ack(message)
                return
            case Retry(step=step, attempts=attempts):
                headers = retry_headers(message, _known(error), attempts)
                queue = self._queues.retry(step)
            case Defer(attempts=attempts):
                headers = deferral_headers(message, _known(error), attempts)
                queue = self._queues.retry(0)
            case DeadLetter(reason=reason, attempts=attempts):
                headers = dead_letter_headers(
                    message, _known(error), attempts, reason, self._queues.main
                )
                queue = self._queues.dead_letter
        await self._republish(message, queue, headers)

    async def _republish(
        self, message: AbstractIncomingMessage, queue: str, headers: dict[str, Any]
    ) -> None:
        propagate.inject(headers)  # the retry continues the trace from this attempt
        copy = build_message(
            message.body,
            message_id=message.message_id or "",
            event_type=message.type or "",
            headers=headers,
            timestamp=message.timestamp or datetime.now(UTC),
        )
        await publish_confirmed(
            self._channel.default_exchange, copy, queue, timeout=self._publish_timeout
        )
        self._acks.ack(message)


def _known(error: BaseException | None) -> BaseException:
    if error is None:
        raise ValueError("only an ack needs no error")
    return error
