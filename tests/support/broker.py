"""Private RabbitMQ namespaces for test runs, and removing them afterwards."""

from __future__ import annotations

import contextlib
from collections.abc import Iterable

import aio_pika
import aiormq

from herald_shared.messaging.topology import (
    DEFAULT_RETRY_DELAYS,
    SUBSCRIPTIONS,
    consumer_queues,
    exchange_name,
)

AMQP_URL = "amqp://guest:guest@127.0.0.1:5672/"


def queue_names(
    namespace: str, consumers: Iterable[str], retry_delays: Iterable[tuple[float, ...]] = ()
) -> list[str]:
    names: list[str] = []
    delay_sets = [DEFAULT_RETRY_DELAYS, *retry_delays]
    for consumer in {*SUBSCRIPTIONS, *consumers}:
        for delays in delay_sets:
            queues = consumer_queues(namespace, consumer, retry_delays=delays)
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
