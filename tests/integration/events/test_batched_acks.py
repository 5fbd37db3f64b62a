"""Acks go out in batches, never across a delivery still in flight: deliveries handled behind a
slow one stay unacked until it ends. A consumer killed then loses nothing — the broker
redelivers them — and duplicates nothing: their effects, already committed, are not applied
again."""

from __future__ import annotations

import signal
import uuid
from collections import Counter

import asyncpg

from herald_shared.events import EventEnvelope, PostCreated
from tests.integration.events.conftest import effects, wait_for_effects
from tests.support.broker import Broker
from tests.support.processes import kill_group
from tests.support.services import Processes

HOLD = "hold"


def post(title: str) -> EventEnvelope:
    data = PostCreated(author_id=uuid.uuid4(), status="draft", title=title, tags=[])
    return EventEnvelope.wrap(data, aggregate_id=uuid.uuid4(), aggregate_version=1)


async def test_a_consumer_killed_before_its_batched_acks_redelivers_without_double_effects(
    broker: Broker, processes: Processes, db_pool: asyncpg.Pool, consumer_name: str
) -> None:
    first = await processes.start_consumer(
        consumer_name, behaviour=f"slow-on:{HOLD}:60", concurrency=4, prefetch=16
    )
    slow = post(HOLD)
    fast = [post("quick") for _ in range(3)]
    # The slow one first: it is the oldest delivery, and holds back the acks of the others.
    await broker.publish([slow])
    await broker.publish(fast)
    fast_ids = [e.id for e in fast]
    await wait_for_effects(db_pool, consumer_name, fast_ids, seconds=20)

    kill_group(first.process, signal.SIGKILL)
    await first.wait_exit(10)
    second = await processes.start_consumer(consumer_name, concurrency=4, prefetch=16)
    every_id = [slow.id, *fast_ids]
    await wait_for_effects(db_pool, consumer_name, every_id, seconds=30)
    await broker.wait_drained(broker.queues(consumer_name))

    assert await effects(db_pool, consumer_name, every_id) == Counter(dict.fromkeys(every_id, 1))
    # Each of them came back to the second process (whose inbox skipped it): its ack had been
    # held, not sent, when the first one died.
    redelivered = {
        record.get("event_id")
        for record in second.log_lines()
        if record.get("event") == "duplicate event skipped"
    }
    assert redelivered == {str(event_id) for event_id in fast_ids}
