"""A database outage makes a consumer wait and retry, never dead-letter: the events are not at
fault. PostgreSQL is cut off from the consumer process by a proxy; the shared server is
untouched."""

from __future__ import annotations

import json
from urllib.parse import urlsplit, urlunsplit

import asyncpg

from tests.integration.events.conftest import effects, post_created, wait_for_effects
from tests.support.broker import FAST_RETRY_DELAYS, Broker
from tests.support.faults import FaultProxy
from tests.support.services import Processes
from tests.support.waiting import wait_until


def _through(dsn: str, port: int) -> str:
    parts = urlsplit(dsn)
    netloc = parts.netloc.rsplit("@", 1)
    host = f"127.0.0.1:{port}"
    return urlunsplit(parts._replace(netloc=f"{netloc[0]}@{host}" if len(netloc) == 2 else host))


async def test_a_database_outage_defers_events_instead_of_dead_lettering_them(
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
                "HERALD_DB_DSN": _through(database_dsn, proxy.port),
                "HERALD_DB_ACQUIRE_TIMEOUT_SECONDS": "0.5",
                "HERALD_DB_CONNECT_TIMEOUT_SECONDS": "0.5",
                "HERALD_CONSUMER_RETRY_DELAYS_SECONDS": json.dumps(list(FAST_RETRY_DELAYS)),
                "HERALD_CONSUMER_PAUSE_SECONDS": "0.2",
            },
        )
        queues = broker.queues(consumer_name)
        await processes.wait_consuming(consumer, queues.main)

        proxy.cut()
        events = [post_created() for _ in range(5)]
        await broker.publish(events)

        # While the database is away the events go round and round, without spending attempts:
        # wait until they were deferred more often than the retry steps would have allowed.
        rounds = (len(FAST_RETRY_DELAYS) + 2) * len(events)

        async def deferred_repeatedly() -> bool:
            log = consumer.log_path.read_text(errors="replace")
            return log.count("dependency unavailable; rescheduling") >= rounds

        await wait_until(deferred_repeatedly, seconds=60, message="events were not deferred")
        dead = await broker.depth(queues.dead_letter)
        assert dead is not None
        assert dead.messages == 0

        proxy.restore()
        await wait_for_effects(db_pool, consumer_name, [e.id for e in events], seconds=30)
        counted = await effects(db_pool, consumer_name, [e.id for e in events])
        assert set(counted.values()) == {1}
        dead = await broker.depth(queues.dead_letter)
        assert dead is not None
        assert dead.messages == 0
        assert await consumer.terminate() == 0
    finally:
        await proxy.stop()
