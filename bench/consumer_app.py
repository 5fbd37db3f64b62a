"""A consumer process on Herald's shared runtime (``herald_shared.messaging``), as the worker
runs it — robust connection, prefetch, inbox deduplication in one transaction, ack — with a
handler of the benchmark's. Run as ``python -m bench.consumer_app``; configured by environment:

- ``BENCH_CONSUMER``: the consumer (queue) name;
- ``BENCH_MODE=record``: the handler records ``(event_id, aggregate_id, clock_timestamp())`` in
  ``bench_handled`` inside the inbox transaction (commit → handled latency, lost, duplicated);
- ``BENCH_MODE=count``: a trivial task — nothing but the inbox row — timed with one Redis
  ``INCR`` per message (the first and the ``BENCH_EXPECTED``-th store their time), exactly as
  the Celery task of ``bench.celery_app`` is timed;
- the usual ``HERALD_DB_*``, ``HERALD_AMQP_*``, ``HERALD_REDIS_URL`` and ``HERALD_CONSUMER_*``.
"""

from __future__ import annotations

import os
import time

import redis.asyncio as redis
import uvloop

from herald_shared.db import Connection, create_database
from herald_shared.events import PostCreated
from herald_shared.logs import configure_logging
from herald_shared.messaging.consumer import Consumer
from herald_shared.messaging.handlers import Event, HandlerTable
from herald_shared.messaging.service import serve
from herald_shared.settings import AmqpSettings, ConsumerSettings, DatabaseSettings, LogSettings

HANDLED_TABLE = """
CREATE TABLE IF NOT EXISTS bench_handled (
    event_id uuid NOT NULL, aggregate_id uuid NOT NULL,
    handled_at timestamptz NOT NULL DEFAULT clock_timestamp())
"""


async def record(event: Event[PostCreated], tx: Connection) -> None:
    await tx.execute(
        "INSERT INTO bench_handled (event_id, aggregate_id) VALUES ($1, $2)",
        event.id,
        event.aggregate_id,
    )


async def count(
    event: Event[PostCreated], tx: Connection, *, client: redis.Redis, key: str, expected: int
) -> None:
    seen = await client.incr(f"{key}:count")
    if seen == 1:
        await client.set(f"{key}:first", time.time())
    if seen == expected:
        await client.set(f"{key}:last", time.time())


async def main() -> None:
    name = os.environ["BENCH_CONSUMER"]
    mode = os.environ.get("BENCH_MODE", "record")
    client = redis.Redis.from_url(os.environ.get("HERALD_REDIS_URL", "redis://127.0.0.1:6379/0"))
    handlers = HandlerTable()
    if mode == "count":
        key, expected = os.environ["BENCH_COUNTER_KEY"], int(os.environ["BENCH_EXPECTED"])
        handlers.inbox(PostCreated, count, client=client, key=key, expected=expected)
    else:
        handlers.inbox(PostCreated, record)
    try:
        async with create_database(DatabaseSettings(), application_name=f"bench-{name}") as db:
            consumer = Consumer(
                name,
                handlers,
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
