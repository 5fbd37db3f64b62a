"""A consumer process on Herald's consumer runtime, as the worker runs it — robust connection,
prefetch, concurrency, ack, retries — with the benchmark's trivial task: one Redis ``INCR`` per
message (the first and the ``BENCH_EXPECTED``-th store their time), exactly as the Celery,
Dramatiq and FastStream tasks of ``bench.peer_consumers`` are timed.

Run as ``python -m bench.consumer_app``; configured by environment:

- ``BENCH_CONSUMER``: the consumer (queue) name;
- ``BENCH_IDEMPOTENT``: ``1`` registers the task as idempotent by construction (the runtime
  skips the inbox); otherwise it runs inside the inbox transaction, which records the event as
  applied (one PostgreSQL transaction per message);
- ``BENCH_COUNTER_KEY``, ``BENCH_EXPECTED``: the Redis key prefix and the message count;
- the usual ``HERALD_DB_*``, ``HERALD_AMQP_*``, ``HERALD_REDIS_URL`` and ``HERALD_CONSUMER_*``.
"""

from __future__ import annotations

import os
import time
from collections.abc import Awaitable, Callable

import redis.asyncio as redis
import uvloop

from bench.seams import (
    AmqpSettings,
    Consumer,
    ConsumerSettings,
    DatabaseSettings,
    Event,
    LogSettings,
    PostCreated,
    configure_logging,
    create_database,
    handler_table,
    serve,
)


def count_handler(
    client: redis.Redis, key: str, expected: int
) -> Callable[[Event[PostCreated]], Awaitable[None]]:
    async def handle(event: Event[PostCreated]) -> None:
        seen = await client.incr(f"{key}:count")
        if seen == 1:
            await client.set(f"{key}:first", time.time())
        if seen == expected:
            await client.set(f"{key}:last", time.time())

    return handle


async def main() -> None:
    name = os.environ["BENCH_CONSUMER"]
    idempotent = os.environ.get("BENCH_IDEMPOTENT") == "1"
    client = redis.Redis.from_url(os.environ.get("HERALD_REDIS_URL", "redis://127.0.0.1:6379/0"))
    handle = count_handler(
        client, os.environ["BENCH_COUNTER_KEY"], int(os.environ["BENCH_EXPECTED"])
    )
    try:
        async with create_database(DatabaseSettings(), application_name=f"bench-{name}") as db:
            consumer = Consumer(
                name,
                handler_table(handle, idempotent=idempotent),
                db=db,
                amqp=AmqpSettings(),
                settings=ConsumerSettings(),
            )
            await serve(consumer)
    finally:
        await client.aclose()


if __name__ == "__main__":
    configure_logging(f"bench-{os.environ.get('BENCH_CONSUMER', 'consumer')}", LogSettings())
    uvloop.run(main())
