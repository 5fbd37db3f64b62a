"""A consumer process killed mid-batch loses nothing and duplicates nothing; one stopped with
SIGTERM finishes what it has started within the grace period and hands the rest back."""

from __future__ import annotations

import signal
import time

import asyncpg

from tests.integration.events.conftest import (
    attempted,
    count_effects,
    effects,
    post_created,
    wait_for_effects,
)
from tests.support.broker import Broker
from tests.support.processes import kill_group
from tests.support.services import Processes
from tests.support.waiting import wait_until


async def test_a_consumer_killed_mid_batch_loses_and_duplicates_nothing(
    db_pool: asyncpg.Pool, broker: Broker, processes: Processes, consumer_name: str
) -> None:
    first = await processes.start_consumer(consumer_name, behaviour="slow:0.01", concurrency=8)
    envelopes = [post_created() for _ in range(500)]
    ids = [e.id for e in envelopes]
    await broker.publish(envelopes)

    async def some_handled() -> bool:
        return await count_effects(db_pool, consumer_name, ids) >= 50

    await wait_until(some_handled, seconds=30, message="the first consumer handled nothing")
    kill_group(first.process, signal.SIGKILL)
    assert await first.wait_exit(10) == -signal.SIGKILL
    handled_before = await count_effects(db_pool, consumer_name, ids)
    assert handled_before < len(envelopes), "the kill came too late to interrupt the batch"

    second = await processes.start_consumer(consumer_name, behaviour="slow:0.01", concurrency=8)
    await wait_for_effects(db_pool, consumer_name, ids, seconds=60)
    await broker.wait_depth(broker.queues(consumer_name).main, messages=0)
    assert await second.terminate() == 0
    await broker.assert_drained(consumer_name)

    handled = await effects(db_pool, consumer_name, ids)
    assert set(handled) == set(ids)
    assert set(handled.values()) == {1}, {k: v for k, v in handled.items() if v != 1}


async def test_sigterm_lets_in_flight_handlers_finish_and_leaves_the_rest_queued(
    db_pool: asyncpg.Pool, broker: Broker, processes: Processes, consumer_name: str
) -> None:
    grace = 5.0
    queue = broker.queues(consumer_name).main
    first = await processes.start_consumer(
        consumer_name, behaviour="slow:1.5", concurrency=4, prefetch=16, grace=grace
    )
    envelopes = [post_created() for _ in range(8)]
    ids = [e.id for e in envelopes]
    await broker.publish(envelopes)

    async def four_running() -> bool:
        return len(await attempted(db_pool, consumer_name, ids)) >= 4

    await wait_until(four_running, seconds=10, message="handlers never started")
    started = time.monotonic()
    kill_group(first.process, signal.SIGTERM)
    assert await first.wait_exit(grace + 5) == 0, first.log_tail()
    assert time.monotonic() - started < grace

    in_flight = await attempted(db_pool, consumer_name, ids)
    assert len(in_flight) == 4, "only the handlers in flight may have run"
    assert set(await effects(db_pool, consumer_name, ids)) == in_flight
    rest = [i for i in ids if i not in in_flight]
    await broker.wait_depth(queue, messages=len(rest))

    second = await processes.start_consumer(consumer_name, behaviour="slow:0.01", concurrency=4)
    await wait_for_effects(db_pool, consumer_name, rest)
    await broker.wait_depth(queue, messages=0)
    assert await second.terminate() == 0
    await broker.assert_drained(consumer_name)
    assert await effects(db_pool, consumer_name, ids) == dict.fromkeys(ids, 1)


async def test_handlers_outliving_the_grace_period_are_rolled_back_and_handed_back(
    db_pool: asyncpg.Pool, broker: Broker, processes: Processes, consumer_name: str
) -> None:
    grace = 0.5
    queue = broker.queues(consumer_name).main
    first = await processes.start_consumer(
        consumer_name, behaviour="slow:30", concurrency=2, grace=grace
    )
    envelopes = [post_created() for _ in range(2)]
    ids = [e.id for e in envelopes]
    await broker.publish(envelopes)

    async def both_running() -> bool:
        return len(await attempted(db_pool, consumer_name, ids)) == 2

    await wait_until(both_running, seconds=10, message="handlers never started")
    started = time.monotonic()
    kill_group(first.process, signal.SIGTERM)
    assert await first.wait_exit(10) == 0, first.log_tail()
    assert time.monotonic() - started < grace + 5
    assert await count_effects(db_pool, consumer_name, ids) == 0
    inbox = await db_pool.fetchval(
        "SELECT count(*) FROM processed_events WHERE consumer = $1 AND event_id = ANY($2::uuid[])",
        consumer_name,
        ids,
    )
    assert inbox == 0, "a cancelled handler's inbox row was committed"
    await broker.wait_depth(queue, messages=2)

    second = await processes.start_consumer(consumer_name, behaviour="ok")
    await wait_for_effects(db_pool, consumer_name, ids)
    await broker.wait_depth(queue, messages=0)
    assert await second.terminate() == 0
    await broker.assert_drained(consumer_name)
    assert await effects(db_pool, consumer_name, ids) == dict.fromkeys(ids, 1)
