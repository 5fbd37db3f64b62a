"""An event no queue is bound to stays in the outbox, marked, without holding up the rest; once
a consumer of its type has declared its queue, it goes out."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import datetime

import asyncpg
import pytest

from herald_shared.background import running as running_job
from herald_shared.events import EventEnvelope, PostCreated
from herald_shared.messaging.connection import connect
from herald_shared.messaging.consumer import Consumer
from herald_shared.messaging.depth import queue_depth
from herald_shared.messaging.handlers import Event, HandlerTable
from herald_shared.outbox import enqueue_event
from herald_shared.relay import OutboxRelay
from herald_shared.settings import AmqpSettings, ConsumerSettings, RelaySettings
from tests.integration.relay.conftest import Listen, running, unpublished, wait_published
from tests.support.broker import AMQP_URL, FAST_RETRY_DELAYS, delete_namespace
from tests.support.waiting import wait_until

UNROUTABLE = "nothing.bound.here"
SECONDS = 15.0
CONSUMER = "late-consumer"


@pytest.fixture
async def private_namespace(amqp_namespace: str) -> AsyncIterator[AmqpSettings]:
    """A namespace of this test's own: nothing is bound here but what the test binds (the relay
    declares the exchange only)."""
    settings = AmqpSettings(url=AMQP_URL, namespace=f"{amqp_namespace}.unroutable")
    try:
        yield settings
    finally:
        await delete_namespace(AMQP_URL, settings.namespace, [CONSUMER], [tuple(FAST_RETRY_DELAYS)])


def envelope(event_type: str) -> EventEnvelope:
    return EventEnvelope(
        type=event_type, aggregate_id=uuid.uuid4(), aggregate_version=1, data={"probe": True}
    )


async def enqueue(pool: asyncpg.Pool, envelopes: list[EventEnvelope]) -> list[uuid.UUID]:
    async with pool.acquire() as conn, conn.transaction():
        for e in envelopes:
            await enqueue_event(conn, e)
    return [e.id for e in envelopes]


async def test_an_unroutable_event_is_held_and_does_not_block_later_events(
    db_pool: asyncpg.Pool, private_namespace: AmqpSettings, listen: Listen
) -> None:
    queue = await listen(private_namespace.namespace, "post.*")
    # The unroutable row comes first, in the same batch as the routable ones after it.
    [stuck] = await enqueue(db_pool, [envelope(UNROUTABLE)])
    first = await enqueue(db_pool, [envelope("post.created") for _ in range(5)])
    relay = OutboxRelay(
        db_pool,
        private_namespace,
        RelaySettings(sweep_interval_seconds=0.2),
        name="test-unroutable",
    )
    try:
        async with running([relay]):
            await wait_published(db_pool, first, seconds=SECONDS)

            async def marked() -> bool:
                attempts = await db_pool.fetchval(
                    "SELECT attempts FROM outbox WHERE event_id = $1", stuck
                )
                return bool(attempts >= 1)

            await wait_until(marked, seconds=SECONDS, message="unroutable row never marked")
            row = await db_pool.fetchrow(
                "SELECT published_at, attempts, last_error, next_attempt_at, now() AS now"
                " FROM outbox WHERE event_id = $1",
                stuck,
            )
            assert row is not None
            assert row["published_at"] is None
            assert row["attempts"] >= 1
            assert row["last_error"] == "unroutable"
            # Backed off, so the sweep does not retry it in a hot loop.
            next_attempt: datetime = row["next_attempt_at"]
            assert next_attempt > row["now"]

            # Later events still go out while the unroutable one waits.
            later = await enqueue(db_pool, [envelope("post.updated") for _ in range(5)])
            relay.wake()
            await wait_published(db_pool, later, seconds=SECONDS)
            assert await unpublished(db_pool, [stuck]) == {stuck}
            assert relay.stats.unroutable >= 1
    finally:
        # Never leave a row for other relays of this run to keep retrying.
        await db_pool.execute("DELETE FROM outbox WHERE event_id = $1", stuck)

    await queue.collect()
    counts = queue.counts()
    assert {str(e): counts[str(e)] for e in [*first, *later]} == dict.fromkeys(
        map(str, [*first, *later]), 1
    )
    assert str(stuck) not in counts


async def record(event: Event[PostCreated], *, into: list[uuid.UUID]) -> None:
    into.append(event.id)


async def test_an_event_published_before_its_consumer_first_ran_goes_out_once_it_has(
    db_pool: asyncpg.Pool, private_namespace: AmqpSettings
) -> None:
    """The relay declares no consumer's queue: an event written before any consumer of its type
    ever started is held back, and published once that consumer has declared its queue (within
    the hold-back's cap; here the first steps of its backoff, a few seconds)."""
    relay = OutboxRelay(
        db_pool,
        private_namespace,
        RelaySettings(sweep_interval_seconds=0.2),
        name="test-late-consumer",
    )
    early = EventEnvelope.wrap(
        PostCreated(author_id=uuid.uuid4(), status="draft", title="Early", tags=[]),
        aggregate_id=uuid.uuid4(),
        aggregate_version=1,
    )
    handled: list[uuid.UUID] = []
    table = HandlerTable()
    table.idempotent(PostCreated, record, into=handled)
    consumer = Consumer(
        CONSUMER,
        table,
        db=None,
        amqp=private_namespace,
        settings=ConsumerSettings(retry_delays_seconds=list(FAST_RETRY_DELAYS)),
    )
    try:
        async with running([relay]):
            await enqueue(db_pool, [early])

            async def held_back() -> bool:
                row = await db_pool.fetchrow(
                    "SELECT attempts, last_error FROM outbox WHERE event_id = $1", early.id
                )
                return row is not None and row["attempts"] >= 1

            await wait_until(held_back, seconds=SECONDS, message="the early event was published")
            connection = await connect(private_namespace, name="test-probe", attempts=1)
            try:
                assert await queue_depth(connection, consumer.queues.main) is None
            finally:
                await connection.close()

            async with running_job(consumer.run, name="late-consumer", grace=5):

                async def arrived() -> bool:
                    return early.id in handled

                await wait_until(arrived, seconds=30, message="the held event never arrived")
            await wait_published(db_pool, [early.id], seconds=SECONDS)
    finally:
        await db_pool.execute("DELETE FROM outbox WHERE event_id = $1", early.id)
    # Other unpublished rows of the run may come through too; this one came once.
    assert handled.count(early.id) == 1
