"""Every write inserts its event into the outbox in the write's own transaction."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from datetime import datetime
from typing import Any

import asyncpg
import httpx
import pytest
from structlog.testing import capture_logs

from herald_shared.apikeys import Role
from herald_shared.events import EventEnvelope, PostCreated, PostDeleted, PostUpdated
from tests.conftest import MakeKey
from tests.support.http import assert_problem, create_post

ENVELOPE_FIELDS = {
    "id",
    "type",
    "schema_version",
    "occurred_at",
    "aggregate_id",
    "aggregate_version",
    "data",
}


async def events_of(db_pool: asyncpg.Pool, post_id: str) -> list[asyncpg.Record]:
    """The outbox rows of one post, oldest first."""
    return list(
        await db_pool.fetch(
            """
            SELECT event_id, event_type, aggregate_id, aggregate_version, payload::text AS payload,
                   created_at
            FROM outbox WHERE aggregate_id = $1 ORDER BY id
            """,
            uuid.UUID(post_id),
        )
    )


def envelope_of(row: asyncpg.Record) -> dict[str, Any]:
    """The stored envelope, checked against its row's columns."""
    envelope: dict[str, Any] = json.loads(row["payload"])
    assert set(envelope) >= ENVELOPE_FIELDS, envelope
    assert envelope["id"] == str(row["event_id"])
    assert envelope["type"] == row["event_type"]
    assert envelope["aggregate_id"] == str(row["aggregate_id"])
    assert envelope["aggregate_version"] == row["aggregate_version"]
    assert envelope["schema_version"] == 1
    assert datetime.fromisoformat(envelope["occurred_at"]).tzinfo is not None
    return envelope


async def test_create_enqueues_post_created(
    client: httpx.AsyncClient, make_key: MakeKey, db_pool: asyncpg.Pool
) -> None:
    key = await make_key()
    post = await create_post(client, key, title="Evented", tags=["a", "b"], status="published")
    [row] = await events_of(db_pool, post["id"])
    envelope = envelope_of(row)
    assert envelope["type"] == "post.created"
    assert envelope["aggregate_id"] == post["id"]
    assert envelope["aggregate_version"] == 1
    data = PostCreated.model_validate(envelope["data"])
    assert data.author_id == key.account_id
    assert data.title == "Evented"
    assert data.tags == ["a", "b"]
    assert data.status == "published"
    assert data.published_at is not None
    assert isinstance(EventEnvelope.model_validate(envelope).payload(), PostCreated)


async def test_patch_enqueues_post_updated_with_the_new_version(
    client: httpx.AsyncClient, make_key: MakeKey, db_pool: asyncpg.Pool
) -> None:
    key = await make_key()
    post = await create_post(client, key, title="Before")
    response = await client.patch(
        f"/v1/posts/{post['id']}",
        json={"title": "After", "status": "published"},
        headers=key.headers,
    )
    assert response.status_code == 200, response.text
    created, updated = await events_of(db_pool, post["id"])
    envelope = envelope_of(updated)
    assert envelope["type"] == "post.updated"
    assert envelope["aggregate_version"] == 2 == response.json()["version"]
    data = PostUpdated.model_validate(envelope["data"])
    assert data.title == "After"
    assert data.status == "published"
    assert data.previous_status == "draft"
    assert envelope_of(created)["id"] != envelope["id"]


async def test_delete_enqueues_post_deleted_after_every_other_version(
    client: httpx.AsyncClient, make_key: MakeKey, db_pool: asyncpg.Pool
) -> None:
    key = await make_key()
    post = await create_post(client, key, status="published")
    url = f"/v1/posts/{post['id']}"
    await client.patch(url, json={"title": "Second"}, headers=key.headers)
    assert (await client.delete(url, headers=key.headers)).status_code == 204
    rows = await events_of(db_pool, post["id"])
    assert [r["event_type"] for r in rows] == ["post.created", "post.updated", "post.deleted"]
    versions = [r["aggregate_version"] for r in rows]
    assert versions == sorted(set(versions)), "versions must strictly increase"
    envelope = envelope_of(rows[-1])
    assert envelope["aggregate_version"] > 2
    data = PostDeleted.model_validate(envelope["data"])
    assert data.author_id == key.account_id
    assert data.status == "published"


async def test_admin_delete_names_the_author_not_the_admin(
    client: httpx.AsyncClient, make_key: MakeKey, db_pool: asyncpg.Pool
) -> None:
    admin, member = await make_key(Role.ADMIN), await make_key()
    post = await create_post(client, member)
    await client.delete(f"/v1/posts/{post['id']}", headers=admin.headers)
    envelope = envelope_of((await events_of(db_pool, post["id"]))[-1])
    assert envelope["data"]["author_id"] == str(member.account_id)


async def test_event_commits_in_the_writes_transaction(
    client: httpx.AsyncClient, make_key: MakeKey, db_pool: asyncpg.Pool
) -> None:
    """A write and its event carry one timestamp: for an update ``now()``, the transaction's
    start time, so equal timestamps mean one transaction; a create is a single statement that
    stamps both with the time it was made (its atomicity: the test below)."""
    key = await make_key()
    post = await create_post(client, key)
    created_at = await db_pool.fetchval(
        "SELECT created_at FROM posts WHERE id = $1", uuid.UUID(post["id"])
    )
    [created] = await events_of(db_pool, post["id"])
    assert created["created_at"] == created_at
    await client.patch(f"/v1/posts/{post['id']}", json={"title": "x"}, headers=key.headers)
    updated_at = await db_pool.fetchval(
        "SELECT updated_at FROM posts WHERE id = $1", uuid.UUID(post["id"])
    )
    updated = (await events_of(db_pool, post["id"]))[-1]
    assert updated["created_at"] == updated_at
    assert updated_at != created_at


@pytest.fixture
async def refused_title(db_pool: asyncpg.Pool) -> AsyncIterator[str]:
    """A title the outbox refuses (a temporary CHECK), so enqueueing that event fails."""
    title = f"refused-{uuid.uuid4().hex[:8]}"
    constraint = f"test_refuse_{title.replace('-', '_')}"
    await db_pool.execute(
        f"ALTER TABLE outbox ADD CONSTRAINT {constraint} "
        f"CHECK (payload->'data'->>'title' IS DISTINCT FROM '{title}') NOT VALID"
    )
    try:
        yield title
    finally:
        await db_pool.execute(f"ALTER TABLE outbox DROP CONSTRAINT {constraint}")


async def test_a_failed_event_insert_rolls_back_the_create(
    client: httpx.AsyncClient, make_key: MakeKey, db_pool: asyncpg.Pool, refused_title: str
) -> None:
    key = await make_key()
    with capture_logs() as logs:
        response = await client.post(
            "/v1/posts", json={"title": refused_title, "body": "B"}, headers=key.headers
        )
    assert_problem(response, 500)
    # Logged once. (The app's relay may log errors of its own meanwhile, e.g. events it holds
    # back because no consumer's queue is bound in this test.)
    errors = [e["event"] for e in logs if e["log_level"] == "error"]
    assert errors.count("unhandled error") == 1, errors
    count = await db_pool.fetchval(
        "SELECT count(*) FROM posts WHERE author_id = $1", key.account_id
    )
    assert count == 0


async def test_a_failed_event_insert_rolls_back_the_patch(
    client: httpx.AsyncClient, make_key: MakeKey, db_pool: asyncpg.Pool, refused_title: str
) -> None:
    key = await make_key()
    post = await create_post(client, key)
    url = f"/v1/posts/{post['id']}"
    with capture_logs():
        response = await client.patch(url, json={"title": refused_title}, headers=key.headers)
    assert_problem(response, 500)
    assert (await client.get(url, headers=key.headers)).json() == post
    assert len(await events_of(db_pool, post["id"])) == 1


async def test_a_no_op_patch_enqueues_nothing(
    client: httpx.AsyncClient, make_key: MakeKey, db_pool: asyncpg.Pool
) -> None:
    key = await make_key()
    post = await create_post(client, key, title="Same", body="Same", tags=["t"])
    response = await client.patch(
        f"/v1/posts/{post['id']}",
        json={"title": "Same", "body": "Same", "tags": ["t"], "status": "draft"},
        headers=key.headers,
    )
    assert response.status_code == 200
    assert response.json()["version"] == 1
    assert response.headers["ETag"] == '"1"'
    assert [r["event_type"] for r in await events_of(db_pool, post["id"])] == ["post.created"]


@pytest.mark.parametrize(
    ("change", "status"),
    [
        pytest.param({"json": {"title": "x"}, "headers": {"If-Match": '"9"'}}, 412, id="stale"),
        pytest.param({"json": {"title": ""}}, 422, id="invalid"),
        pytest.param({"json": {"title": "x"}, "headers": {"If-Match": "nope"}}, 400, id="bad-tag"),
    ],
)
async def test_a_refused_patch_enqueues_nothing(
    client: httpx.AsyncClient,
    make_key: MakeKey,
    db_pool: asyncpg.Pool,
    change: dict[str, Any],
    status: int,
) -> None:
    key = await make_key()
    post = await create_post(client, key)
    response = await client.patch(
        f"/v1/posts/{post['id']}",
        json=change["json"],
        headers=key.headers | change.get("headers", {}),
    )
    assert_problem(response, status)
    assert len(await events_of(db_pool, post["id"])) == 1


async def test_refused_writes_by_another_member_enqueue_nothing(
    client: httpx.AsyncClient, make_key: MakeKey, db_pool: asyncpg.Pool
) -> None:
    author, other = await make_key(), await make_key()
    draft = await create_post(client, author)
    published = await create_post(client, author, status="published")
    for post, status in ((draft, 404), (published, 403)):
        url = f"/v1/posts/{post['id']}"
        assert_problem(await client.patch(url, json={"title": "x"}, headers=other.headers), status)
        assert_problem(await client.delete(url, headers=other.headers), status)
        assert len(await events_of(db_pool, post["id"])) == 1


async def test_an_idempotent_replay_enqueues_nothing(
    client: httpx.AsyncClient, make_key: MakeKey, db_pool: asyncpg.Pool
) -> None:
    key = await make_key()
    headers = key.headers | {"Idempotency-Key": f"outbox-{uuid.uuid4()}"}
    body = {"title": "T", "body": "B"}
    first = await client.post("/v1/posts", json=body, headers=headers)
    replay = await client.post("/v1/posts", json=body, headers=headers)
    assert replay.headers["Idempotent-Replayed"] == "true"
    assert len(await events_of(db_pool, first.json()["id"])) == 1


async def test_every_event_has_its_own_id(
    client: httpx.AsyncClient, make_key: MakeKey, db_pool: asyncpg.Pool
) -> None:
    key = await make_key()
    post = await create_post(client, key)
    url = f"/v1/posts/{post['id']}"
    for title in ("one", "two", "three"):
        await client.patch(url, json={"title": title}, headers=key.headers)
    await client.delete(url, headers=key.headers)
    rows = await events_of(db_pool, post["id"])
    assert len(rows) == 5
    assert len({r["event_id"] for r in rows}) == 5
    assert [r["aggregate_version"] for r in rows[:4]] == [1, 2, 3, 4]
