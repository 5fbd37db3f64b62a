"""Consumer processes sharing a name share the work: each takes a part, none repeats another's."""

from __future__ import annotations

import asyncpg
import pytest

from tests.integration.events.conftest import (
    effects,
    effects_by_pid,
    post_created,
    wait_for_effects,
)
from tests.support.broker import Broker
from tests.support.services import Processes


@pytest.mark.slow
async def test_two_processes_split_the_events_and_handle_each_exactly_once(
    db_pool: asyncpg.Pool, broker: Broker, processes: Processes, consumer_name: str
) -> None:
    queue = broker.queues(consumer_name).main
    one = await processes.start_consumer(consumer_name, concurrency=8)
    two = await processes.start_consumer(consumer_name, concurrency=8, consumers=2)
    envelopes = [post_created() for _ in range(2000)]
    ids = [e.id for e in envelopes]
    await broker.publish(envelopes)

    await wait_for_effects(db_pool, consumer_name, ids, seconds=90)
    await broker.wait_depth(queue, messages=0)
    assert await one.terminate() == 0
    assert await two.terminate() == 0
    await broker.assert_drained(consumer_name)

    handled = await effects(db_pool, consumer_name, ids)
    assert set(handled) == set(ids)
    assert set(handled.values()) == {1}, {k: v for k, v in handled.items() if v != 1}
    shares = await effects_by_pid(db_pool, consumer_name, ids)
    assert set(shares) == {one.pid, two.pid}, shares
    assert all(n > 0 for n in shares.values()), shares
    assert shares.total() == len(envelopes)
