"""An event no queue is bound to stays in the outbox, marked, without holding up the rest."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import datetime

import asyncpg
import pytest

from herald_shared.events import EventEnvelope
from herald_shared.outbox import enqueue_event
from herald_shared.relay import OutboxRelay
from herald_shared.settings import AmqpSettings, RelaySettings
from tests.integration.relay.conftest import Listen, running, unpublished, wait_published
from tests.support.broker import AMQP_URL, delete_namespace
from tests.support.waiting import wait_until

UNROUTABLE = "nothing.bound.here"
SECONDS = 15.0


@pytest.fixture
async def private_namespace(amqp_namespace: str) -> AsyncIterator[AmqpSettings]:
    """A namespace of this test's own: no test consumer bound to ``#`` can route anything here;
    only the standard consumer queues the relay declares (bound to ``post.*``) exist."""
    settings = AmqpSettings(url=AMQP_URL, namespace=f"{amqp_namespace}.unroutable")
    try:
        yield settings
    finally:
        await delete_namespace(AMQP_URL, settings.namespace)


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
