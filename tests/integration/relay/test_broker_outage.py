"""A broker outage never fails a write: rows wait in the outbox and go out once it is back."""

from __future__ import annotations

import dataclasses
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import asyncpg
import httpx

from herald_api.settings import Settings
from herald_shared.relay import OutboxRelay
from herald_shared.settings import AmqpSettings
from tests.conftest import MakeKey
from tests.integration.relay.conftest import Listen, unpublished, wait_published
from tests.support.apps import running_api
from tests.support.faults import FaultProxy
from tests.support.http import create_post
from tests.support.waiting import wait_until

WRITES = 20
#: Far below the publish timeout and the breaker's reset: a write that waited on the broker
#: could not answer this fast.
QUICK_SECONDS = 1.0
RECOVERY_SECONDS = 30.0


@asynccontextmanager
async def api_with_relay(
    settings: Settings,
) -> AsyncIterator[tuple[httpx.AsyncClient, OutboxRelay]]:
    async with running_api(settings) as api:
        assert api.state.relay is not None, "the API runs without its relay"
        yield api.http, api.state.relay


async def event_id_of(db_pool: asyncpg.Pool, post: dict[str, Any]) -> uuid.UUID:
    event_id: uuid.UUID = await db_pool.fetchval(
        "SELECT event_id FROM outbox WHERE aggregate_id = $1", uuid.UUID(post["id"])
    )
    return event_id


async def test_writes_succeed_while_the_broker_is_away_and_go_out_once_when_it_returns(
    settings: Settings,
    amqp_namespace: str,
    make_key: MakeKey,
    db_pool: asyncpg.Pool,
    listen: Listen,
) -> None:
    proxy = FaultProxy("127.0.0.1", 5672)
    await proxy.start()
    via_proxy = dataclasses.replace(
        settings,
        amqp=AmqpSettings(
            url=f"amqp://guest:guest@127.0.0.1:{proxy.port}/", namespace=amqp_namespace
        ),
    )
    queue = await listen(amqp_namespace, "post.*")
    key = await make_key()
    try:
        async with api_with_relay(via_proxy) as (client, relay):
            # A full publish/confirm round trip through the proxy before the fault.
            warm_up = await event_id_of(db_pool, await create_post(client, key, title="warm-up"))
            await wait_published(db_pool, [warm_up], seconds=RECOVERY_SECONDS)
            failed_before = relay.stats.failed_batches + relay.stats.failed_connects

            proxy.cut()
            slowest = 0.0
            event_ids = []
            for n in range(WRITES):
                started = time.monotonic()
                post = await create_post(client, key, title=f"during the outage {n}")
                slowest = max(slowest, time.monotonic() - started)
                event_ids.append(await event_id_of(db_pool, post))
            assert slowest < QUICK_SECONDS, f"a write took {slowest:.2f} s with the broker away"
            assert await unpublished(db_pool, event_ids) == set(event_ids)

            async def relay_has_failed() -> bool:
                failed = relay.stats.failed_batches + relay.stats.failed_connects
                return failed > failed_before or relay.breaker.state != "closed"

            await wait_until(
                relay_has_failed, seconds=RECOVERY_SECONDS, message="relay never tried"
            )
            assert await unpublished(db_pool, event_ids) == set(event_ids)

            proxy.restore()  # nothing is restarted: the same app, relay and connection object
            await wait_published(db_pool, event_ids, seconds=RECOVERY_SECONDS)
            await queue.wait_for([str(e) for e in event_ids], seconds=RECOVERY_SECONDS)
    finally:
        await proxy.stop()
    # The relay has stopped with the app: whatever it published is in the queue by now.
    await queue.collect()
    counts = queue.counts()
    received = {str(e): counts[str(e)] for e in [warm_up, *event_ids]}
    assert received == dict.fromkeys(received, 1), f"not exactly once: {received}"
