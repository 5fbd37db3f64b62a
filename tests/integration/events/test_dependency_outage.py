"""A dependency outage is not the events' fault: the consumer pauses its intake and probes one
event at a time, with growing pauses, and dead-letters nothing; once the dependency is back every
event is handled once. A handler's own errors, on the other hand (an ``OSError`` of its own, a
slow query running past its timeout), are that event's failure: retried through the retry
queues, never mistaken for an outage. PostgreSQL is cut off from the consumer process by a
proxy; the shared server is untouched."""

from __future__ import annotations

import itertools
import json
from datetime import datetime
from urllib.parse import urlsplit

import asyncpg
import pytest

from herald_shared.messaging.headers import ATTEMPTS, REASON
from tests.integration.events.conftest import effects, post_created, wait_for_effects
from tests.support.broker import FAST_RETRY_DELAYS, Broker
from tests.support.faults import FaultProxy
from tests.support.network import with_port
from tests.support.processes import ServiceProcess
from tests.support.services import Processes
from tests.support.waiting import wait_until

DEFERRED = "dependency unavailable; rescheduling"
CONCURRENCY = 4
PAUSE = 0.2
#: Probes whose spacing the outage test checks.
PROBES = 3


def _deferral_times(consumer: ServiceProcess) -> list[datetime]:
    return [
        datetime.fromisoformat(record["time"])
        for record in consumer.log_lines()
        if record.get("event") == DEFERRED
    ]


async def test_a_database_outage_pauses_intake_and_dead_letters_nothing(
    database_dsn: str,
    db_pool: asyncpg.Pool,
    broker: Broker,
    processes: Processes,
    consumer_name: str,
) -> None:
    target = urlsplit(database_dsn)
    proxy = FaultProxy(target.hostname or "127.0.0.1", target.port or 5432)
    await proxy.start()
    try:
        consumer = processes.start(
            consumer_name,
            ["-m", "tests.support.consumer_app"],
            {
                "HERALD_TEST_CONSUMER": consumer_name,
                "HERALD_LOG_JSON": "true",
                "HERALD_DB_DSN": with_port(database_dsn, proxy.port),
                "HERALD_DB_ACQUIRE_TIMEOUT_SECONDS": "0.5",
                "HERALD_DB_CONNECT_TIMEOUT_SECONDS": "0.5",
                "HERALD_CONSUMER_CONCURRENCY": str(CONCURRENCY),
                "HERALD_CONSUMER_PREFETCH": str(2 * CONCURRENCY),
                "HERALD_CONSUMER_IN_PROCESS_ATTEMPTS": "1",
                "HERALD_CONSUMER_RETRY_DELAYS_SECONDS": json.dumps(list(FAST_RETRY_DELAYS)),
                "HERALD_CONSUMER_PAUSE_SECONDS": str(PAUSE),
                "HERALD_CONSUMER_MAX_PAUSE_SECONDS": str(4 * PAUSE),
            },
        )
        queues = broker.queues(consumer_name)
        await processes.wait_consuming(consumer, queues.main)

        proxy.cut()
        events = [post_created() for _ in range(20)]
        await broker.publish(events)

        # At most CONCURRENCY events were running when the outage was found; after those, one
        # probe at a time, each after a pause at least as long as the first.
        async def probed() -> bool:
            return len(_deferral_times(consumer)) >= CONCURRENCY + 1 + PROBES

        await wait_until(probed, seconds=30, message="the consumer did not probe")
        probes = _deferral_times(consumer)[CONCURRENCY : CONCURRENCY + 1 + PROBES]
        gaps = [(b - a).total_seconds() for a, b in itertools.pairwise(probes)]
        assert min(gaps) >= PAUSE * 0.95, f"intake did not pause between probes: {gaps}"
        assert await broker.dead_letters(queues) == 0

        proxy.restore()
        await wait_for_effects(db_pool, consumer_name, [e.id for e in events], seconds=30)
        counted = await effects(db_pool, consumer_name, [e.id for e in events])
        assert set(counted.values()) == {1}
        assert await broker.dead_letters(queues) == 0
        assert await consumer.terminate() == 0
    finally:
        await proxy.stop()


@pytest.mark.parametrize(
    ("behaviour", "env"),
    [
        ("fail-oserror", {}),
        # Behind PgBouncer there is no per-connection statement timeout: the client's command
        # timeout ends the query with a plain TimeoutError.
        (
            "slow-query:2",
            {"HERALD_DB_COMMAND_TIMEOUT_SECONDS": "0.3", "HERALD_DB_STATEMENT_TIMEOUT_MS": "0"},
        ),
        ("slow-query:2", {"HERALD_DB_STATEMENT_TIMEOUT_MS": "100"}),
    ],
    ids=["own-oserror", "command-timeout", "statement-timeout"],
)
async def test_a_handlers_own_error_is_retried_and_dead_lettered_not_taken_for_an_outage(
    behaviour: str,
    env: dict[str, str],
    db_pool: asyncpg.Pool,
    broker: Broker,
    processes: Processes,
    consumer_name: str,
) -> None:
    queues = broker.queues(consumer_name)
    consumer = processes.start(
        consumer_name,
        ["-m", "tests.support.consumer_app"],
        {
            "HERALD_TEST_CONSUMER": consumer_name,
            "HERALD_TEST_BEHAVIOUR": behaviour,
            "HERALD_LOG_JSON": "true",
            "HERALD_CONSUMER_IN_PROCESS_ATTEMPTS": "1",
            **env,
        },
    )
    await processes.wait_consuming(consumer, queues.main)
    envelope = post_created()
    await broker.publish([envelope])
    await broker.wait_depth(queues.dead_letter, messages=1, seconds=30)

    [letter] = await broker.peek(queues.dead_letter)
    assert letter.message_id == str(envelope.id)
    assert letter.headers[REASON] == "retries exhausted"
    assert letter.headers[ATTEMPTS] == len(FAST_RETRY_DELAYS) + 1
    assert not [r for r in consumer.log_lines() if r.get("event") == DEFERRED]
    assert await effects(db_pool, consumer_name, [envelope.id]) == {}
    assert await consumer.terminate() == 0
