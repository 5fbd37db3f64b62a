"""First list pages every viewer sees alike are cached under the list generation, which the
cache-invalidator moves once per post event: the next read misses and fills again, and a page
read before a move is never stored for the new generation."""

from __future__ import annotations

import uuid
from typing import Any

import asyncpg
import httpx
import pytest
import redis.asyncio as redis

from herald_api.posts.repository import list_posts
from herald_cache_invalidator.handlers import invalidate_post
from herald_shared.cache import CacheKeys, PostCache, current_list_page
from herald_shared.events import PostCreated
from herald_shared.redis_client import REDIS_ERRORS
from herald_shared.resilience import Breaker
from tests.conftest import MakeKey
from tests.integration.handlers.conftest import event


@pytest.fixture
def cache(redis_client: redis.Redis, redis_prefix: str) -> PostCache:
    """The cache of the in-process API of this run (its prefix), for the invalidator's part."""
    return PostCache(
        redis_client, CacheKeys(redis_prefix), ttl_seconds=60, tombstone_ttl_seconds=120
    )


async def post_event(cache: PostCache, post: dict[str, Any]) -> None:
    """What the cache-invalidator does with the post's ``post.created`` event."""
    data = PostCreated(
        author_id=uuid.UUID(post["author_id"]), status="published", title=post["title"], tags=[]
    )
    breaker = Breaker("test.redis", fail_max=1, reset_timeout=60, counts=REDIS_ERRORS)
    await invalidate_post(event(data, uuid.UUID(post["id"]), 1), cache=cache, breaker=breaker)


async def served(cache: PostCache, query: str) -> bytes | None:
    """The page a reader would be served for ``query`` (read as the API reads it)."""
    page, generation = await cache.client.mget(cache.list_keys(query))
    assert isinstance(page, bytes | None)
    assert isinstance(generation, bytes | None)
    return current_list_page(page, generation)


async def create(client: httpx.AsyncClient, headers: dict[str, str], tag: str) -> dict[str, Any]:
    created = await client.post(
        "/v1/posts",
        json={"title": uuid.uuid4().hex[:6], "body": "b", "tags": [tag], "status": "published"},
        headers=headers,
    )
    assert created.status_code == 201
    body: dict[str, Any] = created.json()
    return body


async def test_a_post_event_makes_the_next_read_miss_and_fill_again(
    client: httpx.AsyncClient, make_key: MakeKey, cache: PostCache
) -> None:
    key, viewer = await make_key(), await make_key()
    tag = f"t{uuid.uuid4().hex[:8]}"
    first = await create(client, key.headers, tag)
    params = {"tag": tag, "status": "published"}

    async def read(who: dict[str, str] = viewer.headers) -> tuple[str, list[str]]:
        page = await client.get("/v1/posts", params=params, headers=who)
        return page.headers["X-Cache"], [item["id"] for item in page.json()["items"]]

    assert await read() == ("miss", [first["id"]])
    assert await read() == ("hit", [first["id"]])

    # The API's own write leaves list pages alone: retiring them is the invalidator's part.
    # Until then only the writer, whose write fence its read fetches with the page, is not
    # served the cached page (decision 0036); its read fills the page it saw.
    second = await create(client, key.headers, tag)
    assert await read() == ("hit", [first["id"]])
    assert await read(key.headers) == ("miss", [second["id"], first["id"]])
    assert await read() == ("hit", [second["id"], first["id"]])

    await post_event(cache, second)
    assert await read() == ("miss", [second["id"], first["id"]])
    assert await read() == ("hit", [second["id"], first["id"]])


async def test_a_page_read_before_a_post_event_is_not_stored_for_the_new_generation(
    client: httpx.AsyncClient,
    make_key: MakeKey,
    cache: PostCache,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A post changes (and its event is handled) while a reader's query is running: the page
    that reader got may predate the change, so it must not be served afterwards."""
    key = await make_key()
    tag = f"t{uuid.uuid4().hex[:8]}"
    first = await create(client, key.headers, tag)
    params = {"tag": tag, "status": "published"}
    racing: list[dict[str, Any]] = []

    async def list_then_change(conn: asyncpg.Connection, query: Any) -> list[asyncpg.Record]:
        rows = await list_posts(conn, query)
        racing.append(await create(client, key.headers, tag))
        await post_event(cache, racing[-1])
        return rows

    monkeypatch.setattr("herald_api.routes.posts.list_posts", list_then_change)
    raced = await client.get("/v1/posts", params=params, headers=key.headers)
    monkeypatch.setattr("herald_api.routes.posts.list_posts", list_posts)
    assert raced.headers["X-Cache"] == "miss"
    assert [item["id"] for item in raced.json()["items"]] == [first["id"]]

    after = await client.get("/v1/posts", params=params, headers=key.headers)
    assert after.headers["X-Cache"] == "miss", "a page read before the change was served"
    assert [item["id"] for item in after.json()["items"]] == [racing[0]["id"], first["id"]]


async def test_retiring_pages_is_one_write_whatever_their_number(
    redis_client: redis.Redis, redis_prefix: str
) -> None:
    keys = CacheKeys(f"{redis_prefix}gen-{uuid.uuid4().hex[:8]}:")
    cache = PostCache(redis_client, keys, ttl_seconds=60, tombstone_ttl_seconds=120)
    generation = await cache.list_generation()
    for n in range(50):
        assert await cache.fill_list(keys.list_page(f"q{n}"), generation, b"[%d]" % n)

    retired = await cache.retire_lists()
    assert int(retired) > int(generation)
    # Nothing was deleted: the pages stay until their TTL, unreachable.
    assert await redis_client.exists(*(keys.list_page(f"q{n}") for n in range(50))) == 50
    assert await served(cache, "q7") is None
    # A fill under the old generation is refused; under the new one it is served.
    assert not await cache.fill_list(keys.list_page("q7"), generation, b"old")
    assert await cache.fill_list(keys.list_page("q7"), retired, b"new")
    assert await served(cache, "q7") == b"new"


async def test_a_lost_generation_never_comes_back_to_a_retired_value(
    redis_client: redis.Redis, redis_prefix: str
) -> None:
    """The generation is taken from the server's clock: losing its key (a restart, an eviction)
    and retiring again never returns to a value an old page was stored under."""
    keys = CacheKeys(f"{redis_prefix}gen-{uuid.uuid4().hex[:8]}:")
    cache = PostCache(redis_client, keys, ttl_seconds=60, tombstone_ttl_seconds=120)
    seen = [await cache.retire_lists() for _ in range(20)]
    await redis_client.delete(keys.list_generation())
    seen += [await cache.retire_lists() for _ in range(20)]
    assert len(set(seen)) == len(seen)
    assert [int(g) for g in seen] == sorted(int(g) for g in seen)


async def test_pages_that_depend_on_the_viewer_are_never_shared(
    client: httpx.AsyncClient, make_key: MakeKey
) -> None:
    author, other = await make_key(), await make_key()
    tag = f"t{uuid.uuid4().hex[:8]}"
    await client.post(
        "/v1/posts", json={"title": "draft", "body": "b", "tags": [tag]}, headers=author.headers
    )
    mine = await client.get("/v1/posts", params={"tag": tag}, headers=author.headers)
    theirs = await client.get("/v1/posts", params={"tag": tag}, headers=other.headers)
    assert len(mine.json()["items"]) == 1
    assert theirs.json()["items"] == []
    assert "X-Cache" not in mine.headers
    # Later pages are not cached either.
    assert (
        "X-Cache"
        not in (
            await client.get("/v1/posts", params={"tag": tag, "limit": 1}, headers=author.headers)
        ).headers
    )


async def test_creating_a_post_makes_no_cache_call(
    client: httpx.AsyncClient, make_key: MakeKey, cache: PostCache
) -> None:
    """A new post has nothing cached and list pages are the invalidator's: besides its rate
    limit, the POST's only Redis work is the writer's read fence (decision 0036); no tombstone
    is written, no generation moved."""
    key = await make_key()
    before = await cache.list_generation()
    created = await create(client, key.headers, f"t{uuid.uuid4().hex[:8]}")
    post_id = uuid.UUID(created["id"])
    assert await cache.client.exists(cache.keys.post_invalidated(post_id)) == 0
    assert await cache.list_generation() == before
    # An update still invalidates the writer's post at once.
    patched = await client.patch(f"/v1/posts/{post_id}", json={"title": "new"}, headers=key.headers)
    assert patched.status_code == 200, patched.text
    assert await cache.client.get(cache.keys.post_invalidated(post_id)) == b"4"
