"""The broker as tests see it: the run's private namespace (removed afterwards), publishing
envelopes into it and inspecting its queues."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Iterable, Mapping, Sequence

import aio_pika
import aiormq
from aio_pika.abc import AbstractIncomingMessage, AbstractRobustConnection

from herald_cli.consumers import KNOWN_CONSUMERS
from herald_shared.events import EventEnvelope
from herald_shared.messaging.connection import open_channel
from herald_shared.messaging.depth import QueueDepth, queue_depth
from herald_shared.messaging.publisher import build_message, publish_confirmed
from herald_shared.messaging.topology import (
    DEFAULT_RETRY_DELAYS,
    ConsumerQueues,
    consumer_queues,
    exchange_name,
)
from herald_shared.settings import AmqpSettings
from tests.support.waiting import wait_until

AMQP_URL = "amqp://guest:guest@127.0.0.1:5672/"
#: Short retry steps, so a message goes through every retry queue in well under a second.
FAST_RETRY_DELAYS: tuple[float, ...] = (0.2, 0.5)


def queue_names(
    namespace: str, consumers: Iterable[str], retry_delays: Iterable[tuple[float, ...]] = ()
) -> list[str]:
    names: list[str] = []
    delay_sets = [DEFAULT_RETRY_DELAYS, *retry_delays]
    for consumer in {*KNOWN_CONSUMERS, *consumers}:
        for delays in delay_sets:
            for quorum in (True, False):
                queues = consumer_queues(namespace, consumer, retry_delays=delays, quorum=quorum)
                names += [queues.main, queues.dead_letter, *queues.retry_queues]
    return sorted(set(names))


async def delete_namespace(
    url: str,
    namespace: str,
    consumers: Iterable[str] = (),
    retry_delays: Iterable[tuple[float, ...]] = (),
) -> None:
    """Delete the exchange and every queue a test run may have declared under ``namespace``."""
    connection = await aio_pika.connect(url)
    try:
        for name in queue_names(namespace, consumers, retry_delays):
            channel = await connection.channel()
            with contextlib.suppress(aiormq.exceptions.AMQPError):
                await channel.queue_delete(name)
            with contextlib.suppress(aiormq.exceptions.AMQPError):
                await channel.close()
        channel = await connection.channel()
        with contextlib.suppress(aiormq.exceptions.AMQPError):
            await channel.exchange_delete(exchange_name(namespace))
    finally:
        await connection.close()


class Broker:
    """The run's namespace seen from a test: publish events, inspect queues, read messages."""

    def __init__(self, connection: AbstractRobustConnection, settings: AmqpSettings) -> None:
        self._connection = connection
        self.settings = settings
        self.namespace = settings.namespace

    @classmethod
    @contextlib.asynccontextmanager
    async def open(cls, settings: AmqpSettings) -> AsyncIterator[Broker]:
        connection = await aio_pika.connect_robust(settings.url.get_secret_value())
        try:
            yield cls(connection, settings)
        finally:
            await connection.close()

    def queues(
        self, consumer: str, retry_delays: Sequence[float] = FAST_RETRY_DELAYS
    ) -> ConsumerQueues:
        return consumer_queues(self.namespace, consumer, retry_delays=retry_delays)

    async def publish(
        self,
        envelopes: Iterable[EventEnvelope],
        *,
        batch: int = 200,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        """Publish envelopes as the relay does (persistent, message id = event id, confirmed),
        each with ``headers`` (e.g. a ``traceparent``)."""
        messages = [
            (
                build_message(
                    e.model_dump_json().encode(),
                    message_id=e.id,
                    event_type=e.type,
                    headers=headers,
                ),
                e.type,
            )
            for e in envelopes
        ]
        await self._publish(messages, batch=batch)

    async def publish_raw(self, body: bytes, *, message_id: str, routing_key: str) -> None:
        """Publish any body under an event's routing key (for messages that do not decode)."""
        message = build_message(body, message_id=message_id, event_type=routing_key)
        await self._publish([(message, routing_key)], batch=1)

    async def _publish(self, messages: list[tuple[aio_pika.Message, str]], *, batch: int) -> None:
        channel = await open_channel(self._connection)
        try:
            exchange = await channel.get_exchange(exchange_name(self.namespace), ensure=True)
            for start in range(0, len(messages), batch):
                await asyncio.gather(
                    *(
                        publish_confirmed(exchange, message, key, timeout=10)
                        for message, key in messages[start : start + batch]
                    )
                )
        finally:
            await channel.close()

    async def depth(self, queue: str) -> QueueDepth | None:
        """Ready messages and consumers of ``queue``; None when it does not exist."""
        return await queue_depth(self._connection, queue)

    async def peek(self, queue: str, limit: int = 100) -> list[AbstractIncomingMessage]:
        """Up to ``limit`` messages of ``queue``, left in it (taken unacked, returned on close)."""
        channel = await self._connection.channel()
        try:
            declared = await channel.get_queue(queue, ensure=True)
            messages: list[AbstractIncomingMessage] = []
            while len(messages) < limit:
                message = await declared.get(no_ack=False, fail=False)
                if message is None:
                    break
                messages.append(message)
            return messages
        finally:
            await channel.close()

    async def wait_depth(
        self,
        queue: str,
        *,
        messages: int | None = None,
        consumers: int | None = None,
        seconds: float = 20.0,
    ) -> None:
        """Wait until ``queue`` has exactly ``messages`` ready and at least ``consumers``."""

        async def reached() -> bool:
            depth = await self.depth(queue)
            if depth is None:
                return False
            return (messages is None or depth.messages == messages) and (
                consumers is None or depth.consumers >= consumers
            )

        await wait_until(
            reached,
            seconds=seconds,
            interval=0.05,
            message=f"{queue} never had messages={messages} consumers>={consumers}",
        )

    async def purge(self, queue: str) -> None:
        """Empty ``queue`` (e.g. of events earlier tests left for a consumer nobody ran)."""
        channel = await self._connection.channel()
        try:
            declared = await channel.get_queue(queue, ensure=True)
            await declared.purge()
        finally:
            await channel.close()

    async def delete_queue(self, queue: str) -> None:
        """Delete ``queue`` (its consumers are cancelled by the broker)."""
        channel = await self._connection.channel()
        try:
            await channel.queue_delete(queue)
        finally:
            await channel.close()

    async def waiting(self, queues: ConsumerQueues) -> int:
        """Messages waiting for a consumer: ready in its queue and its retry queues."""
        total = 0
        for name in (queues.main, *queues.retry_queues):
            depth = await self.depth(name)
            total += depth.messages if depth is not None else 0
        return total

    async def dead_letters(self, queues: ConsumerQueues) -> int:
        depth = await self.depth(queues.dead_letter)
        return depth.messages if depth is not None else 0

    async def wait_drained(self, queues: ConsumerQueues, seconds: float = 20.0) -> None:
        """Wait until nothing waits for the consumer (unacked messages still being handled are
        not counted: wait for their effects too where that matters)."""

        async def drained() -> bool:
            return await self.waiting(queues) == 0

        await wait_until(
            drained, seconds=seconds, interval=0.05, message=f"{queues.main} never drained"
        )

    async def assert_drained(
        self, consumer: str, retry_delays: Sequence[float] = FAST_RETRY_DELAYS
    ) -> None:
        """With the consumer stopped, nothing is left: every message was acked, none waits."""
        queues = self.queues(consumer, retry_delays)
        for name in (queues.main, *queues.retry_queues):
            depth = await self.depth(name)
            assert depth is not None, f"{name} does not exist"
            assert depth.messages == 0, f"{name} still holds {depth.messages} message(s)"
