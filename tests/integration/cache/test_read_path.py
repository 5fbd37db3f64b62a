"""The cache-aside read path of ``GET /v1/posts/{id}`` against the real Redis and PostgreSQL:
hits and misses serve the same bytes and ETag, drafts stay private when cached, concurrent
misses read the database once, and a fill older than an invalidation is refused."""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import replace
from urllib.parse import urlsplit

import asyncpg
import httpx
import redis.asyncio as redis

from herald_api.posts.reads import entry_of
from herald_api.posts.repository import fetch_post
from herald_api.settings import Settings
from herald_shared.apikeys import Role
from herald_shared.cache import CachedPost, CacheKeys, PostCache, decode_entry
from herald_shared.settings import DatabaseSettings
from tests.conftest import MakeKey
from tests.support.apps import running_api
from tests.support.faults import FaultProxy
from tests.support.http import assert_problem, create_published
from tests.support.network import with_port
from tests.support.waiting import wait_until


async def db_entry(db_pool: asyncpg.Pool, post_id: str) -> CachedPost:
    """The entry (header and the bytes the API sends) for the post as PostgreSQL has it now."""
    async with db_pool.acquire() as conn:
        row = await fetch_post(conn, uuid.UUID(post_id))
    assert row is not None
    return entry_of(row)


async def test_a_miss_fills_the_cache_and_a_hit_serves_the_same_bytes_and_etag(
    client: httpx.AsyncClient,
    make_key: MakeKey,
    db_pool: asyncpg.Pool,
    redis_client: redis.Redis,
    redis_prefix: str,
) -> None:
    key = await make_key()
    post = await create_published(client, key, title="Cached", tags=["cache"])
    url = f"/v1/posts/{post['id']}"

    miss = await client.get(url, headers=key.headers)
    hit = await client.get(url, headers=key.headers)

    assert (miss.status_code, hit.status_code) == (200, 200)
    assert (miss.headers["X-Cache"], hit.headers["X-Cache"]) == ("miss", "hit")
    assert miss.headers["ETag"] == hit.headers["ETag"] == '"1"'
    assert hit.headers["content-type"] == miss.headers["content-type"] == "application/json"
    assert hit.headers["Cache-Control"] == "private, no-cache"
    expected = await db_entry(db_pool, post["id"])
    assert hit.content == miss.content == expected.body
    assert hit.json() == post
    raw = await redis_client.get(CacheKeys(redis_prefix).post(uuid.UUID(post["id"])))
    assert isinstance(raw, bytes)
    assert decode_entry(raw) == expected
    assert (expected.status, expected.author_id) == ("published", key.account_id)


async def test_if_none_match_is_304_on_a_miss_and_on_a_hit(
    client: httpx.AsyncClient, make_key: MakeKey
) -> None:
    key = await make_key()
    post = await create_published(client, key)
    url = f"/v1/posts/{post['id']}"
    conditional = key.headers | {"If-None-Match": '"1"'}

    miss = await client.get(url, headers=conditional)
    hit = await client.get(url, headers=conditional)

    for response, outcome in ((miss, "miss"), (hit, "hit")):
        assert response.status_code == 304, response.text
        assert response.content == b""
        assert response.headers["ETag"] == '"1"'
        assert response.headers["X-Cache"] == outcome
    other = await client.get(url, headers=key.headers | {"If-None-Match": '"7", W/"8"'})
    assert other.status_code == 200
    assert other.headers["X-Cache"] == "hit"

    # After a change the old tag no longer matches, whether the read misses or hits.
    patched = await client.patch(url, json={"title": "New"}, headers=key.headers)
    assert patched.status_code == 200, patched.text
    for outcome in ("miss", "hit"):
        response = await client.get(url, headers=conditional)
        assert response.status_code == 200
        assert response.headers["X-Cache"] == outcome
        assert response.headers["ETag"] == '"2"'
        assert response.json()["title"] == "New"


async def test_a_cached_draft_is_served_to_its_author_only(
    client: httpx.AsyncClient,
    make_key: MakeKey,
    redis_client: redis.Redis,
    redis_prefix: str,
) -> None:
    author = await make_key()
    other = await make_key()
    admin = await make_key(Role.ADMIN)
    draft = await create_published(client, author, status="draft", title="Not yet")
    url = f"/v1/posts/{draft['id']}"
    entry_key = CacheKeys(redis_prefix).post(uuid.UUID(draft["id"]))

    first = await client.get(url, headers=author.headers)
    assert (first.status_code, first.headers["X-Cache"]) == (200, "miss")
    cached = await redis_client.get(entry_key)
    assert isinstance(cached, bytes)
    assert decode_entry(cached) is not None

    refused = await client.get(url, headers=other.headers)
    body = assert_problem(refused, 404)
    assert "X-Cache" not in refused.headers
    assert "Not yet" not in refused.text
    # Exactly what a post that does not exist looks like: nothing leaks.
    missing = await client.get(f"/v1/posts/{uuid.uuid4()}", headers=other.headers)
    assert assert_problem(missing, 404)["detail"] == body["detail"]

    # The refusal neither evicted nor changed the entry: the author still hits it.
    assert await redis_client.get(entry_key) == cached
    again = await client.get(url, headers=author.headers)
    assert (again.status_code, again.headers["X-Cache"]) == (200, "hit")
    assert again.content == first.content
    as_admin = await client.get(url, headers=admin.headers)
    assert (as_admin.status_code, as_admin.headers["X-Cache"]) == (200, "hit")


async def reads_spent(redis_client: redis.Redis, redis_prefix: str, key_id: str) -> int:
    """Read requests the rate limiter counted for ``key_id`` (every window of this run)."""
    total = 0
    async for name in redis_client.scan_iter(match=f"{redis_prefix}{{rl:key:{key_id}:r}}:*"):
        total += int(await redis_client.get(name) or 0)
    return total


async def test_concurrent_misses_of_one_post_read_the_database_once(
    settings: Settings,
    database_dsn: str,
    make_key: MakeKey,
    db_pool: asyncpg.Pool,
    redis_client: redis.Redis,
    redis_prefix: str,
) -> None:
    """The observable is the statements the app sends to PostgreSQL, recorded by an asyncpg
    query logger on every connection of its (fixed-size) pool. To make all 50 requests miss
    at the same time, the test holds an ACCESS EXCLUSIVE lock on ``posts``: the first miss's
    read blocks on it (PostgreSQL shows exactly one backend waiting), and the lock is only
    released once the rate limiter has counted all 50 requests, i.e. once each of them has
    missed the cache (the entry is fetched by the same script) and is waiting for the read.

    The app runs in the test's own event loop, where a pause (a full garbage collection late
    in a long run) can outlast Redis's 100 ms connect and socket timeouts: the limiter would
    fail open and the request go uncounted. Counting is how this test sees the requests
    arrive, so its Redis deadlines are generous; failing open is tested on its own
    (``test_paused_redis``)."""
    pool_size = 4
    settings = replace(
        settings,
        db=DatabaseSettings(dsn=database_dsn, pool_min_size=pool_size, pool_max_size=pool_size),
        redis=settings.redis.model_copy(
            update={name: 5.0 for name in ("connect_timeout_seconds", "socket_timeout_seconds")}
        ),
    )
    author, reader = await make_key(), await make_key()
    async with running_api(settings) as api:
        post = await create_published(api.http, author, title="Hot")
        url = f"/v1/posts/{post['id']}"
        statements: list[str] = []
        pool = api.state.db.replica
        connections = [await pool.acquire() for _ in range(pool.get_max_size())]
        for connection in connections:
            connection.add_query_logger(lambda logged: statements.append(logged.query))
        for connection in connections:
            await pool.release(connection)

        async def all_counted() -> bool:
            return await reads_spent(redis_client, redis_prefix, reader.key_id) == 50

        async def one_read_blocked() -> bool:
            waiting = await db_pool.fetchval(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                "AND wait_event_type = 'Lock' AND query LIKE $1 AND query NOT LIKE $2",
                "%FROM posts WHERE id = $1%",
                "%FOR UPDATE%",
            )
            assert waiting <= 1, f"{waiting} reads of the post are waiting in PostgreSQL"
            return bool(waiting == 1)

        async with db_pool.acquire() as lock, lock.transaction():
            await lock.execute("LOCK TABLE posts IN ACCESS EXCLUSIVE MODE")
            gets = asyncio.gather(*(api.http.get(url, headers=reader.headers) for _ in range(50)))
            await wait_until(all_counted, seconds=10, message="not every request was counted")
            await wait_until(one_read_blocked, seconds=10, message="no read waits for the lock")
        responses = await gets
        after = await api.http.get(url, headers=reader.headers)

    assert [r.status_code for r in responses] == [200] * 50
    assert {r.headers["X-Cache"] for r in responses} == {"miss"}
    assert len({r.content for r in responses}) == 1
    post_reads = [
        q for q in statements if "FROM posts WHERE id = $1" in q and "FOR UPDATE" not in q
    ]
    assert len(post_reads) == 1, post_reads
    assert after.headers["X-Cache"] == "hit"
    assert after.content == responses[0].content


async def test_a_read_joining_a_load_from_before_a_commit_gets_the_committed_version(
    settings: Settings,
    database_dsn: str,
    make_key: MakeKey,
    db_pool: asyncpg.Pool,
    redis_client: redis.Redis,
    redis_prefix: str,
) -> None:
    """Coalescing must not hand a reader data older than an invalidation it started after.

    Reads go to a "replica" (the same database behind a proxy that can hold results back):
    reader A's miss reads version 1, and its result is held; the author's PATCH commits
    version 2 and invalidates (``invalidate_on_write``); then reader B misses and joins A's
    load, which is still in flight. A's result (version 1) then arrives, and its fill is
    refused by the tombstone — B started after that invalidation and must see version 2.
    """
    target = urlsplit(database_dsn)
    assert target.hostname is not None
    assert target.port is not None
    proxy = FaultProxy(target.hostname, target.port)
    await proxy.start()
    settings = replace(
        settings,
        db=DatabaseSettings(
            dsn=database_dsn,
            replica_dsn=with_port(database_dsn, proxy.port),
            pool_min_size=1,
            pool_max_size=4,
        ),
    )
    author, reader_a, reader_b = await make_key(), await make_key(), await make_key()
    try:
        async with running_api(settings) as api:
            post = await create_published(api.http, author, title="Before")
            url = f"/v1/posts/{post['id']}"
            # Prepare the read's statement on the replica connection first: a prepare would
            # wait for the held answer instead of running the query.
            warm = await create_published(api.http, author)
            assert (
                await api.http.get(f"/v1/posts/{warm['id']}", headers=author.headers)
            ).is_success
            held_since = await db_pool.fetchval("SELECT clock_timestamp()")
            proxy.hold()
            first = asyncio.ensure_future(api.http.get(url, headers=reader_a.headers))

            async def read_done_in_postgres() -> bool:
                done = await db_pool.fetchval(
                    "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                    "AND state = 'idle' AND query LIKE $1 AND query NOT LIKE $2 "
                    "AND query_start > $3",
                    "%FROM posts WHERE id = $1%",
                    "%FOR UPDATE%",
                    held_since,
                )
                return bool(done == 1)

            await wait_until(read_done_in_postgres, seconds=10, message="A's read never ran")
            patched = await api.http.patch(url, json={"title": "After"}, headers=author.headers)
            assert patched.status_code == 200, patched.text
            second = asyncio.ensure_future(api.http.get(url, headers=reader_b.headers))

            async def b_missed() -> bool:
                return await reads_spent(redis_client, redis_prefix, reader_b.key_id) == 1

            await wait_until(b_missed, seconds=10, message="B's read was never counted")
            assert api.state.post_reads.in_flight == 1
            await db_pool.fetchval("SELECT 1")  # a round trip: B has joined the load by now
            proxy.release()
            a, b = await first, await second
    finally:
        await proxy.stop()

    assert (a.status_code, b.status_code) == (200, 200)
    assert b.headers["X-Cache"] == "miss"
    assert b.json()["title"] == "After", "B started after the invalidation of version 2"
    assert b.headers["ETag"] == '"2"'


async def test_a_fill_older_than_an_invalidation_is_refused(
    redis_client: redis.Redis, redis_prefix: str
) -> None:
    keys = CacheKeys(f"{redis_prefix}fills-{uuid.uuid4().hex[:8]}:")
    cache = PostCache(redis_client, keys, ttl_seconds=60, tombstone_ttl_seconds=120)
    post_id, author = uuid.uuid4(), uuid.uuid4()

    def entry(version: int) -> CachedPost:
        return CachedPost(version, "published", author, b'{"version":%d}' % version)

    await cache.invalidate(post_id, 3)
    assert await cache.fill(post_id, entry(2)) is False
    assert await redis_client.get(keys.post(post_id)) is None
    assert await cache.fill(post_id, entry(3)) is True
    raw = await redis_client.get(keys.post(post_id))
    assert isinstance(raw, bytes)
    assert decode_entry(raw) == entry(3)
    # The tombstone outlives any read in flight; the entry has its own TTL.
    assert 60_000 < await redis_client.pttl(keys.post_invalidated(post_id)) <= 120_000
    assert 0 < await redis_client.pttl(keys.post(post_id)) <= 60_000

    # A newer entry is not replaced by an older one either, even with no invalidation.
    assert await cache.fill(post_id, entry(5)) is True
    assert await cache.fill(post_id, entry(4)) is False
    raw = await redis_client.get(keys.post(post_id))
    assert isinstance(raw, bytes)
    assert decode_entry(raw) == entry(5)

    # An older invalidation arriving late never lowers the tombstone, but drops the entry.
    await cache.invalidate(post_id, 2)
    assert await redis_client.get(keys.post_invalidated(post_id)) == b"3"
    assert await redis_client.get(keys.post(post_id)) is None
    assert await cache.fill(post_id, entry(2)) is False
    assert await cache.fill(post_id, entry(5)) is True
