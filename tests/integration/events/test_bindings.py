"""A consumer's queue is bound to the event types of its handler table, and nothing reaching it
goes unhandled unnoticed: an event it has no handler for (through an old binding, or a schema
version it does not know) is dead-lettered with the reason, counted and logged.

The runtime runs in the test's process, in a broker namespace of the test's own, so that
nothing but this consumer's queue is bound there.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator

import aio_pika
import pytest
from prometheus_client import REGISTRY
from structlog.testing import capture_logs

from herald_shared.background import running
from herald_shared.events import EventEnvelope, PostCreated, PostUpdated
from herald_shared.messaging.consumer import Consumer
from herald_shared.messaging.depth import QueueDepth, queue_depth
from herald_shared.messaging.failures import UNHANDLED
from herald_shared.messaging.handlers import Event, HandlerTable
from herald_shared.messaging.headers import ERROR_CLASS, ERROR_MESSAGE, REASON
from herald_shared.messaging.publisher import UnroutableError
from herald_shared.messaging.topology import exchange_name
from herald_shared.settings import AmqpSettings, ConsumerSettings
from tests.integration.events.conftest import post_created
from tests.support.broker import AMQP_URL, FAST_RETRY_DELAYS, Broker, delete_namespace
from tests.support.waiting import wait_until

SECONDS = 20.0


@pytest.fixture
async def private_broker(amqp_namespace: str, consumer_name: str) -> AsyncIterator[Broker]:
    settings = AmqpSettings(url=AMQP_URL, namespace=f"{amqp_namespace}.{consumer_name}")
    try:
        async with Broker.open(settings) as broker:
            yield broker
    finally:
        await delete_namespace(AMQP_URL, settings.namespace, [consumer_name], [FAST_RETRY_DELAYS])


async def record(event: Event[PostCreated], *, into: list[uuid.UUID]) -> None:
    into.append(event.id)


async def start(broker: Broker, name: str, handled: list[uuid.UUID]) -> Consumer:
    table = HandlerTable()
    table.idempotent(PostCreated, record, into=handled)
    return Consumer(
        name,
        table,
        db=None,
        amqp=broker.settings,
        settings=ConsumerSettings(retry_delays_seconds=list(FAST_RETRY_DELAYS)),
    )


def unhandled_count(queue: str, event_type: str) -> float:
    labels = {"queue": queue, "event_type": event_type}
    return REGISTRY.get_sample_value("herald_messages_unhandled_total", labels) or 0.0


async def test_the_queue_is_bound_to_the_types_its_handlers_take_and_no_others(
    private_broker: Broker, consumer_name: str
) -> None:
    handled: list[uuid.UUID] = []
    consumer = await start(private_broker, consumer_name, handled)
    async with running(consumer.run, name="consumer", grace=5):
        await asyncio.wait_for(consumer.ready.wait(), SECONDS)
        updated = EventEnvelope.wrap(
            PostUpdated(
                author_id=uuid.uuid4(),
                status="draft",
                title="t",
                tags=[],
                previous_status="draft",
            ),
            aggregate_id=uuid.uuid4(),
            aggregate_version=2,
        )
        # Nothing in this namespace is bound to post.updated: the broker returns it.
        with pytest.raises(UnroutableError):
            await private_broker.publish([updated])
        created = post_created()
        await private_broker.publish([created])

        async def handled_it() -> bool:
            return created.id in handled

        await wait_until(handled_it, seconds=SECONDS, message="post.created never handled")
    assert handled == [created.id]


async def test_an_event_without_a_handler_is_dead_lettered_counted_and_logged(
    private_broker: Broker, consumer_name: str
) -> None:
    handled: list[uuid.UUID] = []
    consumer = await start(private_broker, consumer_name, handled)
    queues = consumer.queues
    before = (
        unhandled_count(queues.main, "post.updated"),
        unhandled_count(queues.main, "post.created"),
    )
    with capture_logs() as logs:
        async with running(consumer.run, name="consumer", grace=5):
            await asyncio.wait_for(consumer.ready.wait(), SECONDS)
            # A binding left from when the service still handled post.updated.
            await bind(private_broker, queues.main, "post.updated")
            stale_binding = EventEnvelope.wrap(
                PostUpdated(
                    author_id=uuid.uuid4(),
                    status="draft",
                    title="t",
                    tags=[],
                    previous_status="draft",
                ),
                aggregate_id=uuid.uuid4(),
                aggregate_version=2,
            )
            known = post_created()
            newer_schema = known.model_copy(update={"id": uuid.uuid4(), "schema_version": 2})
            await private_broker.publish([stale_binding, newer_schema, known])
            await private_broker.wait_depth(queues.dead_letter, messages=2, seconds=SECONDS)
            letters = {m.message_id: m for m in await private_broker.peek(queues.dead_letter)}

    assert handled == [known.id]
    assert set(letters) == {str(stale_binding.id), str(newer_schema.id)}
    for letter in letters.values():
        assert letter.headers[REASON] == UNHANDLED
        assert letter.headers[ERROR_CLASS] == "UnhandledEventError"
    assert letters[str(newer_schema.id)].headers[ERROR_MESSAGE] == (
        "no handler for post.created schema version 2"
    )
    after = (
        unhandled_count(queues.main, "post.updated"),
        unhandled_count(queues.main, "post.created"),
    )
    assert (after[0] - before[0], after[1] - before[1]) == (1, 1)
    logged = [
        (entry["event_type"], entry["schema_version"])
        for entry in logs
        if entry["log_level"] == "error" and entry["event"].startswith("no handler")
    ]
    assert sorted(logged) == [("post.created", 2), ("post.updated", 1)]


async def bind(broker: Broker, queue: str, routing_key: str) -> None:
    connection = await aio_pika.connect(AMQP_URL)
    try:
        channel = await connection.channel()
        exchange = await channel.get_exchange(exchange_name(broker.namespace))
        declared = await channel.get_queue(queue)
        await declared.bind(exchange, routing_key=routing_key)
    finally:
        await connection.close()


async def test_queue_depth_counts_ready_messages_and_consumers_or_says_none(
    private_broker: Broker, consumer_name: str
) -> None:
    name = f"{private_broker.namespace}.{consumer_name}"
    connection = await aio_pika.connect(AMQP_URL)
    try:
        assert await queue_depth(connection, name) is None
        channel = await connection.channel()
        await channel.declare_queue(name, durable=True)
        await channel.default_exchange.publish(aio_pika.Message(b"x"), routing_key=name)
        await private_broker.wait_depth(name, messages=1, seconds=SECONDS)
        assert await queue_depth(connection, name) == QueueDepth(messages=1, consumers=0)
        # The helper's own channels are closed either way: the connection is still usable.
        assert await queue_depth(connection, f"{name}.missing") is None
        assert await queue_depth(connection, name) == QueueDepth(messages=1, consumers=0)
    finally:
        await connection.close()
