"""The FastStream side of the worker comparison: the same trivial task on the same RabbitMQ.

Built as FastStream's documentation shows: a ``RabbitBroker``, a ``FastStream`` app and an
``async`` subscriber on a durable quorum queue (``RabbitQueue(..., queue_type=QUORUM)``), with
Herald's consumer prefetch (32) on its channel. FastStream acknowledges after the handler
returned (its default ack policy) and runs the messages the prefetch lets in concurrently (one
task per delivery, as aio-pika does). Its per-message logs are at INFO, so the process logs at
WARNING, as every consumer in the comparison does. Run as ``python -m bench.faststream_app``
(what ``faststream run bench.faststream_app:app`` does, on uvloop like Herald's services);
``python -m bench.faststream_app fill N`` publishes ``N`` messages first.

The task is timed exactly as ``bench.consumer_app``'s: one Redis ``INCR``, and the first and the
``BENCH_EXPECTED``-th message store their time.
"""

from __future__ import annotations

import asyncio
import logging
import os
import sys
import time

import redis.asyncio as redis
import uvloop
from faststream import FastStream
from faststream.rabbit import Channel, QueueType, RabbitBroker, RabbitQueue

QUEUE = os.environ.get("BENCH_PEER_QUEUE", "bench-faststream")
PREFETCH = int(os.environ.get("BENCH_PREFETCH", "32"))

broker = RabbitBroker(
    os.environ.get("BENCH_PEER_AMQP_URL", "amqp://guest:guest@127.0.0.1/"),
    default_channel=Channel(prefetch_count=PREFETCH),
)
app = FastStream(broker)
client = redis.Redis.from_url(os.environ.get("HERALD_REDIS_URL", "redis://127.0.0.1/0"))
queue = RabbitQueue(QUEUE, durable=True, queue_type=QueueType.QUORUM)


@broker.subscriber(queue)
async def noop(event_id: str) -> None:
    """Nothing but the timing: the trivial task every runtime runs."""
    key = os.environ["BENCH_COUNTER_KEY"]
    seen = await client.incr(f"{key}:count")
    if seen == 1:
        await client.set(f"{key}:first", time.time())
    if seen == int(os.environ["BENCH_EXPECTED"]):
        await client.set(f"{key}:last", time.time())


async def fill(messages: int) -> None:
    """Publish ``messages`` messages to the queue (200 confirms in flight at a time)."""
    async with RabbitBroker(os.environ["BENCH_PEER_AMQP_URL"]) as producer:
        await producer.declare_queue(queue)
        for first in range(0, messages, 200):
            batch = range(first, min(first + 200, messages))
            await asyncio.gather(*(producer.publish(f"event-{i}", queue=queue) for i in batch))


if __name__ == "__main__":
    logging.basicConfig(level=logging.WARNING)
    if sys.argv[1:2] == ["fill"]:
        uvloop.run(fill(int(sys.argv[2])))
    else:
        uvloop.run(app.run())
