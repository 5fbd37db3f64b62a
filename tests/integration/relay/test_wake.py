"""A committed write wakes its process's relay: the event goes out at once, not at the next sweep.

The relays here sweep once a minute, so only the wake-up can publish within the deadline. Each
test first lets the relay finish its start-up sweep (it publishes a row written beforehand,
under a routing key of the test's own), so the write that follows is not caught by that sweep.
"""

from __future__ import annotations

import uuid
from dataclasses import replace

import asyncpg

from herald_api.settings import Settings
from herald_shared.events import EventEnvelope, PostCreated
from herald_shared.outbox import enqueue_event
from herald_shared.settings import RelaySettings
from tests.conftest import MakeKey
from tests.integration.relay.conftest import Listen, PrivateQueue, wait_published
from tests.support.apps import running_api
from tests.support.broker import Broker
from tests.support.services import Processes
from tests.support.waiting import wait_until

#: Far beyond any test's deadline: a row published sooner was published by a wake-up.
SWEEP_SECONDS = 60.0
WAKE_SECONDS = 10.0
#: For the start-up sweep (the process connects to the broker first).
START_SECONDS = 30.0


async def write_marker(pool: asyncpg.Pool, queue_namespace: str, listen: Listen) -> uuid.UUID:
    """An outbox row under a routing key of its own, bound to a private queue so it routes."""
    event_type = f"test.relay-wake.{uuid.uuid4().hex[:12]}"
    await listen(queue_namespace, event_type)
    envelope = EventEnvelope(
        type=event_type, aggregate_id=uuid.uuid4(), aggregate_version=1, data={}
    )
    async with pool.acquire() as conn:
        await enqueue_event(conn, envelope)
    return envelope.id


async def outbox_row(pool: asyncpg.Pool, aggregate_id: uuid.UUID, event_type: str) -> uuid.UUID:
    event_id: uuid.UUID | None = await pool.fetchval(
        "SELECT event_id FROM outbox WHERE aggregate_id = $1 AND event_type = $2",
        aggregate_id,
        event_type,
    )
    assert event_id is not None, f"no {event_type} row for {aggregate_id}"
    return event_id


async def test_an_api_write_is_published_at_once_by_the_relay_it_wakes(
    settings: Settings, make_key: MakeKey, db_pool: asyncpg.Pool, listen: Listen
) -> None:
    namespace = settings.amqp.namespace
    events: PrivateQueue = await listen(namespace, "post.created")
    marker = await write_marker(db_pool, namespace, listen)
    slow_sweep = replace(settings, relay=RelaySettings(sweep_interval_seconds=SWEEP_SECONDS))
    key = await make_key()

    async with running_api(slow_sweep) as api:
        await wait_published(db_pool, [marker], seconds=START_SECONDS)

        response = await api.http.post(
            "/v1/posts", json={"title": "Woken", "body": "now"}, headers=key.headers
        )
        assert response.status_code == 201, response.text
        event_id = await outbox_row(db_pool, uuid.UUID(response.json()["id"]), "post.created")
        await wait_published(db_pool, [event_id], seconds=WAKE_SECONDS)
        await events.wait_for([str(event_id)], seconds=WAKE_SECONDS)


async def test_a_handler_commit_wakes_the_worker_relay_for_the_event_it_emits(
    processes: Processes,
    broker: Broker,
    make_key: MakeKey,
    db_pool: asyncpg.Pool,
    listen: Listen,
) -> None:
    namespace = broker.namespace
    enriched: PrivateQueue = await listen(namespace, "post.enriched")
    marker = await write_marker(db_pool, namespace, listen)
    await processes.start_service(
        "herald_worker", "worker", {"HERALD_RELAY_SWEEP_INTERVAL_SECONDS": str(SWEEP_SECONDS)}
    )
    # No API runs here: the worker's relay is the only one, and its start-up sweep is over.
    await wait_published(db_pool, [marker], seconds=START_SECONDS)

    author = (await make_key()).account_id
    post_id = uuid.uuid4()
    await db_pool.execute(
        "INSERT INTO posts (id, author_id, title, body, tags, status) "
        "VALUES ($1, $2, 'Woken', 'by the handler', '{}', 'draft')",
        post_id,
        author,
    )
    created = PostCreated(author_id=author, status="draft", title="Woken", tags=[])
    await broker.publish([EventEnvelope.wrap(created, aggregate_id=post_id, aggregate_version=1)])

    async def enrichment_row() -> bool:
        return bool(
            await db_pool.fetchval(
                "SELECT true FROM outbox WHERE aggregate_id = $1 AND event_type = 'post.enriched'",
                post_id,
            )
        )

    await wait_until(enrichment_row, seconds=START_SECONDS, message="the post was not enriched")
    event_id = await outbox_row(db_pool, post_id, "post.enriched")
    await wait_published(db_pool, [event_id], seconds=WAKE_SECONDS)
    await enriched.wait_for([str(event_id)], seconds=WAKE_SECONDS)
