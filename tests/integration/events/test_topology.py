"""The queues a consumer declares: a delivery limit that turns a crash loop into a dead letter
(with the broker's reason, shown by ``herald dlq list``); quorum retry and main queues that
dead-letter at least once; an existing queue declared by an earlier version still used; classic
queues still working where the broker has no quorum queues."""

from __future__ import annotations

import json
import uuid

import aio_pika
import aiormq
import asyncpg
import pytest
from aiormq.abc import FieldValue

from herald_shared.events import EventEnvelope, PostCreated
from herald_shared.messaging.topology import ConsumerQueues, consumer_queues
from tests.conftest import TEST_RETRY_DELAYS
from tests.integration.events.conftest import cli_env, effects, post_created, wait_for_effects
from tests.support.broker import AMQP_URL, FAST_RETRY_DELAYS, Broker
from tests.support.cli import run_herald
from tests.support.consumer_app import CRASH_STATUS
from tests.support.processes import ServiceProcess
from tests.support.services import Processes
from tests.support.waiting import wait_until

POISON = "poison"
DELIVERY_LIMIT = 2


def titled(title: str) -> EventEnvelope:
    data = PostCreated(author_id=uuid.uuid4(), status="draft", title=title, tags=[])
    return EventEnvelope.wrap(data, aggregate_id=uuid.uuid4(), aggregate_version=1)


async def test_an_event_that_kills_its_consumer_is_dead_lettered_by_the_delivery_limit(
    db_pool: asyncpg.Pool, broker: Broker, processes: Processes, consumer_name: str
) -> None:
    """Restarted by its supervisor (here: the test), the consumer dies each time the event is
    delivered, until the broker's delivery limit dead-letters it."""
    queues = broker.queues(consumer_name)

    def start() -> ServiceProcess:
        # Not waiting for it to consume: a restarted one may die before it could be seen doing so.
        return processes.start(
            consumer_name,
            ["-m", "tests.support.consumer_app"],
            {
                "HERALD_TEST_CONSUMER": consumer_name,
                "HERALD_TEST_BEHAVIOUR": f"crash-on:{POISON}",
                "HERALD_CONSUMER_CONCURRENCY": "1",
                "HERALD_CONSUMER_PREFETCH": "1",
                "HERALD_CONSUMER_DELIVERY_LIMIT": str(DELIVERY_LIMIT),
            },
        )

    consumer = start()
    await processes.wait_consuming(consumer, queues.main)
    poison, normal = titled(POISON), post_created()
    await broker.publish([poison, normal])
    crashes = 0

    async def settled() -> bool:
        nonlocal consumer, crashes
        if consumer.process.poll() is not None:
            assert consumer.process.returncode == CRASH_STATUS, consumer.log_tail()
            crashes += 1
            assert crashes <= DELIVERY_LIMIT + 1, f"crash-looping: {crashes} crashes"
            consumer = start()
        return await broker.dead_letters(queues) == 1

    await wait_until(
        settled, seconds=60, interval=0.1, message="the poison event was not dead-lettered"
    )
    assert crashes == DELIVERY_LIMIT + 1
    await wait_for_effects(db_pool, consumer_name, [normal.id])
    assert await effects(db_pool, consumer_name, [poison.id, normal.id]) == {normal.id: 1}

    [letter] = await broker.peek(queues.dead_letter)
    assert letter.message_id == str(poison.id)
    code, out, err = await run_herald(["dlq", "list", consumer_name], cli_env(processes))
    assert code == 0, err
    assert str(poison.id) in out
    assert f"delivery_limit (dead-lettered by the broker from {queues.main})" in out
    assert await consumer.terminate() == 0


async def _redeclare(queue: str, arguments: dict[str, FieldValue]) -> None:
    """Declare ``queue`` again with ``arguments``: the broker refuses (PRECONDITION_FAILED) unless
    they are the ones it was declared with."""
    connection = await aio_pika.connect(AMQP_URL)
    try:
        channel = await connection.channel()
        await channel.declare_queue(queue, durable=True, arguments=arguments)
    finally:
        await connection.close()


async def test_retries_and_dead_letters_are_quorum_queues_that_dead_letter_at_least_once(
    broker: Broker, processes: Processes, consumer_name: str
) -> None:
    """The broker keeps what it dead-letters in the source queue until the target confirmed it.
    (Seen on one node only in how the queues were declared: losing a message takes losing a
    node; the decision record tells what was measured.)"""
    await processes.start_consumer(consumer_name)
    queues = broker.queues(consumer_name)
    safely: dict[str, FieldValue] = {
        "x-dead-letter-strategy": "at-least-once",
        "x-overflow": "reject-publish",
    }
    for step, delay in enumerate(FAST_RETRY_DELAYS):
        await _redeclare(
            queues.retry(step),
            {
                "x-queue-type": "quorum",
                **safely,
                "x-message-ttl": round(delay * 1000),
                "x-dead-letter-exchange": "",
                "x-dead-letter-routing-key": queues.main,
            },
        )
    main: dict[str, FieldValue] = {
        "x-queue-type": "quorum",
        "x-delivery-limit": queues.delivery_limit,
        **safely,
        "x-dead-letter-exchange": "",
        "x-dead-letter-routing-key": queues.dead_letter,
    }
    await _redeclare(queues.main, main)
    with pytest.raises(aiormq.exceptions.ChannelPreconditionFailed):
        await _redeclare(queues.main, {**main, "x-dead-letter-strategy": "at-most-once"})


async def test_a_main_queue_declared_by_an_earlier_version_is_used_as_it_is(
    db_pool: asyncpg.Pool, broker: Broker, processes: Processes, consumer_name: str
) -> None:
    """Its arguments cannot be changed by declaring it again: the consumer logs how to add them
    (a policy) and consumes from it."""
    queues = broker.queues(consumer_name)
    await _redeclare(
        queues.main,
        {
            "x-queue-type": "quorum",
            "x-dead-letter-exchange": "",
            "x-dead-letter-routing-key": queues.dead_letter,
        },
    )
    consumer = await processes.start_consumer(consumer_name, env={"HERALD_LOG_JSON": "true"})
    event = post_created()
    await broker.publish([event])
    await wait_for_effects(db_pool, consumer_name, [event.id])
    refused = [
        record
        for record in consumer.log_lines()
        if record.get("event") == "queue exists with other arguments; using it as it is"
    ]
    assert [record["queue"] for record in refused] == [queues.main]
    assert await consumer.terminate() == 0


async def test_classic_queues_still_retry_and_dead_letter(
    db_pool: asyncpg.Pool, broker: Broker, processes: Processes, consumer_name: str
) -> None:
    """HERALD_AMQP_QUORUM_QUEUES=false: for brokers without quorum queues (no delivery limit, and
    the broker's own dead-lettering is at most once)."""
    classic: ConsumerQueues = consumer_queues(
        broker.namespace, consumer_name, retry_delays=FAST_RETRY_DELAYS, quorum=False
    )
    TEST_RETRY_DELAYS.add(FAST_RETRY_DELAYS)
    env = {"HERALD_AMQP_QUORUM_QUEUES": "false"}
    consumer = processes.start(
        consumer_name,
        ["-m", "tests.support.consumer_app"],
        {
            "HERALD_TEST_CONSUMER": consumer_name,
            "HERALD_TEST_BEHAVIOUR": "fail-transient:1",
            "HERALD_CONSUMER_IN_PROCESS_ATTEMPTS": "1",
            "HERALD_CONSUMER_RETRY_DELAYS_SECONDS": json.dumps(list(FAST_RETRY_DELAYS)),
            **env,
        },
    )
    await processes.wait_consuming(consumer, classic.main)
    assert all(not name.endswith(".quorum") for name in classic.retry_queues)
    event = post_created()
    await broker.publish([event])
    await wait_for_effects(db_pool, consumer_name, [event.id])
    assert await effects(db_pool, consumer_name, [event.id]) == {event.id: 1}
    for name in (classic.main, *classic.retry_queues):
        depth = await broker.depth(name)
        assert depth is not None, f"{name} was not declared"
    assert await consumer.terminate() == 0
