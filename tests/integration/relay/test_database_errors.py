"""The relay outlives database errors: it keeps relaying once the database answers again."""

from __future__ import annotations

import uuid

import asyncpg

from herald_shared.events import EventEnvelope
from herald_shared.outbox import enqueue_event
from herald_shared.relay import OutboxRelay
from herald_shared.settings import AmqpSettings, RelaySettings
from tests.integration.relay.conftest import Listen, running, unpublished, wait_published
from tests.support.waiting import wait_until

SECONDS = 20.0


async def enqueue_one(pool: asyncpg.Pool, event_type: str) -> uuid.UUID:
    envelope = EventEnvelope(
        type=event_type, aggregate_id=uuid.uuid4(), aggregate_version=1, data={}
    )
    async with pool.acquire() as conn, conn.transaction():
        await enqueue_event(conn, envelope)
    return envelope.id


async def test_the_relay_resumes_after_its_claim_hits_the_statement_timeout(
    database_dsn: str, db_pool: asyncpg.Pool, amqp_settings: AmqpSettings, listen: Listen
) -> None:
    """A lock on the outbox held past the statement timeout (a migration, say) cancels the
    relay's claim; the relay must carry on, not die with the error."""
    event_type = f"test.relay-db.{uuid.uuid4().hex[:12]}"
    app_name = f"relay-{uuid.uuid4().hex[:12]}"
    queue = await listen(amqp_settings.namespace, event_type)
    relay_pool = await asyncpg.create_pool(
        database_dsn,
        min_size=1,
        max_size=1,
        server_settings={"statement_timeout": "300", "application_name": app_name},
    )
    relay = OutboxRelay(
        relay_pool, amqp_settings, RelaySettings(sweep_interval_seconds=0.1), name=app_name
    )

    async def relay_query_state() -> tuple[str, str | None] | None:
        row = await db_pool.fetchrow(
            "SELECT state, wait_event_type FROM pg_stat_activity WHERE application_name = $1",
            app_name,
        )
        return None if row is None else (row["state"], row["wait_event_type"])

    try:
        async with running([relay]) as [task]:
            before = await enqueue_one(db_pool, event_type)
            await wait_published(db_pool, [before], seconds=SECONDS)

            async with db_pool.acquire() as locker, locker.transaction():
                await locker.execute("LOCK TABLE outbox IN ACCESS EXCLUSIVE MODE")

                async def relay_blocked() -> bool:
                    return await relay_query_state() == ("active", "Lock")

                async def relay_cancelled() -> bool:
                    return await relay_query_state() != ("active", "Lock")

                await wait_until(relay_blocked, seconds=SECONDS, message="relay never blocked")
                await wait_until(relay_cancelled, seconds=SECONDS, message="never cancelled")

            after = await enqueue_one(db_pool, event_type)
            relay.wake()

            async def published_or_relay_gone() -> bool:
                return task.done() or not await unpublished(db_pool, [after])

            await wait_until(published_or_relay_gone, seconds=SECONDS, message="not published")
            assert not task.done(), "the relay died of the database error"
    finally:
        await relay_pool.close()
    await queue.collect()
    assert queue.counts() == {str(before): 1, str(after): 1}
