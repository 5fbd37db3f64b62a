"""``herald status`` run as a command against real queues and a real outbox.

The test has a database and a broker namespace of its own, so every number the command prints
is one the test caused: messages dead-lettered and retried by the real consumer runtime (a
consumer named ``worker``, so the command knows it), messages left ready once it stopped, and
outbox rows of known age.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from datetime import datetime
from pathlib import Path

import asyncpg
import pytest

from herald_shared.events import EventEnvelope, PostCreated
from herald_shared.settings import AmqpSettings
from tests.support.broker import AMQP_URL, Broker, delete_namespace
from tests.support.cli import run_herald
from tests.support.databases import own_database
from tests.support.services import Processes

CONSUMER = "worker"
#: One long retry step: a retried message stays in its retry queue for the whole test.
RETRY_DELAYS = (60.0,)
OLDEST_SECONDS = 90


@pytest.fixture
async def status_database() -> AsyncIterator[str]:
    async with own_database("status") as dsn:
        yield dsn


@pytest.fixture
async def status_broker() -> AsyncIterator[Broker]:
    namespace = f"test-status-{uuid.uuid4().hex[:8]}"
    try:
        async with Broker.open(AmqpSettings(url=AMQP_URL, namespace=namespace)) as broker:
            yield broker
    finally:
        await delete_namespace(AMQP_URL, namespace, [CONSUMER], [RETRY_DELAYS])


def post_created() -> EventEnvelope:
    data = PostCreated(author_id=uuid.uuid4(), status="draft", title="Counted", tags=[])
    return EventEnvelope.wrap(data, aggregate_id=uuid.uuid4(), aggregate_version=1)


def status_rows(output: str) -> dict[str, list[str]]:
    """The queue table's rows by queue name: READY, RETRYING, DEAD, CONSUMERS."""
    header, *lines = output.split("\n\n")[0].splitlines()
    assert header.split() == ["QUEUE", "READY", "RETRYING", "DEAD", "CONSUMERS"], output
    return {queue: cells for queue, *cells in (line.split() for line in lines)}


async def insert_outbox_row(
    conn: asyncpg.Connection, age_seconds: float, *, published: bool = False
) -> None:
    await conn.execute(
        "INSERT INTO outbox (event_id, event_type, aggregate_id, aggregate_version, payload, "
        "created_at, published_at) VALUES ($1, 'post.created', $2, 1, '{}', "
        "now() - make_interval(secs => $3), CASE WHEN $4 THEN now() END)",
        uuid.uuid4(),
        uuid.uuid4(),
        age_seconds,
        published,
    )


async def test_status_shows_ready_retrying_and_dead_messages_and_the_outbox_age(
    status_database: str, status_broker: Broker, redis_prefix: str, tmp_path: Path
) -> None:
    queues = status_broker.queues(CONSUMER, RETRY_DELAYS)
    # Processes on the test's own database and namespace (not the run's shared ones).
    processes = Processes(
        status_database, status_broker.settings, redis_prefix, status_broker, tmp_path, set(), set()
    )
    try:
        consumer = await processes.start_consumer(
            CONSUMER, behaviour="fail-transient:1", retry_delays=RETRY_DELAYS, in_process_attempts=1
        )
        for _ in range(2):
            await status_broker.publish_raw(
                b"not an event", message_id=str(uuid.uuid4()), routing_key="post.created"
            )
        await status_broker.publish([post_created()])  # fails once: into the retry queue
        await status_broker.wait_depth(queues.dead_letter, messages=2)
        await status_broker.wait_depth(queues.retry_queues[0], messages=1)
        assert await consumer.terminate() == 0
        await status_broker.publish([post_created() for _ in range(3)])
        await status_broker.wait_depth(queues.main, messages=3)
    finally:
        processes.kill_all()

    conn = await asyncpg.connect(status_database)
    try:
        await insert_outbox_row(conn, 3600, published=True)  # older, but published: not counted
        await insert_outbox_row(conn, OLDEST_SECONDS)
        await insert_outbox_row(conn, 5)
        created: datetime = await conn.fetchval(
            "SELECT min(created_at) FROM outbox WHERE published_at IS NULL"
        )
        before: datetime = await conn.fetchval("SELECT clock_timestamp()")
        code, out, err = await run_herald(
            ["status"],
            {
                "HERALD_DB_DSN": status_database,
                "HERALD_AMQP_URL": AMQP_URL,
                "HERALD_AMQP_NAMESPACE": status_broker.namespace,
                "HERALD_CONSUMER_RETRY_DELAYS_SECONDS": json.dumps(list(RETRY_DELAYS)),
            },
        )
        after: datetime = await conn.fetchval("SELECT clock_timestamp()")
    finally:
        await conn.close()

    assert code == 0, err
    rows = status_rows(out)
    assert rows[queues.main] == ["3", "1", "2", "0"], out
    # No cache-invalidator ever ran in this namespace: its queues do not exist.
    invalidator = status_broker.queues("cache-invalidator", RETRY_DELAYS)
    ready, _, dead, consumers = rows[invalidator.main]
    assert (ready, dead, consumers) == ("-", "-", "-"), out

    summary = out.split("\n\n")[1].strip()
    unpublished, _, oldest = summary.removeprefix("outbox: ").partition(" unpublished, oldest ")
    assert unpublished == "2", summary
    age = float(oldest.removesuffix("s"))
    # The command read its clock between ours: the age lies between the two (to its 0.1 s).
    assert (before - created).total_seconds() - 0.05 <= age, summary
    assert age <= (after - created).total_seconds() + 0.05, summary
    assert age >= OLDEST_SECONDS
