"""An endpoint failing for too long is disabled, and ``webhook.disabled`` goes out through the
outbox: the account's other webhooks receive it."""

from __future__ import annotations

import json
import uuid
from typing import Any

import asyncpg
import httpx

from tests.conftest import MakeKey
from tests.integration.webhooks.conftest import StartWorker, deliveries, subscribe
from tests.support.http import create_post
from tests.support.waiting import wait_until
from tests.support.webhook_receiver import always


async def _disabled(
    client: httpx.AsyncClient, headers: dict[str, str], webhook_id: str
) -> dict[str, Any]:
    latest: dict[str, Any] = {}

    async def off() -> bool:
        nonlocal latest
        latest = (await client.get(f"/v1/webhooks/{webhook_id}", headers=headers)).json()
        return latest["enabled"] is False

    await wait_until(off, seconds=20, message="the webhook was disabled")
    return latest


async def test_consecutive_dead_deliveries_disable_the_endpoint_and_announce_it(
    client: httpx.AsyncClient,
    make_key: MakeKey,
    start_worker: StartWorker,
    receivers,
    db_pool: asyncpg.Pool,
) -> None:
    await start_worker(max_attempts=2, disable_after_consecutive_dead=3)
    key = await make_key()
    # 410 is the receiver's considered answer: it does not trip the breaker, only the attempts.
    broken, observer = await receivers(always(410)), await receivers(always(200))
    failing = await subscribe(client, key, broken, ["post.created"])
    watching = await subscribe(client, key, observer, ["webhook.*"])

    for n in range(4):
        await create_post(client, key, title=f"Post {n}")

    webhook = await _disabled(client, key.headers, failing["id"])
    assert webhook["disabled_reason"] == "3 deliveries in a row failed every attempt"
    assert webhook["consecutive_failures"] == 3
    log = await deliveries(client, key, failing["id"])
    statuses = sorted(item["status"] for item in log)
    # Three died; the fourth, still pending when the endpoint was disabled, was cancelled.
    assert statuses.count("dead") == 3
    assert set(statuses) <= {"dead", "cancelled"}
    assert all(i["attempts"] == 2 for i in log if i["status"] == "dead")

    outbox = await db_pool.fetch(
        "SELECT payload::text AS payload FROM outbox "
        "WHERE event_type = 'webhook.disabled' AND aggregate_id = $1",
        uuid.UUID(failing["id"]),
    )
    assert len(outbox) == 1
    event = json.loads(outbox[0]["payload"])
    assert event["data"] == {
        "account_id": str(key.account_id),
        # Only the origin: a URL's path and query may hold the receiver's own secret.
        "origin": f"http://127.0.0.1:{broken.port}",
        "reason": "3 deliveries in a row failed every attempt",
    }
    # Published by the worker's relay, fanned out, and delivered to the account's other webhook.
    await observer.wait_for(
        lambda: bool(observer.find("webhook.disabled", failing["id"])),
        message="the observer heard webhook.disabled",
    )
    announced = observer.find("webhook.disabled", failing["id"])[0]
    assert announced.event["id"] == event["id"]

    # A disabled webhook gets nothing new.
    post = await create_post(client, key, title="While disabled")
    event_id = await db_pool.fetchval(
        "SELECT event_id FROM outbox WHERE aggregate_id = $1 AND event_type = 'post.created'",
        uuid.UUID(post["id"]),
    )

    async def handled() -> bool:
        # Enriched in the same transaction as the fan-out: the fan-out has run too.
        return bool(
            await db_pool.fetchval(
                "SELECT enriched_version = version FROM posts WHERE id = $1",
                uuid.UUID(post["id"]),
            )
        )

    await wait_until(handled, seconds=20, message="the worker handled the post")
    assert not await db_pool.fetchval(
        "SELECT count(*) FROM webhook_deliveries WHERE webhook_id = $1 AND event_id = $2",
        uuid.UUID(failing["id"]),
        event_id,
    )
    assert watching["enabled"] is True


async def test_an_endpoint_failing_for_longer_than_the_limit_is_disabled(
    client: httpx.AsyncClient, make_key: MakeKey, start_worker: StartWorker, receivers
) -> None:
    await start_worker(max_attempts=100, backoff_seconds=[0.1], disable_after_failing_seconds=1)
    key = await make_key()
    broken = await receivers(always(400))
    failing = await subscribe(client, key, broken, ["post.created"])

    await create_post(client, key)

    webhook = await _disabled(client, key.headers, failing["id"])
    assert webhook["disabled_reason"] == "every attempt failed for more than 1 second"
