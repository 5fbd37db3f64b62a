"""The inbox transaction on a real PostgreSQL: one claim per (consumer, event), effects commit
or roll back with it, and a concurrent claim of the same event waits for the first to end."""

from __future__ import annotations

import asyncio
import uuid

import asyncpg

from herald_shared.messaging.inbox import commit, open_inbox, rollback
from tests.support.waiting import wait_until


async def _rows(pool: asyncpg.Pool, consumer: str, event_id: uuid.UUID) -> int:
    count: int = await pool.fetchval(
        "SELECT count(*) FROM processed_events WHERE consumer = $1 AND event_id = $2",
        consumer,
        event_id,
    )
    return count


async def test_an_event_is_claimed_once_per_consumer(db_pool: asyncpg.Pool) -> None:
    event_id = uuid.uuid4()
    async with db_pool.acquire() as conn:
        assert await open_inbox(conn, "first", event_id)
        await commit(conn)
        assert not await open_inbox(conn, "first", event_id)
        await rollback(conn)
        assert await open_inbox(conn, "second", event_id)
        await commit(conn)
        assert not conn.is_in_transaction()
    assert await _rows(db_pool, "first", event_id) == 1
    assert await _rows(db_pool, "second", event_id) == 1


async def test_effects_and_the_claim_roll_back_together(db_pool: asyncpg.Pool) -> None:
    event_id = uuid.uuid4()
    await db_pool.execute("CREATE TABLE inbox_effects (event_id uuid NOT NULL)")
    async with db_pool.acquire() as conn:
        assert await open_inbox(conn, "worker", event_id)
        await conn.execute("INSERT INTO inbox_effects VALUES ($1)", event_id)
        await rollback(conn)
        assert not conn.is_in_transaction()
    assert await _rows(db_pool, "worker", event_id) == 0
    assert await db_pool.fetchval("SELECT count(*) FROM inbox_effects") == 0
    async with db_pool.acquire() as conn:
        # Rolled back, the event is new again: a redelivery applies it.
        assert await open_inbox(conn, "worker", event_id)
        await conn.execute("INSERT INTO inbox_effects VALUES ($1)", event_id)
        await commit(conn)
    assert await db_pool.fetchval("SELECT count(*) FROM inbox_effects") == 1


async def test_a_concurrent_claim_waits_and_then_sees_the_event_applied(
    db_pool: asyncpg.Pool,
) -> None:
    event_id = uuid.uuid4()
    async with db_pool.acquire() as first, db_pool.acquire() as second:
        assert await open_inbox(first, "worker", event_id)
        contender = asyncio.create_task(open_inbox(second, "worker", event_id))

        async def waiting_on_the_lock() -> bool:
            waiting: int = await db_pool.fetchval(
                "SELECT count(*) FROM pg_stat_activity "
                "WHERE datname = current_database() AND wait_event_type = 'Lock' "
                "AND query LIKE 'BEGIN; INSERT INTO processed_events%'"
            )
            return waiting == 1

        await wait_until(waiting_on_the_lock, seconds=10, message="the second claim never waited")
        assert not contender.done()
        await commit(first)
        assert await contender is False
        await rollback(second)
    assert await _rows(db_pool, "worker", event_id) == 1
