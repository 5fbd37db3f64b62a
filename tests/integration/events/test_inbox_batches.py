"""Inbox deliveries in flight together share one transaction, each event in a savepoint: a
handler that fails takes only its own event back (its batch-mates commit, it is retried and
applied once), and a duplicate inside one batch is skipped.

The consumer is paused (SIGSTOP) while the events are published, so that on SIGCONT it finds
them all delivered at once, as a busy consumer does; the effects record the id of the
transaction they committed in. The recording handler makes a few queries of its own on other
connections, so the batch window is widened to keep a loaded machine from splitting batches."""

from __future__ import annotations

import signal
import uuid
from collections import Counter

import asyncpg

from herald_shared.events import EventEnvelope, PostCreated
from tests.integration.events.conftest import effects, wait_for_effects
from tests.support.broker import Broker
from tests.support.processes import ServiceProcess, kill_group
from tests.support.services import Processes

BATCHING = {"HERALD_CONSUMER_INBOX_BATCH_WINDOW_SECONDS": "2"}


def post(title: str) -> EventEnvelope:
    data = PostCreated(author_id=uuid.uuid4(), status="draft", title=title, tags=[])
    return EventEnvelope.wrap(data, aggregate_id=uuid.uuid4(), aggregate_version=1)


async def deliver_at_once(
    consumer: ServiceProcess, broker: Broker, envelopes: list[EventEnvelope]
) -> None:
    kill_group(consumer.process, signal.SIGSTOP)
    try:
        await broker.publish(envelopes)
    finally:
        kill_group(consumer.process, signal.SIGCONT)


async def transactions(
    pool: asyncpg.Pool, consumer: str, event_ids: list[uuid.UUID]
) -> dict[uuid.UUID, int]:
    rows = await pool.fetch(
        "SELECT event_id, xid FROM test_effects WHERE consumer = $1 AND event_id = ANY($2)",
        consumer,
        event_ids,
    )
    return {row["event_id"]: row["xid"] for row in rows}


async def test_a_failing_event_rolls_back_alone_and_its_batch_mates_commit(
    broker: Broker, processes: Processes, db_pool: asyncpg.Pool, consumer_name: str
) -> None:
    consumer = await processes.start_consumer(
        consumer_name, behaviour="fail-once-on:bad", concurrency=8, prefetch=16, env=BATCHING
    )
    bad = post("bad")
    good = [post("good") for _ in range(5)]
    await deliver_at_once(consumer, broker, [good[0], good[1], bad, *good[2:]])
    every_id = [e.id for e in [bad, *good]]
    await wait_for_effects(db_pool, consumer_name, every_id, seconds=20)
    await broker.wait_drained(broker.queues(consumer_name))

    assert await effects(db_pool, consumer_name, every_id) == Counter(dict.fromkeys(every_id, 1))
    tries = await db_pool.fetch(
        "SELECT xid FROM test_attempts WHERE consumer = $1 AND event_id = $2 ORDER BY at",
        consumer_name,
        bad.id,
    )
    assert len(tries) == 2, "the failing event was not retried once"
    committed = await transactions(db_pool, consumer_name, [e.id for e in good])
    mates = [event_id for event_id, xid in committed.items() if xid == tries[0]["xid"]]
    # Its first try ran in a batch whose other events committed without it.
    assert len(mates) >= 1, f"no batch-mate of the failed try committed: {committed}"
    assert (await transactions(db_pool, consumer_name, [bad.id]))[bad.id] != tries[0]["xid"]


async def test_duplicates_inside_one_batch_are_applied_once(
    broker: Broker, processes: Processes, db_pool: asyncpg.Pool, consumer_name: str
) -> None:
    consumer = await processes.start_consumer(
        consumer_name, concurrency=8, prefetch=16, env=BATCHING
    )
    twice = post("twice")
    others = [post("other") for _ in range(3)]
    await deliver_at_once(consumer, broker, [twice, others[0], twice, others[1], twice, others[2]])
    every_id = [twice.id, *(e.id for e in others)]
    await wait_for_effects(db_pool, consumer_name, every_id, seconds=20)
    await broker.wait_drained(broker.queues(consumer_name))

    assert await effects(db_pool, consumer_name, every_id) == Counter(dict.fromkeys(every_id, 1))
    committed = await transactions(db_pool, consumer_name, every_id)
    assert len(set(committed.values())) < len(every_id), "no two events shared a transaction"
    skipped = [
        record
        for record in consumer.log_lines()
        if record.get("event") == "duplicate event skipped"
        and record.get("event_id") == str(twice.id)
    ]
    assert len(skipped) == 2
