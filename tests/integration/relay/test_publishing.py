"""The outbox relay publishes committed outbox rows to the event exchange, once each."""

from __future__ import annotations

import uuid

import aio_pika
import asyncpg
import httpx

from herald_shared.events import EventEnvelope, PostCreated
from herald_shared.messaging.topology import exchange_name
from herald_shared.outbox import enqueue_event
from herald_shared.relay import OutboxRelay
from herald_shared.settings import AmqpSettings, RelaySettings
from tests.conftest import MakeKey
from tests.integration.relay.conftest import Listen, running, wait_published
from tests.support.http import create_post

PUBLISH_SECONDS = 15.0
BULK_ROWS = 1000


async def test_a_created_post_is_published_with_its_event_properties(
    client: httpx.AsyncClient,
    make_key: MakeKey,
    db_pool: asyncpg.Pool,
    amqp_namespace: str,
    listen: Listen,
) -> None:
    queue = await listen(amqp_namespace, "post.*")
    key = await make_key()

    post = await create_post(client, key, title="Relayed", tags=["relay"], status="published")

    [row] = await db_pool.fetch(
        "SELECT event_id, event_type FROM outbox WHERE aggregate_id = $1", uuid.UUID(post["id"])
    )
    event_id = row["event_id"]
    await wait_published(db_pool, [event_id], seconds=PUBLISH_SECONDS)
    await queue.wait_for([str(event_id)], seconds=PUBLISH_SECONDS)

    [message] = [m for m in queue.messages if m.message_id == str(event_id)]
    assert message.exchange == exchange_name(amqp_namespace)
    assert message.routing_key == "post.created"
    assert message.delivery_mode == aio_pika.DeliveryMode.PERSISTENT
    assert message.type == row["event_type"] == "post.created"
    assert message.content_type == "application/json"
    envelope = EventEnvelope.model_validate_json(message.body)
    assert envelope.id == event_id
    assert str(envelope.aggregate_id) == post["id"]
    payload = envelope.payload()
    assert isinstance(payload, PostCreated)
    assert payload.author_id == key.account_id
    assert payload.title == "Relayed"
    assert payload.tags == ["relay"]


async def test_two_relays_draining_together_publish_every_row_exactly_once(
    db_pool: asyncpg.Pool, amqp_settings: AmqpSettings, listen: Listen
) -> None:
    # A routing key of this test's own: only its private queue is bound to it.
    event_type = f"test.relay-bulk.{uuid.uuid4().hex[:12]}"
    queue = await listen(amqp_settings.namespace, event_type)
    envelopes = [
        EventEnvelope(
            type=event_type, aggregate_id=uuid.uuid4(), aggregate_version=1, data={"n": n}
        )
        for n in range(BULK_ROWS)
    ]
    async with db_pool.acquire() as conn, conn.transaction():
        for envelope in envelopes:
            await enqueue_event(conn, envelope)
    event_ids = [envelope.id for envelope in envelopes]
    # Small batches, so the two relays claim many batches each, side by side.
    relay_settings = RelaySettings(batch_size=50, sweep_interval_seconds=0.2)
    relays = [
        OutboxRelay(db_pool, amqp_settings, relay_settings, name=f"test-relay-{n}")
        for n in range(2)
    ]

    async with running(relays):
        await wait_published(db_pool, event_ids, seconds=60)
    # Both relays have stopped and every publish was confirmed: the queue holds all there is.
    await queue.collect()

    counts = queue.counts()
    expected = {str(event_id) for event_id in event_ids}
    missing = expected - counts.keys()
    unexpected = counts.keys() - expected
    assert not missing, f"{len(missing)} published rows never arrived"
    assert not unexpected, (
        f"{len(unexpected)} messages nobody wrote: {sorted(map(str, unexpected))[:5]}"
    )
    assert queue.duplicates() == {}, f"{len(queue.duplicates())} event ids arrived twice or more"
    assert len(queue.messages) == BULK_ROWS
    shares = [relay.stats.published for relay in relays]
    assert all(share > 0 for share in shares), f"one relay did all the work: {shares}"
    assert sum(shares) >= BULK_ROWS
