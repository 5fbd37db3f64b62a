"""The broker topology, declared idempotently at start.

One durable topic exchange for events, declared by every process that publishes or consumes.
Per consuming service, declared by that service alone: a main queue bound to the event types its
handler table handles; one retry queue per backoff step, whose TTL dead-letters messages back to
the main queue (exponential backoff without plugins); and a dead-letter queue for poison messages
and exhausted retries. Every name starts with the configured namespace.

With quorum queues (the default) every queue is a quorum queue, and whatever the broker itself
dead-letters — a retry whose delay is over, a message delivered more than ``delivery_limit``
times (one that kills its consumer, say) — moves at least once: the source queue keeps the
message until the target queue has confirmed it (``x-dead-letter-strategy: at-least-once``,
which needs ``x-overflow: reject-publish``; RabbitMQ ≥ 3.10). Without quorum queues
(``HERALD_AMQP_QUORUM_QUEUES=false``, for brokers that have none) the queues are classic:
nothing limits redeliveries, and the broker's dead-lettering is at most once; so it is with
``HERALD_AMQP_AT_LEAST_ONCE_DEAD_LETTERING=false``, for brokers whose dead-letter workers are
fragile (RabbitMQ 3.10, decision 0029).

Quorum retry queues have names of their own (``….retry.<ms>ms.quorum``): the classic retry
queues of earlier versions cannot be changed into them, and drain into the main queue by
themselves. Arguments of an existing queue cannot be changed either (the broker refuses a
redeclaration with others: ``PRECONDITION_FAILED``, even once a policy supplies them): such a
queue is used as it is, with a warning saying how a policy gives it what it lacks (decision 0029).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import aio_pika
import aiormq
import structlog
from aio_pika.abc import AbstractChannel, AbstractExchange
from aiormq.abc import FieldValue

_log = structlog.get_logger(__name__)

DEFAULT_RETRY_DELAYS: tuple[float, ...] = (1.0, 5.0, 30.0, 120.0, 600.0)
#: Deliveries of one message a quorum main queue allows before dead-lettering it (the broker
#: counts a delivery that was handed back: a consumer that crashed or was stopped holding it).
DEFAULT_DELIVERY_LIMIT = 5


def exchange_name(namespace: str) -> str:
    return f"{namespace}.events"


@dataclass(frozen=True, slots=True)
class ConsumerQueues:
    """The queue names of one consuming service, and the arguments its queues are declared with."""

    namespace: str
    consumer: str
    retry_delays: tuple[float, ...] = DEFAULT_RETRY_DELAYS
    quorum: bool = True
    delivery_limit: int = DEFAULT_DELIVERY_LIMIT
    #: Quorum queues only: dead-letter at least once (see the module's docstring).
    at_least_once: bool = True

    @property
    def main(self) -> str:
        return f"{self.namespace}.{self.consumer}"

    @property
    def dead_letter(self) -> str:
        return f"{self.main}.dlq"

    def retry(self, step: int) -> str:
        name = f"{self.main}.retry.{round(self.retry_delays[step] * 1000)}ms"
        return f"{name}.quorum" if self.quorum else name

    @property
    def retry_queues(self) -> list[str]:
        return [self.retry(step) for step in range(len(self.retry_delays))]

    def arguments(self) -> dict[str, dict[str, FieldValue]]:
        """Each queue's declaration arguments, by name."""
        kind: dict[str, FieldValue] = {"x-queue-type": "quorum"} if self.quorum else {}
        safely: dict[str, FieldValue] = {}
        if self.quorum and self.at_least_once:
            # Dead-letter at least once: kept here until the target queue confirmed it.
            safely = {"x-dead-letter-strategy": "at-least-once", "x-overflow": "reject-publish"}
        limit: dict[str, FieldValue] = (
            {"x-delivery-limit": self.delivery_limit} if self.quorum else {}
        )
        declared: dict[str, dict[str, FieldValue]] = {
            self.dead_letter: dict(kind),
            self.main: {
                **kind,
                **limit,
                **safely,
                "x-dead-letter-exchange": "",
                "x-dead-letter-routing-key": self.dead_letter,
            },
        }
        for step, delay in enumerate(self.retry_delays):
            declared[self.retry(step)] = {
                **kind,
                **safely,
                "x-message-ttl": round(delay * 1000),
                "x-dead-letter-exchange": "",
                "x-dead-letter-routing-key": self.main,
            }
        return declared


async def declare_exchange(channel: AbstractChannel, namespace: str) -> AbstractExchange:
    return await channel.declare_exchange(
        exchange_name(namespace), aio_pika.ExchangeType.TOPIC, durable=True
    )


async def declare_consumer(
    channel: AbstractChannel, queues: ConsumerQueues, *, bindings: Iterable[str]
) -> None:
    """Declare (idempotently) the dead-letter, main and retry queues of one consumer, the main
    queue bound to the routing keys ``bindings``. Bindings are only ever added: one the consumer
    no longer wants stays until an operator removes it.

    Queues are declared on short-lived plain channels of ``channel``'s connection: the broker
    closes a channel on which a declaration was refused, and a queue that exists with other
    arguments is then used as it is (see the module's docstring).
    """
    exchange = await declare_exchange(channel, queues.namespace)
    connection = (await channel.get_underlay_channel()).connection
    declaring = await connection.channel(publisher_confirms=False)
    try:
        for name, arguments in queues.arguments().items():
            try:
                await declaring.queue_declare(name, durable=True, arguments=arguments)
            except aiormq.exceptions.ChannelPreconditionFailed as exc:
                _log.warning(
                    "queue exists with other arguments; using it as it is",
                    queue=name,
                    wanted=arguments,
                    refused=str(exc),
                    remedy="a policy supplies what it lacks (README: upgrading the queues)",
                )
                declaring = await connection.channel(publisher_confirms=False)
                await declaring.queue_declare(name, passive=True)
        for key in bindings:
            await declaring.queue_bind(queues.main, exchange.name, routing_key=key)
    finally:
        if not declaring.is_closed:
            await declaring.close()


def consumer_queues(
    namespace: str,
    consumer: str,
    *,
    retry_delays: Sequence[float] = DEFAULT_RETRY_DELAYS,
    quorum: bool = True,
    delivery_limit: int = DEFAULT_DELIVERY_LIMIT,
    at_least_once: bool = True,
) -> ConsumerQueues:
    return ConsumerQueues(
        namespace=namespace,
        consumer=consumer,
        retry_delays=tuple(retry_delays),
        quorum=quorum,
        delivery_limit=delivery_limit,
        at_least_once=at_least_once,
    )
