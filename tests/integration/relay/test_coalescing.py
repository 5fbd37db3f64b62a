"""Wake-ups are coalesced: commits that arrive while a woken relay waits its short window share
one claim transaction; a lone event goes out after the window, not at the next sweep; a burst
of writers, each waking the relay, has every row published exactly once.

The relays here sweep once a minute: only wake-ups can publish within the tests' deadlines.
"""

from __future__ import annotations

import asyncio
import uuid

import asyncpg

from herald_shared.events import EventEnvelope
from herald_shared.outbox import enqueue_event
from herald_shared.relay import OutboxRelay
from herald_shared.settings import AmqpSettings, RelaySettings
from tests.integration.relay.conftest import Listen, PrivateQueue, running, wait_published
from tests.support.waiting import wait_until

SWEEP_SECONDS = 60.0
PUBLISH_SECONDS = 10.0
#: The relay connects to the broker before its start-up sweep.
START_SECONDS = 30.0


async def write(pool: asyncpg.Pool, event_type: str) -> uuid.UUID:
    """One outbox row, committed in a transaction of its own."""
    envelope = EventEnvelope(
        type=event_type, aggregate_id=uuid.uuid4(), aggregate_version=1, data={}
    )
    async with pool.acquire() as conn:
        await enqueue_event(conn, envelope)
    return envelope.id


async def started(
    db_pool: asyncpg.Pool, listen: Listen, namespace: str
) -> tuple[str, PrivateQueue, uuid.UUID]:
    """A routing key of the test's own with a queue bound to it, and a marker row under it for
    the relay's start-up sweep (published once that sweep is over)."""
    event_type = f"test.relay-coalesce.{uuid.uuid4().hex[:12]}"
    queue = await listen(namespace, event_type)
    marker = await write(db_pool, event_type)
    return event_type, queue, marker


async def published_at(pool: asyncpg.Pool, event_ids: list[uuid.UUID]) -> set[object]:
    """``published_at`` is the claim transaction's ``now()``: one value per claim."""
    rows = await pool.fetch(
        "SELECT published_at FROM outbox WHERE event_id = ANY($1::uuid[])", event_ids
    )
    return {row["published_at"] for row in rows}


async def test_commits_during_the_window_share_the_woken_claim(
    db_pool: asyncpg.Pool, amqp_settings: AmqpSettings, listen: Listen
) -> None:
    event_type, queue, marker = await started(db_pool, listen, amqp_settings.namespace)
    in_window = asyncio.Event()
    window_over = asyncio.Event()

    async def window() -> None:
        in_window.set()
        await window_over.wait()

    relay = OutboxRelay(
        db_pool,
        amqp_settings,
        RelaySettings(sweep_interval_seconds=SWEEP_SECONDS),
        name="test-relay-window",
        coalesce=window,
    )

    async def woken() -> bool:
        return in_window.is_set()

    async with running([relay]):
        try:
            await wait_published(db_pool, [marker], seconds=START_SECONDS)
            first = await write(db_pool, event_type)
            relay.wake()
            await wait_until(woken, seconds=PUBLISH_SECONDS, message="never woken")
            later = [await write(db_pool, event_type) for _ in range(2)]
            for _ in later:
                relay.wake()
        finally:
            window_over.set()
        rows = [first, *later]
        await wait_published(db_pool, rows, seconds=PUBLISH_SECONDS)
        await queue.wait_for([str(row) for row in rows], seconds=PUBLISH_SECONDS)
    assert len(await published_at(db_pool, rows)) == 1, "the rows were claimed separately"
    assert queue.duplicates() == {}


async def test_a_lone_event_is_published_after_the_window_not_the_sweep(
    db_pool: asyncpg.Pool, amqp_settings: AmqpSettings, listen: Listen
) -> None:
    event_type, queue, marker = await started(db_pool, listen, amqp_settings.namespace)
    settings = RelaySettings(sweep_interval_seconds=SWEEP_SECONDS)
    assert 0 < settings.coalesce_seconds <= 0.001
    relay = OutboxRelay(db_pool, amqp_settings, settings, name="test-relay-lone")
    async with running([relay]):
        await wait_published(db_pool, [marker], seconds=START_SECONDS)
        lone = await write(db_pool, event_type)
        relay.wake()
        await wait_published(db_pool, [lone], seconds=PUBLISH_SECONDS)
        await queue.wait_for([str(lone)], seconds=PUBLISH_SECONDS)


async def test_a_burst_of_woken_writes_is_published_exactly_once(
    db_pool: asyncpg.Pool, amqp_settings: AmqpSettings, listen: Listen
) -> None:
    event_type, queue, marker = await started(db_pool, listen, amqp_settings.namespace)
    relay = OutboxRelay(
        db_pool,
        amqp_settings,
        RelaySettings(sweep_interval_seconds=SWEEP_SECONDS, batch_size=25),
        name="test-relay-burst",
    )

    async def writer() -> list[uuid.UUID]:
        written = []
        for _ in range(10):
            written.append(await write(db_pool, event_type))
            relay.wake()
        return written

    async with running([relay]):
        await wait_published(db_pool, [marker], seconds=START_SECONDS)
        rows = [row for rows in await asyncio.gather(*(writer() for _ in range(8))) for row in rows]
        await wait_published(db_pool, rows, seconds=PUBLISH_SECONDS * 3)
        await queue.wait_for([str(row) for row in rows], seconds=PUBLISH_SECONDS)
    await queue.collect()
    assert queue.duplicates() == {}
    assert len(queue.messages) == len(rows) + 1  # and the marker
