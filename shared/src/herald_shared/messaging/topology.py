"""The broker topology, declared idempotently at start.

One durable topic exchange for events, declared by every process that publishes or consumes.
Per consuming service, declared by that service alone: a main queue (quorum where the broker
supports it) bound to the event types its handler table handles; one retry queue per backoff
step, whose TTL dead-letters messages back to the main queue (exponential backoff without
plugins); and a dead-letter queue for poison messages and exhausted retries. Every name starts
with the configured namespace.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import aio_pika
from aio_pika.abc import AbstractChannel, AbstractExchange
from aiormq.abc import FieldValue

DEFAULT_RETRY_DELAYS: tuple[float, ...] = (1.0, 5.0, 30.0, 120.0, 600.0)


def exchange_name(namespace: str) -> str:
    return f"{namespace}.events"


@dataclass(frozen=True, slots=True)
class ConsumerQueues:
    """The queue names of one consuming service."""

    namespace: str
    consumer: str
    retry_delays: tuple[float, ...] = DEFAULT_RETRY_DELAYS
    quorum: bool = True

    @property
    def main(self) -> str:
        return f"{self.namespace}.{self.consumer}"

    @property
    def dead_letter(self) -> str:
        return f"{self.main}.dlq"

    def retry(self, step: int) -> str:
        return f"{self.main}.retry.{round(self.retry_delays[step] * 1000)}ms"

    @property
    def retry_queues(self) -> list[str]:
        return [self.retry(step) for step in range(len(self.retry_delays))]


async def declare_exchange(channel: AbstractChannel, namespace: str) -> AbstractExchange:
    return await channel.declare_exchange(
        exchange_name(namespace), aio_pika.ExchangeType.TOPIC, durable=True
    )


async def declare_consumer(
    channel: AbstractChannel, queues: ConsumerQueues, *, bindings: Iterable[str]
) -> None:
    """Declare (idempotently) the main, retry and dead-letter queues of one consumer, the main
    queue bound to the routing keys ``bindings``. Bindings are only ever added: one the consumer
    no longer wants stays until an operator removes it."""
    exchange = await declare_exchange(channel, queues.namespace)
    durable_type: dict[str, FieldValue] = {"x-queue-type": "quorum"} if queues.quorum else {}
    await channel.declare_queue(queues.dead_letter, durable=True, arguments=durable_type)
    main = await channel.declare_queue(
        queues.main,
        durable=True,
        arguments={
            **durable_type,
            # Anything the broker itself dead-letters (e.g. a quorum delivery limit) is kept.
            "x-dead-letter-exchange": "",
            "x-dead-letter-routing-key": queues.dead_letter,
        },
    )
    for key in bindings:
        await main.bind(exchange, routing_key=key)
    for step, delay in enumerate(queues.retry_delays):
        await channel.declare_queue(
            queues.retry(step),
            durable=True,
            arguments={
                "x-message-ttl": round(delay * 1000),
                "x-dead-letter-exchange": "",
                "x-dead-letter-routing-key": queues.main,
            },
        )


def consumer_queues(
    namespace: str,
    consumer: str,
    *,
    retry_delays: Sequence[float] = DEFAULT_RETRY_DELAYS,
    quorum: bool = True,
) -> ConsumerQueues:
    return ConsumerQueues(
        namespace=namespace,
        consumer=consumer,
        retry_delays=tuple(retry_delays),
        quorum=quorum,
    )
