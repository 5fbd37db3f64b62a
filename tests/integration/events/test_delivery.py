"""Events reach a real consumer process exactly once: through the outbox relay, when the broker
delivers the same event twice, and after transient failures retried through the retry queues."""

from __future__ import annotations

import uuid

import asyncpg
import httpx

from tests.conftest import MakeKey
from tests.integration.events.conftest import attempts, effects, post_created, wait_for_effects
from tests.support.broker import Broker
from tests.support.http import create_post
from tests.support.services import Processes
from tests.support.waiting import wait_until


async def test_an_event_written_with_a_post_is_handled_exactly_once(
    client: httpx.AsyncClient,
    make_key: MakeKey,
    db_pool: asyncpg.Pool,
    broker: Broker,
    processes: Processes,
    consumer_name: str,
) -> None:
    consumer = await processes.start_consumer(consumer_name)
    post = await create_post(client, await make_key(), title="Relayed")
    event_id: uuid.UUID = await db_pool.fetchval(
        "SELECT event_id FROM outbox WHERE aggregate_id = $1", uuid.UUID(post["id"])
    )

    await wait_for_effects(db_pool, consumer_name, [event_id])
    await broker.wait_depth(broker.queues(consumer_name).main, messages=0)
    assert await consumer.terminate() == 0
    await broker.assert_drained(consumer_name)
    assert await effects(db_pool, consumer_name, [event_id]) == {event_id: 1}
    published = await db_pool.fetchval(
        "SELECT published_at FROM outbox WHERE event_id = $1", event_id
    )
    assert published is not None


async def test_a_redelivered_event_has_one_effect_and_one_inbox_row(
    db_pool: asyncpg.Pool, broker: Broker, processes: Processes, consumer_name: str
) -> None:
    consumer = await processes.start_consumer(consumer_name)
    envelope = post_created()
    await broker.publish([envelope])
    await broker.publish([envelope])

    await wait_for_effects(db_pool, consumer_name, [envelope.id])

    async def both_delivered() -> bool:
        depth = await broker.depth(broker.queues(consumer_name).main)
        return depth is not None and depth.messages == 0

    await wait_until(both_delivered, seconds=10, message="the duplicate was never delivered")
    assert await consumer.terminate() == 0
    await broker.assert_drained(consumer_name)
    assert await effects(db_pool, consumer_name, [envelope.id]) == {envelope.id: 1}
    inbox_rows = await db_pool.fetchval(
        "SELECT count(*) FROM processed_events WHERE consumer = $1 AND event_id = $2",
        consumer_name,
        envelope.id,
    )
    assert inbox_rows == 1
    # The duplicate was recognised before the handler ran.
    assert len(await attempts(db_pool, consumer_name, envelope.id)) == 1


async def test_transient_failures_are_retried_with_growing_delays(
    db_pool: asyncpg.Pool, broker: Broker, processes: Processes, consumer_name: str
) -> None:
    delays = (0.2, 0.6)
    consumer = await processes.start_consumer(
        consumer_name,
        behaviour="fail-transient:2",
        retry_delays=delays,
        # One try per delivery: every retry goes through a retry queue and its TTL.
        in_process_attempts=1,
    )
    envelope = post_created()
    await broker.publish([envelope])

    await wait_for_effects(db_pool, consumer_name, [envelope.id])
    assert await consumer.terminate() == 0
    await broker.assert_drained(consumer_name, delays)

    assert await effects(db_pool, consumer_name, [envelope.id]) == {envelope.id: 1}
    tries = await attempts(db_pool, consumer_name, envelope.id)
    assert [t["attempt"] for t in tries] == [1, 2, 3]
    first_gap = (tries[1]["at"] - tries[0]["at"]).total_seconds()
    second_gap = (tries[2]["at"] - tries[1]["at"]).total_seconds()
    assert first_gap >= delays[0], tries
    assert second_gap >= delays[1], tries
    assert second_gap > first_gap, tries
    dead = await broker.depth(broker.queues(consumer_name, delays).dead_letter)
    assert dead is not None
    assert dead.messages == 0
