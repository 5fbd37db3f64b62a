"""Every process that writes events wakes its own outbox relay after the commit: with a sweep
so long it never runs during the test, the API's post.created, the worker's post.enriched (from
its handler) and webhook.disabled (from its delivery loop) are still published at once."""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Collection

import asyncpg

from herald_api.settings import Settings
from herald_shared.settings import RelaySettings
from tests.conftest import MakeKey
from tests.integration.webhooks.conftest import FAST_WORKER_ENV, PERMISSIVE, api_client, subscribe
from tests.support.http import create_post
from tests.support.services import Processes
from tests.support.waiting import wait_until
from tests.support.webhook_receiver import Receiver, always

#: Longer than any test: rows go out only if a wake-up announces them.
NEVER = 3600.0
PUBLISHED_SECONDS = 15.0


async def wait_published(
    pool: asyncpg.Pool, event_type: str, aggregate_ids: Collection[uuid.UUID]
) -> None:
    async def published() -> bool:
        rows = await pool.fetch(
            "SELECT published_at FROM outbox WHERE event_type = $1 AND aggregate_id = ANY($2)",
            event_type,
            list(aggregate_ids),
        )
        return len(rows) == len(aggregate_ids) and all(r["published_at"] for r in rows)

    await wait_until(
        published, seconds=PUBLISHED_SECONDS, message=f"{event_type} was not published"
    )


async def test_events_written_by_the_api_and_the_worker_go_out_without_a_sweep(
    settings: Settings,
    make_key: MakeKey,
    processes: Processes,
    db_pool: asyncpg.Pool,
) -> None:
    relay = RelaySettings(sweep_interval_seconds=NEVER)
    await processes.start_service(
        "herald_worker",
        "worker",
        {
            **FAST_WORKER_ENV,
            "HERALD_RELAY_SWEEP_INTERVAL_SECONDS": str(NEVER),
            "HERALD_WEBHOOKS_MAX_ATTEMPTS": "1",
            "HERALD_WEBHOOKS_DISABLE_AFTER_CONSECUTIVE_DEAD": "1",
        },
    )
    broken = await Receiver(always(410)).start()
    try:
        async with api_client(dataclasses.replace(settings, relay=relay), PERMISSIVE) as client:
            key = await make_key()
            webhook = await subscribe(client, key, broken, ["post.created"])
            post = await create_post(client, key, title="Wake up")
            post_id = uuid.UUID(post["id"])
            # The API's relay, woken by the API's commit.
            await wait_published(db_pool, "post.created", [post_id])
            # The worker's relay, woken by the enrichment handler's commit.
            await wait_published(db_pool, "post.enriched", [post_id])
            # The worker's relay, woken by the delivery loop disabling the endpoint.
            await wait_published(db_pool, "webhook.disabled", [uuid.UUID(webhook["id"])])
    finally:
        await broken.stop()
