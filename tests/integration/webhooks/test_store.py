"""The delivery loop's SQL against real PostgreSQL: claims under a lease, concurrent claims
that never share a row, an expired lease, and a lost lease that cannot overwrite."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from datetime import timedelta

import asyncpg
import pytest

from herald_worker.webhooks.store import (
    Attempt,
    ClaimedDelivery,
    DisablePolicy,
    claim_due,
    record_failure,
    record_success,
    reschedule,
)
from tests.conftest import MakeKey
from tests.integration.webhooks.conftest import insert_webhook
from tests.support.waiting import wait_until

POLICY = DisablePolicy(after_consecutive_dead=5, after_failing=timedelta(days=5))
OK = Attempt(200, None, 5)


@pytest.fixture
async def webhook(db_pool: asyncpg.Pool, make_key: MakeKey) -> AsyncIterator[uuid.UUID]:
    """A webhook of its own (other tests' deliveries are cancelled after each test)."""
    key = await make_key()
    webhook_id = await insert_webhook(db_pool, key.account_id, "http://127.0.0.1:9/")
    yield webhook_id
    await db_pool.execute("DELETE FROM webhooks WHERE id = $1", webhook_id)


async def _pending(
    pool: asyncpg.Pool, webhook_id: uuid.UUID, count: int, *, age_seconds: float = 0
) -> set[uuid.UUID]:
    ids = [uuid.uuid4() for _ in range(count)]
    await pool.executemany(
        "INSERT INTO webhook_deliveries (id, webhook_id, event_id, event_type, payload, "
        "next_attempt_at) VALUES ($1, $2, $3, 'post.created', '{}', now() - $4::interval)",
        [(i, webhook_id, uuid.uuid4(), timedelta(seconds=age_seconds)) for i in ids],
    )
    return set(ids)


async def test_concurrent_claims_never_share_a_delivery(
    db_pool: asyncpg.Pool, database_dsn: str, webhook: uuid.UUID
) -> None:
    made = await _pending(db_pool, webhook, 60)
    pool = await asyncpg.create_pool(database_dsn, min_size=6, max_size=6)
    try:

        async def claimer() -> list[uuid.UUID]:
            got: list[uuid.UUID] = []
            for _ in range(10):
                async with pool.acquire() as conn:
                    got += [d.id for d in await claim_due(conn, 3, timedelta(minutes=1))]
            return got

        batches = await asyncio.gather(*(claimer() for _ in range(6)))
    finally:
        await pool.close()
    claimed = [i for batch in batches for i in batch if i in made]
    assert len(claimed) == len(set(claimed)) == 60


async def test_a_claim_hides_the_row_until_its_lease_runs_out(
    db_pool: asyncpg.Pool, webhook: uuid.UUID
) -> None:
    (delivery_id,) = await _pending(db_pool, webhook, 1)
    async with db_pool.acquire() as conn:
        first = [
            d for d in await claim_due(conn, 100, timedelta(seconds=0.5)) if d.id == delivery_id
        ]
        assert len(first) == 1
        assert not [
            d for d in await claim_due(conn, 100, timedelta(minutes=1)) if d.id == delivery_id
        ]
        assert not [d for d in await claim_due(conn, 100, timedelta(minutes=1), room={webhook: 0})]

    # The worker that claimed it "crashed": once the lease runs out another worker takes it.
    second: list[ClaimedDelivery] = []

    async def reclaimed() -> bool:
        async with db_pool.acquire() as conn:
            second.extend(
                d for d in await claim_due(conn, 100, timedelta(minutes=1)) if d.id == delivery_id
            )
        return bool(second)

    await wait_until(reclaimed, seconds=5, message="the expired lease was claimed again")
    async with db_pool.acquire() as conn:
        # The first worker comes back: its lease is gone, so its outcome is not recorded ...
        assert not await record_success(conn, first[0], OK)
        assert not await reschedule(conn, first[0], timedelta(seconds=1))
        assert not await record_failure(
            conn, first[0], OK, retry_after=None, counts_attempt=True, policy=POLICY
        )
        # ... while the current holder's is.
        assert await record_success(conn, second[0], OK)
    row = await db_pool.fetchrow(
        "SELECT status, attempts FROM webhook_deliveries WHERE id = $1", delivery_id
    )
    assert row is not None
    assert (row["status"], row["attempts"]) == ("succeeded", 1)


async def test_a_failure_counts_an_attempt_and_a_success_clears_the_record(
    db_pool: asyncpg.Pool, webhook: uuid.UUID
) -> None:
    await _pending(db_pool, webhook, 2)
    async with db_pool.acquire() as conn:
        first, second = [
            d for d in await claim_due(conn, 100, timedelta(minutes=1)) if d.webhook_id == webhook
        ]
        failed = Attempt(503, "HTTP 503", 40)
        assert await record_failure(
            conn, first, failed, retry_after=None, counts_attempt=True, policy=POLICY
        )
        hook = await conn.fetchrow(
            "SELECT consecutive_failures, failing_since FROM webhooks WHERE id = $1", webhook
        )
        assert hook is not None
        assert hook["consecutive_failures"] == 1
        assert hook["failing_since"] is not None
        dead = await conn.fetchrow(
            "SELECT status, attempts, last_status_code, last_error, last_latency_ms "
            "FROM webhook_deliveries WHERE id = $1",
            first.id,
        )
        assert dead is not None
        assert tuple(dead) == ("dead", 1, 503, "HTTP 503", 40)
        assert await record_success(conn, second, OK)
        hook = await conn.fetchrow(
            "SELECT consecutive_failures, failing_since FROM webhooks WHERE id = $1", webhook
        )
        assert hook is not None
        assert (hook["consecutive_failures"], hook["failing_since"]) == (0, None)


async def test_a_claim_takes_no_more_of_a_webhook_than_its_destination_has_room_for(
    db_pool: asyncpg.Pool, make_key: MakeKey, webhook: uuid.UUID
) -> None:
    key = await make_key()
    other = await insert_webhook(db_pool, key.account_id, "http://127.0.0.1:10/")
    # A large, older backlog for one webhook in front of a few rows of another.
    backlog = await _pending(db_pool, webhook, 200, age_seconds=60)
    behind = await _pending(db_pool, other, 3)
    async with db_pool.acquire() as conn:
        first = await claim_due(conn, 10, timedelta(minutes=1), per_webhook=4)
        assert len(first) == 4
        assert {d.id for d in first} <= backlog
        # The delivery loop's next claim leaves the now full destination out: the backlog
        # does not hide the other webhook's rows.
        second = await claim_due(conn, 6, timedelta(minutes=1), room={webhook: 0}, per_webhook=4)
        assert {d.id for d in second} == behind
        # With room for one more at the first webhook's destination, one more is taken.
        third = await claim_due(conn, 10, timedelta(minutes=1), room={webhook: 1}, per_webhook=4)
        assert [d.webhook_id for d in third] == [webhook]
        assert not await claim_due(conn, 10, timedelta(minutes=1), room={webhook: 0})
