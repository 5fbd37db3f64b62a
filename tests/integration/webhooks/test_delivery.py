"""Deliveries end to end: the API, a real worker process and real local receivers that verify
every signature with the independent ``standardwebhooks`` package."""

from __future__ import annotations

import itertools
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import httpx
import pytest
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from herald_api.settings import Settings
from tests.conftest import ApiKey, MakeKey
from tests.integration.webhooks.conftest import (
    PERMISSIVE,
    StartWorker,
    api_client,
    deliveries,
    subscribe,
    wait_deliveries,
)
from tests.support.http import create_post
from tests.support.waiting import wait_until
from tests.support.webhook_receiver import AcceptCounter, Received, Reply, always, fail_first


async def test_post_events_reach_the_subscriber_signed_and_only_its_own(
    client: httpx.AsyncClient, make_key: MakeKey, start_worker: StartWorker, receivers
) -> None:
    await start_worker()
    key, stranger = await make_key(), await make_key()
    mine, theirs, created_only = await receivers(), await receivers(), await receivers()
    webhook = await subscribe(client, key, mine, ["post.*"])
    await subscribe(client, key, created_only, ["post.created"])
    await subscribe(client, stranger, theirs, ["*"])

    post = await create_post(client, key, title="Hooked")
    # Enrichment is skipped for a post already gone: let it happen before the delete.
    await mine.wait_for(
        lambda: bool(mine.find("post.enriched", post["id"])), message="post.enriched arrived"
    )
    await client.patch(f"/v1/posts/{post['id']}", json={"title": "Hooked!"}, headers=key.headers)
    deleted = await client.delete(f"/v1/posts/{post['id']}", headers=key.headers)
    assert deleted.status_code == 204

    expected = {"post.created", "post.updated", "post.deleted", "post.enriched"}
    await mine.wait_for(
        lambda: expected <= {r.event["type"] for r in mine.find_all(post["id"])},
        message="every event of the post reached the receiver",
    )
    assert all(r.verified for r in mine.requests), [r.error for r in mine.requests]
    created = mine.find("post.created", post["id"])[0]
    assert created.payload is not None
    assert created.payload["data"]["title"] == "Hooked"
    assert created.payload["data"]["author_id"] == str(key.account_id)
    assert created.headers["content-type"] == "application/json"
    assert created.path == "/hooks"

    log = await wait_deliveries(
        client,
        key,
        webhook["id"],
        lambda items: len(items) >= 4 and all(i["status"] == "succeeded" for i in items),
    )
    by_event = {item["event_id"]: item for item in log}
    entry = by_event[created.event["id"]]
    # webhook-id is the delivery's id: the key receivers deduplicate on.
    assert created.headers["webhook-id"] == entry["id"]
    assert (entry["attempts"], entry["last_status_code"], entry["next_attempt_at"]) == (
        1,
        200,
        None,
    )
    assert entry["last_latency_ms"] is not None

    await created_only.wait_for(lambda: bool(created_only.find("post.created", post["id"])))
    assert {r.event["type"] for r in created_only.requests} == {"post.created"}
    assert theirs.requests == []


async def test_a_receiver_failing_three_times_gets_the_event_on_the_fourth_attempt(
    client: httpx.AsyncClient, make_key: MakeKey, start_worker: StartWorker, receivers
) -> None:
    await start_worker()
    key = await make_key()
    flaky = await receivers(fail_first(3, status=500))
    webhook = await subscribe(client, key, flaky, ["post.created"])

    post = await create_post(client, key)

    await flaky.wait_for(lambda: len(flaky.requests) >= 4, message="four attempts")
    attempts = flaky.requests
    assert [r.event["aggregate_id"] for r in attempts] == [post["id"]] * 4
    assert all(r.verified for r in attempts)
    assert len({r.headers["webhook-id"] for r in attempts}) == 1, "webhook-id changed on retry"
    gaps = [later.at - earlier.at for earlier, later in itertools.pairwise(attempts)]
    assert all(gap >= 0.15 for gap in gaps), f"retries came without backoff: {gaps}"

    log = await wait_deliveries(
        client, key, webhook["id"], lambda items: bool(items) and items[0]["status"] == "succeeded"
    )
    assert len(log) == 1
    assert log[0]["attempts"] == 4
    assert log[0]["last_status_code"] == 200
    assert log[0]["last_error"] is None
    assert len(flaky.requests) == 4


async def test_a_redirect_is_never_followed(
    client: httpx.AsyncClient, make_key: MakeKey, start_worker: StartWorker, receivers
) -> None:
    await start_worker(max_attempts=2)
    private = await AcceptCounter().start()
    try:
        key = await make_key()
        location = f"http://127.0.0.1:{private.port}/metadata"
        redirecting = await receivers(lambda _: Reply(302, {"Location": location}, b""))
        webhook = await subscribe(client, key, redirecting, ["post.created"])

        await create_post(client, key)

        log = await wait_deliveries(
            client, key, webhook["id"], lambda items: bool(items) and items[0]["status"] == "dead"
        )
        assert log[0]["attempts"] == 2
        assert log[0]["last_status_code"] == 302
        assert location in log[0]["last_error"]
        assert len(redirecting.requests) == 2
        assert private.accepted == 0, "the redirect was followed"
    finally:
        await private.stop()


def signed_by(delivered: Received, secret: str) -> bool:
    """Whether one of the delivery's signatures is ``secret``'s (verified by the receivers'
    library, one signature at a time)."""
    verified = []
    for signature in delivered.headers["webhook-signature"].split(" "):
        try:
            Webhook(secret).verify(
                delivered.body, {**delivered.headers, "webhook-signature": signature}
            )
        except WebhookVerificationError:
            verified.append(False)
        else:
            verified.append(True)
    return any(verified)


async def rotate(client: httpx.AsyncClient, key: ApiKey, webhook_id: str) -> dict[str, Any]:
    rotated = await client.post(f"/v1/webhooks/{webhook_id}/rotate-secret", headers=key.headers)
    assert rotated.status_code == 200, rotated.text
    body: dict[str, Any] = rotated.json()
    assert body["secret"].startswith("whsec_")
    return body


async def test_during_the_overlap_a_delivery_is_signed_with_the_old_and_the_new_secret(
    client: httpx.AsyncClient, make_key: MakeKey, start_worker: StartWorker, receivers
) -> None:
    await start_worker()
    key = await make_key()
    receiver = await receivers(always(200))
    webhook = await subscribe(client, key, receiver, ["post.created"])
    oldest = webhook["secret"]

    before = datetime.now(UTC)
    middle = await rotate(client, key, webhook["id"])
    expires = datetime.fromisoformat(middle["previous_secret_expires_at"])
    # The default overlap: a day.
    assert timedelta(hours=23) < expires - before < timedelta(hours=25)
    receiver.secret = middle["secret"]
    post = await create_post(client, key)
    await receiver.wait_for(lambda: bool(receiver.find("post.created", post["id"])))
    delivered = receiver.find("post.created", post["id"])[0]
    assert len(delivered.headers["webhook-signature"].split(" ")) == 2
    assert signed_by(delivered, middle["secret"])
    assert signed_by(delivered, oldest)
    # A receiver still holding the old secret accepts it as a whole, too.
    Webhook(oldest).verify(delivered.body, delivered.headers)

    # Rotating again within the overlap retires the oldest: two secrets sign at most.
    newest = await rotate(client, key, webhook["id"])
    receiver.secret = newest["secret"]
    post = await create_post(client, key)
    await receiver.wait_for(lambda: bool(receiver.find("post.created", post["id"])))
    delivered = receiver.find("post.created", post["id"])[0]
    assert len(delivered.headers["webhook-signature"].split(" ")) == 2
    assert signed_by(delivered, newest["secret"])
    assert signed_by(delivered, middle["secret"])
    assert not signed_by(delivered, oldest)


async def test_after_the_overlap_only_the_new_secret_signs(
    settings: Settings,
    make_key: MakeKey,
    start_worker: StartWorker,
    receivers,
    db_pool: asyncpg.Pool,
) -> None:
    await start_worker()
    key = await make_key()
    receiver = await receivers(always(200))
    short = PERMISSIVE.model_copy(update={"secret_overlap_seconds": 1.0})
    async with api_client(settings, short) as client:
        webhook = await subscribe(client, key, receiver, ["post.created"])
        old_secret = webhook["secret"]
        rotated = await rotate(client, key, webhook["id"])
        receiver.secret = rotated["secret"]
        expires = datetime.fromisoformat(rotated["previous_secret_expires_at"])

        async def over() -> bool:
            now: datetime = await db_pool.fetchval("SELECT now()")
            return now > expires

        await wait_until(over, seconds=10, message="the overlap ended")
        post = await create_post(client, key)
    await receiver.wait_for(lambda: bool(receiver.find("post.created", post["id"])))
    delivered = receiver.find("post.created", post["id"])[0]
    assert " " not in delivered.headers["webhook-signature"]
    assert signed_by(delivered, rotated["secret"])
    with pytest.raises(WebhookVerificationError):
        Webhook(old_secret).verify(delivered.body, delivered.headers)


async def test_without_an_overlap_the_old_secret_stops_at_once(
    settings: Settings,
    make_key: MakeKey,
    start_worker: StartWorker,
    receivers,
    db_pool: asyncpg.Pool,
) -> None:
    await start_worker()
    key = await make_key()
    receiver = await receivers(always(200))
    none = PERMISSIVE.model_copy(update={"secret_overlap_seconds": 0})
    async with api_client(settings, none) as client:
        webhook = await subscribe(client, key, receiver, ["post.created"])
        old_secret = webhook["secret"]
        rotated = await rotate(client, key, webhook["id"])
        assert rotated["previous_secret_expires_at"] is None
        receiver.secret = rotated["secret"]
        post = await create_post(client, key)
    stored = await db_pool.fetchrow(
        "SELECT previous_secret, previous_secret_expires_at FROM webhooks WHERE id = $1",
        uuid.UUID(webhook["id"]),
    )
    assert stored is not None
    assert tuple(stored) == (None, None)
    await receiver.wait_for(lambda: bool(receiver.find("post.created", post["id"])))
    delivered = receiver.find("post.created", post["id"])[0]
    assert " " not in delivered.headers["webhook-signature"]
    assert not signed_by(delivered, old_secret)


async def test_two_workers_deliver_each_event_exactly_once(
    client: httpx.AsyncClient,
    make_key: MakeKey,
    start_worker: StartWorker,
    receivers,
    db_pool: asyncpg.Pool,
) -> None:
    await start_worker()
    await start_worker()
    key = await make_key()
    receiver = await receivers(always(200))
    webhook = await subscribe(client, key, receiver, ["post.created"])

    posts = [await create_post(client, key, title=f"Post {n}") for n in range(30)]

    await wait_deliveries(
        client,
        key,
        webhook["id"],
        lambda items: len(items) == 30 and all(i["status"] == "succeeded" for i in items),
        seconds=30,
    )
    ids = [r.headers["webhook-id"] for r in receiver.requests]
    assert len(ids) == len(set(ids)) == 30, "a delivery was sent twice"
    assert {r.event["aggregate_id"] for r in receiver.requests} == {p["id"] for p in posts}
    attempts = await db_pool.fetchval(
        "SELECT sum(attempts) FROM webhook_deliveries WHERE webhook_id = $1",
        uuid.UUID(webhook["id"]),
    )
    assert attempts == 30
    assert len(await deliveries(client, key, webhook["id"], status="succeeded")) == 30
