"""How one consumer process's throughput grows with its concurrency, for an I/O-bound handler.

    .venv/bin/python deploy/local/consumer_concurrency.py [--concurrency 1 4 16 64]
        [--io-ms 20] [--seconds 4]

For each concurrency, in a broker namespace of its own: events enough for about ``--seconds``
at the ideal rate (concurrency / io) are published and confirmed first; then a consumer on
Herald's runtime (``herald_shared.messaging.Consumer``, prefetch twice the concurrency, as in
the manifests) drains them with a handler that only awaits ``--io-ms`` (standing in for a
webhook call or a query) and skips the inbox. Throughput is events over the time from the
first handler's start to the last one's end. The namespace is deleted afterwards. Talks to
RabbitMQ at HERALD_AMQP_URL (loopback by default). docs/operations.md quotes its output.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import time
import uuid

import aio_pika
import aiormq
import uvloop

from herald_shared.events import EventEnvelope, PostCreated
from herald_shared.logs import configure_logging
from herald_shared.messaging.connection import open_channel
from herald_shared.messaging.consumer import Consumer
from herald_shared.messaging.handlers import Event, HandlerTable
from herald_shared.messaging.publisher import build_message, publish_confirmed
from herald_shared.messaging.topology import consumer_queues, declare_consumer, exchange_name
from herald_shared.settings import AmqpSettings, ConsumerSettings, LogSettings

CONSUMER = "concurrency-probe"


def event() -> EventEnvelope:
    data = PostCreated(author_id=uuid.uuid4(), status="draft", title="probe", tags=[])
    return EventEnvelope.wrap(data, aggregate_id=uuid.uuid4(), aggregate_version=1)


async def publish(amqp: AmqpSettings, settings: ConsumerSettings, count: int) -> None:
    queues = consumer_queues(amqp.namespace, CONSUMER, retry_delays=settings.retry_delays_seconds)
    connection = await aio_pika.connect_robust(amqp.url.get_secret_value())
    try:
        channel = await open_channel(connection)
        await declare_consumer(channel, queues, bindings=(PostCreated.type,))
        exchange = await channel.get_exchange(exchange_name(amqp.namespace))
        envelopes = [event() for _ in range(count)]
        messages = [
            build_message(e.model_dump_json().encode(), message_id=e.id, event_type=e.type)
            for e in envelopes
        ]
        for start in range(0, count, 500):
            await asyncio.gather(
                *(
                    publish_confirmed(exchange, message, "post.created", timeout=30)
                    for message in messages[start : start + 500]
                )
            )
    finally:
        await connection.close()


async def delete_namespace(amqp: AmqpSettings, settings: ConsumerSettings) -> None:
    queues = consumer_queues(amqp.namespace, CONSUMER, retry_delays=settings.retry_delays_seconds)
    connection = await aio_pika.connect(amqp.url.get_secret_value())
    try:
        for name in [queues.main, queues.dead_letter, *queues.retry_queues]:
            channel = await connection.channel()
            with contextlib.suppress(aiormq.exceptions.AMQPError):
                await channel.queue_delete(name)
        channel = await connection.channel()
        with contextlib.suppress(aiormq.exceptions.AMQPError):
            await channel.exchange_delete(exchange_name(amqp.namespace))
    finally:
        await connection.close()


async def measure(concurrency: int, io_seconds: float, count: int) -> float:
    """Events per second one process handles at ``concurrency``."""
    amqp = AmqpSettings(namespace=f"probe-{uuid.uuid4().hex[:8]}")
    settings = ConsumerSettings(concurrency=concurrency, prefetch=2 * concurrency)
    stop = asyncio.Event()
    first_start: float | None = None
    last_end = 0.0
    handled = 0

    async def handle(_: Event[PostCreated]) -> None:
        nonlocal first_start, last_end, handled
        if first_start is None:
            first_start = time.perf_counter()
        await asyncio.sleep(io_seconds)
        last_end = time.perf_counter()
        handled += 1
        if handled == count:
            stop.set()

    try:
        await publish(amqp, settings, count)
        handlers = HandlerTable()
        handlers.idempotent(PostCreated, handle)
        consumer = Consumer(
            CONSUMER,
            handlers,
            db=None,
            amqp=amqp,
            settings=settings,
        )
        await consumer.run(stop)
    finally:
        await delete_namespace(amqp, settings)
    assert first_start is not None
    return count / (last_end - first_start)


async def main(levels: list[int], io_ms: float, seconds: float) -> None:
    print(f"handler awaits {io_ms:g} ms; one process; prefetch = 2 x concurrency")
    print(f"{'concurrency':>11} {'events':>7} {'events/s':>9} {'ideal/s':>8} {'of ideal':>8}")
    for concurrency in levels:
        ideal = concurrency / (io_ms / 1000)
        count = max(100, round(ideal * seconds))
        rate = await measure(concurrency, io_ms / 1000, count)
        print(f"{concurrency:>11} {count:>7} {rate:>9.0f} {ideal:>8.0f} {rate / ideal:>8.0%}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 4, 16, 64])
    parser.add_argument("--io-ms", type=float, default=20.0)
    parser.add_argument("--seconds", type=float, default=4.0)
    options = parser.parse_args()
    configure_logging("consumer-concurrency", LogSettings(level="WARNING"))
    uvloop.run(main(options.concurrency, options.io_ms, options.seconds))
