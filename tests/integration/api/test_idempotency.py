"""``Idempotency-Key`` on ``POST /v1/posts``: replays, conflicts, scope and expiry."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import httpx
import pytest

from herald_api.settings import Settings
from tests.conftest import ApiKey, MakeKey
from tests.support.apps import in_process_client
from tests.support.http import assert_problem
from tests.support.waiting import wait_until

BODY = {"title": "Once", "body": "only once", "tags": ["idem"]}


@pytest.fixture
async def parallel_client(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    """Like ``client``, but each concurrent request keeps its own request state."""
    async with in_process_client(settings) as http:
        yield http


def fresh_key() -> str:
    return f"idem-{uuid.uuid4()}"


async def post_with_key(
    client: httpx.AsyncClient, key: ApiKey, idempotency_key: str, body: dict[str, Any] = BODY
) -> httpx.Response:
    return await client.post(
        "/v1/posts", json=body, headers=key.headers | {"Idempotency-Key": idempotency_key}
    )


async def count_posts(db_pool: asyncpg.Pool, author_id: uuid.UUID) -> int:
    count: int = await db_pool.fetchval(
        "SELECT count(*) FROM posts WHERE author_id = $1", author_id
    )
    return count


async def test_replay_returns_the_original_response(
    client: httpx.AsyncClient, make_key: MakeKey, db_pool: asyncpg.Pool
) -> None:
    key = await make_key()
    idem = fresh_key()
    first = await post_with_key(client, key, idem)
    assert first.status_code == 201, first.text
    assert "Idempotent-Replayed" not in first.headers
    replay = await post_with_key(client, key, idem)
    assert replay.status_code == 201
    assert replay.headers["Idempotent-Replayed"] == "true"
    assert replay.content == first.content
    assert replay.headers["Location"] == first.headers["Location"]
    assert replay.headers["ETag"] == first.headers["ETag"]
    assert replay.headers["content-type"] == "application/json"
    assert await count_posts(db_pool, key.account_id) == 1


async def test_replay_ignores_json_key_order(
    client: httpx.AsyncClient, make_key: MakeKey, db_pool: asyncpg.Pool
) -> None:
    key = await make_key()
    idem = fresh_key()
    first = await post_with_key(client, key, idem)
    reordered = dict(reversed(list(BODY.items())))
    replay = await post_with_key(client, key, idem, reordered)
    assert replay.headers["Idempotent-Replayed"] == "true"
    assert replay.json() == first.json()
    assert await count_posts(db_pool, key.account_id) == 1


async def test_replay_returns_the_original_even_after_the_post_changed(
    client: httpx.AsyncClient, make_key: MakeKey
) -> None:
    key = await make_key()
    idem = fresh_key()
    first = await post_with_key(client, key, idem)
    await client.patch(first.headers["Location"], json={"title": "Later"}, headers=key.headers)
    replay = await post_with_key(client, key, idem)
    assert replay.json() == first.json()
    assert replay.json()["title"] == BODY["title"]


async def test_same_key_with_a_different_body_is_422(
    client: httpx.AsyncClient, make_key: MakeKey, db_pool: asyncpg.Pool
) -> None:
    key = await make_key()
    idem = fresh_key()
    assert (await post_with_key(client, key, idem)).status_code == 201
    response = await post_with_key(client, key, idem, BODY | {"title": "Something else"})
    problem = assert_problem(response, 422)
    assert problem["type"] == "/problems/idempotency-key-reused"
    assert await count_posts(db_pool, key.account_id) == 1


async def test_keys_are_scoped_per_account(
    client: httpx.AsyncClient, make_key: MakeKey, db_pool: asyncpg.Pool
) -> None:
    one, other = await make_key(), await make_key()
    idem = fresh_key()
    first = await post_with_key(client, one, idem)
    second = await post_with_key(client, other, idem)
    assert first.status_code == second.status_code == 201
    assert "Idempotent-Replayed" not in second.headers
    assert first.json()["id"] != second.json()["id"]
    assert second.json()["author_id"] == str(other.account_id)
    assert await count_posts(db_pool, one.account_id) == 1
    assert await count_posts(db_pool, other.account_id) == 1


async def test_an_expired_key_no_longer_replays(
    client: httpx.AsyncClient, make_key: MakeKey, db_pool: asyncpg.Pool
) -> None:
    key = await make_key()
    idem = fresh_key()
    first = await post_with_key(client, key, idem)
    updated = await db_pool.execute(
        "UPDATE idempotency_keys SET expires_at = now() - interval '1 second' "
        "WHERE account_id = $1 AND key = $2",
        key.account_id,
        idem,
    )
    assert updated == "UPDATE 1"
    again = await post_with_key(client, key, idem)
    assert again.status_code == 201, again.text
    assert "Idempotent-Replayed" not in again.headers
    assert again.json()["id"] != first.json()["id"]
    assert await count_posts(db_pool, key.account_id) == 2
    replay = await post_with_key(client, key, idem)
    assert replay.headers["Idempotent-Replayed"] == "true"
    assert replay.json()["id"] == again.json()["id"]


async def test_an_expired_key_may_be_reused_with_another_body(
    client: httpx.AsyncClient, make_key: MakeKey, db_pool: asyncpg.Pool
) -> None:
    key = await make_key()
    idem = fresh_key()
    await post_with_key(client, key, idem)
    await db_pool.execute(
        "UPDATE idempotency_keys SET expires_at = now() - interval '1 second' "
        "WHERE account_id = $1 AND key = $2",
        key.account_id,
        idem,
    )
    response = await post_with_key(client, key, idem, BODY | {"title": "New"})
    assert response.status_code == 201, response.text
    assert response.json()["title"] == "New"


async def test_a_request_that_failed_validation_does_not_use_up_the_key(
    client: httpx.AsyncClient, make_key: MakeKey
) -> None:
    key = await make_key()
    idem = fresh_key()
    assert_problem(await post_with_key(client, key, idem, {"title": ""}), 422)
    response = await post_with_key(client, key, idem)
    assert response.status_code == 201
    assert "Idempotent-Replayed" not in response.headers


async def test_a_key_still_in_flight_is_409(
    parallel_client: httpx.AsyncClient, make_key: MakeKey, db_pool: asyncpg.Pool, database_dsn: str
) -> None:
    """Hold the first request inside its transaction (it waits for a row lock on the author's
    account, which its foreign key check needs) and send the same key again meanwhile."""
    key = await make_key()
    idem = fresh_key()
    blocker = await asyncpg.connect(database_dsn)
    first: asyncio.Task[httpx.Response] | None = None
    try:
        async with blocker.transaction():
            await blocker.execute("SELECT 1 FROM accounts WHERE id = $1 FOR UPDATE", key.account_id)
            first = asyncio.create_task(post_with_key(parallel_client, key, idem))
            await wait_until(
                lambda: waiting_on_lock(db_pool, "INSERT INTO posts"),
                seconds=5,
                message="the first request never blocked on the account row",
            )
            second = await post_with_key(parallel_client, key, idem)
            problem = assert_problem(second, 409)
            assert problem["type"] == "/problems/idempotency-key-in-use"
            assert second.headers["Retry-After"]
        first_response = await asyncio.wait_for(first, timeout=5)
    finally:
        if first is not None and not first.done():
            first.cancel()
        await blocker.close()
    assert first_response.status_code == 201, first_response.text
    replay = await post_with_key(parallel_client, key, idem)
    assert replay.headers["Idempotent-Replayed"] == "true"
    assert replay.json() == first_response.json()
    assert await count_posts(db_pool, key.account_id) == 1


async def waiting_on_lock(db_pool: asyncpg.Pool, query_part: str) -> bool:
    """Whether a statement containing ``query_part`` waits for a lock."""
    waiting: bool = await db_pool.fetchval(
        """
        SELECT EXISTS (
            SELECT 1 FROM pg_stat_activity
            WHERE datname = current_database() AND wait_event_type = 'Lock'
              AND strpos(query, $1) > 0 AND pid <> pg_backend_pid()
        )
        """,
        query_part,
    )
    return waiting


@pytest.mark.parametrize("concurrency", [2, 8])
async def test_concurrent_requests_with_one_key_create_exactly_one_post(
    parallel_client: httpx.AsyncClient, make_key: MakeKey, db_pool: asyncpg.Pool, concurrency: int
) -> None:
    key = await make_key()
    idem = fresh_key()
    responses = await asyncio.gather(
        *(post_with_key(parallel_client, key, idem) for _ in range(concurrency))
    )
    assert await count_posts(db_pool, key.account_id) == 1
    originals = [
        r for r in responses if r.status_code == 201 and "Idempotent-Replayed" not in r.headers
    ]
    assert len(originals) == 1, [r.status_code for r in responses]
    for response in responses:
        if response.status_code == 201:
            assert response.json() == originals[0].json()
        else:
            assert_problem(response, 409)


async def test_concurrent_requests_without_a_key_each_create_a_post(
    parallel_client: httpx.AsyncClient, make_key: MakeKey, db_pool: asyncpg.Pool
) -> None:
    key = await make_key()
    responses = await asyncio.gather(
        *(parallel_client.post("/v1/posts", json=BODY, headers=key.headers) for _ in range(4))
    )
    assert [r.status_code for r in responses] == [201] * 4
    assert await count_posts(db_pool, key.account_id) == 4


@pytest.mark.parametrize(
    "header",
    [
        pytest.param("x" * 256, id="too-long"),
        pytest.param("ключ".encode(), id="non-ascii"),
        pytest.param(b"tab\there", id="control-char"),
    ],
)
async def test_invalid_key_is_400_and_creates_nothing(
    client: httpx.AsyncClient, make_key: MakeKey, db_pool: asyncpg.Pool, header: str | bytes
) -> None:
    key = await make_key()
    headers: dict[str, Any] = key.headers | {"Idempotency-Key": header}
    response = await client.post("/v1/posts", json=BODY, headers=headers)
    assert assert_problem(response, 400)["type"] == "/problems/invalid-idempotency-key"
    assert await count_posts(db_pool, key.account_id) == 0
