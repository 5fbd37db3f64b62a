"""The outbox relay's ceiling, and what pipelining publisher confirms buys.

- ``relay_rate``: ``N`` committed outbox rows, then Herald's ``OutboxRelay`` (the API's own
  class, batch size and settings) publishes them; rate = rows / seconds until none is left.
- ``publish_modes``: ``herald_shared.messaging.publisher.publish_confirmed`` one message at a
  time (each confirm awaited before the next publish) against in flight together in batches of
  the relay's size (as ``OutboxRelay.publish_batch`` does), interleaved A B A B A B.

Both run on uvloop in the harness process, as the relay runs inside the API's event loop.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import Any

import aio_pika
import asyncpg
import uvloop

from bench.env import broker_names, purge_queues
from bench.seams import (
    AmqpSettings,
    EventEnvelope,
    OutboxRelay,
    PostCreated,
    RelaySettings,
    build_message,
    connect,
    declare_exchange,
    open_channel,
    publish_confirmed,
)
from bench.stats import Spread

_FILL = """
INSERT INTO outbox (event_id, event_type, aggregate_id, aggregate_version, payload, headers)
SELECT gen_random_uuid(), 'post.created', gen_random_uuid(), 1, $1::jsonb, '{}'::jsonb
FROM generate_series(1, $2)
"""


def _payload() -> str:
    event = EventEnvelope.wrap(
        PostCreated(author_id=uuid.uuid4(), status="published", title="Relay", tags=["bench"]),
        aggregate_id=uuid.uuid4(),
        aggregate_version=1,
    )
    return event.model_dump_json()


async def _relay_once(pool: asyncpg.Pool, amqp: AmqpSettings, rows: int) -> float:
    relay = OutboxRelay(pool, amqp, RelaySettings(), name="bench-relay")
    stop = asyncio.Event()
    task = asyncio.create_task(relay.run(stop))
    try:
        deadline = time.monotonic() + 30
        while not relay.connected:
            if time.monotonic() > deadline:
                raise RuntimeError("the relay did not connect")
            await asyncio.sleep(0.05)
        await pool.execute(_FILL, _payload(), rows)
        started = time.perf_counter()
        relay.wake()
        while True:
            if not await pool.fetchval("SELECT count(*) FROM outbox WHERE published_at IS NULL"):
                break
            await asyncio.sleep(0.02)
        seconds = time.perf_counter() - started
    finally:
        stop.set()
        await task
    return rows / seconds


async def _bind_a_queue(amqp: AmqpSettings) -> None:
    """A queue for the relayed events (the relay declares no queue: unrouted events would be
    held back in the outbox), emptied with the namespace's other queues after each rep."""
    connection = await connect(amqp, name="bench-relay-queue", attempts=3)
    try:
        channel = await open_channel(connection)
        exchange = await declare_exchange(channel, amqp.namespace)
        queue = await channel.declare_queue(
            f"{amqp.namespace}.bench-relay",
            durable=True,
            arguments={"x-queue-type": "quorum"} if amqp.quorum_queues else {},
        )
        await queue.bind(exchange, routing_key="#")
    finally:
        await connection.close()


async def _relay_rates(dsn: str, amqp: AmqpSettings, rows: int, reps: int) -> list[float]:
    pool = await asyncpg.create_pool(dsn, min_size=2, max_size=10)
    try:
        # Anything earlier phases left unpublished would be counted as ours.
        await pool.execute("UPDATE outbox SET published_at = now() WHERE published_at IS NULL")
        await _bind_a_queue(amqp)
        rates = []
        for rep in range(reps):
            rate = await _relay_once(pool, amqp, rows)
            print(f"  rep {rep + 1} relay: {rows:,} rows at {rate:8,.0f} events/s", flush=True)
            rates.append(rate)
            # Nobody consumes them: tens of thousands of messages left in quorum queues would
            # keep the broker busy during the phases after this one.
            await purge_queues(amqp.url.get_secret_value(), broker_names(amqp.namespace)[0])
        return rates
    finally:
        await pool.close()


def relay_rate(dsn: str, amqp: AmqpSettings, rows: int, reps: int) -> dict[str, Any]:
    rates = uvloop.run(_relay_rates(dsn, amqp, rows, reps))
    return {"rows": rows, "events_per_second": Spread.of(rates).as_dict(), "runs": rates}


async def _publish_modes(amqp: AmqpSettings, messages: int, reps: int) -> dict[str, list[float]]:
    connection = await connect(amqp, name="bench-publish", attempts=3)
    name = f"{amqp.namespace}.bench-publish"
    rates: dict[str, list[float]] = {"one_at_a_time": [], "pipelined": []}
    batch = RelaySettings().batch_size
    timeout = amqp.publish_timeout_seconds
    try:
        channel = await open_channel(connection)
        exchange = await channel.declare_exchange(name, aio_pika.ExchangeType.TOPIC, durable=True)
        queue = await channel.declare_queue(
            name, durable=True, arguments={"x-queue-type": "quorum"} if amqp.quorum_queues else {}
        )
        await queue.bind(exchange, routing_key="#")
        body = _payload().encode()

        def message() -> aio_pika.Message:
            return build_message(body, message_id=uuid.uuid4(), event_type="post.created")

        for rep in range(reps):
            started = time.perf_counter()
            for _ in range(messages):
                await publish_confirmed(exchange, message(), "post.created", timeout=timeout)
            rates["one_at_a_time"].append(messages / (time.perf_counter() - started))
            await queue.purge()
            started = time.perf_counter()
            for first in range(0, messages, batch):
                count = min(batch, messages - first)
                await asyncio.gather(
                    *(
                        publish_confirmed(exchange, message(), "post.created", timeout=timeout)
                        for _ in range(count)
                    )
                )
            rates["pipelined"].append(messages / (time.perf_counter() - started))
            await queue.purge()
            print(
                f"  rep {rep + 1} publish: one at a time {rates['one_at_a_time'][-1]:8,.0f}/s, "
                f"pipelined ({batch} in flight) {rates['pipelined'][-1]:8,.0f}/s",
                flush=True,
            )
        await queue.delete(if_unused=False, if_empty=False)
        await exchange.delete()
    finally:
        await connection.close()
    return rates


def publish_modes(amqp: AmqpSettings, messages: int, reps: int) -> dict[str, Any]:
    rates = uvloop.run(_publish_modes(amqp, messages, reps))
    return {
        "messages": messages,
        "batch": RelaySettings().batch_size,
        **{mode: Spread.of(values).as_dict() for mode, values in rates.items()},
        "runs": rates,
    }
