"""Clean-up jobs delete a backlog one transaction per batch, while the job's lock (its
leadership among replicas) is held across the batches."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from datetime import timedelta

import asyncpg
import pytest

from herald_worker.jobs.cleanup import cleanup_jobs
from herald_worker.jobs.periodic import JobRun, PeriodicJob, run_if_due

RETENTION = timedelta(hours=1)
BATCH = 100
ROWS = 250


@pytest.fixture
async def short_statements(database_dsn: str) -> AsyncIterator[asyncpg.Pool]:
    """A pool whose statements are cancelled after 300 ms, as the worker's are after theirs."""
    pool = await asyncpg.create_pool(
        database_dsn, min_size=1, max_size=3, server_settings={"statement_timeout": "300"}
    )
    try:
        yield pool
    finally:
        await pool.close()


def outbox_cleanup() -> PeriodicJob:
    [job] = [
        job
        for job in cleanup_jobs(
            every=timedelta(0),
            outbox_retention=RETENTION,
            inbox_retention=RETENTION,
            delivery_retention=RETENTION,
            batch=BATCH,
        )
        if job.name == "cleanup.outbox"
    ]
    return job


async def published_long_ago(pool: asyncpg.Pool, event_type: str, rows: int) -> None:
    await pool.execute(
        """
        INSERT INTO outbox (event_id, event_type, aggregate_id, aggregate_version, payload,
                            published_at)
        SELECT gen_random_uuid(), $1, gen_random_uuid(), 1, '{}', now() - interval '2 hours'
        FROM generate_series(1, $2)
        """,
        event_type,
        rows,
    )


async def left(pool: asyncpg.Pool, event_type: str) -> int:
    count: int = await pool.fetchval(
        "SELECT count(*) FROM outbox WHERE event_type = $1", event_type
    )
    return count


async def test_a_failing_batch_keeps_the_batches_committed_before_it(
    db_pool: asyncpg.Pool, short_statements: asyncpg.Pool
) -> None:
    """The third batch runs past the statement timeout (as a batch of a large backlog may):
    the two before it stay deleted, and the next run carries on from there."""
    event_type = f"test.cleanup.{uuid.uuid4().hex[:8]}"
    await published_long_ago(db_pool, event_type, ROWS)
    tag = event_type.replace(".", "_")
    await db_pool.execute(
        f"""
        CREATE SEQUENCE {tag}_deleted;
        CREATE FUNCTION {tag}_slow() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            IF nextval('{tag}_deleted') > {2 * BATCH} THEN PERFORM pg_sleep(2); END IF;
            RETURN OLD;
        END $$;
        CREATE TRIGGER {tag}_slow BEFORE DELETE ON outbox FOR EACH ROW
            WHEN (OLD.event_type = '{event_type}') EXECUTE FUNCTION {tag}_slow();
        """
    )
    try:
        with pytest.raises(asyncpg.QueryCanceledError):
            await run_if_due(short_statements, outbox_cleanup(), asyncio.Event())
        assert await left(db_pool, event_type) == ROWS - 2 * BATCH
    finally:
        await db_pool.execute(
            f"DROP TRIGGER {tag}_slow ON outbox; DROP FUNCTION {tag}_slow(); "
            f"DROP SEQUENCE {tag}_deleted"
        )
    assert await run_if_due(short_statements, outbox_cleanup(), asyncio.Event())
    assert await left(db_pool, event_type) == 0


async def test_the_jobs_lock_is_held_between_its_transactions(db_pool: asyncpg.Pool) -> None:
    """While a run is between two of its transactions, another replica finds the job taken,
    even though the job's period (none here) has passed."""
    between = asyncio.Event()
    carry_on = asyncio.Event()

    async def two_steps(run: JobRun) -> str:
        async with run.transaction() as conn:
            await conn.execute("SELECT 1")
        between.set()
        await carry_on.wait()
        async with run.transaction() as conn:
            await conn.execute("SELECT 2")
        return "two steps"

    async def one_step(_: JobRun) -> str:
        return "one step"

    name = f"test-two-steps-{uuid.uuid4().hex[:8]}"
    job, same_job_elsewhere = (
        PeriodicJob(name, timedelta(0), two_steps),
        PeriodicJob(name, timedelta(0), one_step),
    )
    first = asyncio.create_task(run_if_due(db_pool, job, asyncio.Event()))
    await between.wait()
    ran = await run_if_due(db_pool, same_job_elsewhere, asyncio.Event())
    carry_on.set()
    assert await first
    assert not ran, "two replicas ran the job at once"
    assert await run_if_due(db_pool, same_job_elsewhere, asyncio.Event()), "the lock stayed"


async def test_a_rotated_secret_is_forgotten_once_its_overlap_is_over(
    db_pool: asyncpg.Pool,
) -> None:
    account = await db_pool.fetchval(
        "INSERT INTO accounts (id, name) VALUES (gen_random_uuid(), $1) RETURNING id",
        f"acct-{uuid.uuid4().hex[:12]}",
    )
    over, running = uuid.uuid4(), uuid.uuid4()
    for webhook_id, expires in ((over, timedelta(seconds=-1)), (running, timedelta(hours=1))):
        await db_pool.execute(
            "INSERT INTO webhooks (id, account_id, url, event_types, secret, previous_secret, "
            "previous_secret_expires_at) VALUES ($1, $2, 'https://example.com/', '{*}', "
            "'whsec_new', 'whsec_old', now() + $3::interval)",
            webhook_id,
            account,
            expires,
        )
    [job] = [
        job
        for job in cleanup_jobs(
            every=timedelta(0),
            outbox_retention=RETENTION,
            inbox_retention=RETENTION,
            delivery_retention=RETENTION,
        )
        if job.name == "cleanup.webhook_previous_secrets"
    ]
    assert await run_if_due(db_pool, job, asyncio.Event())
    rows = {
        row["id"]: row["previous_secret"]
        for row in await db_pool.fetch(
            "SELECT id, previous_secret FROM webhooks WHERE id = ANY($1::uuid[])", [over, running]
        )
    }
    assert rows == {over: None, running: "whsec_old"}
