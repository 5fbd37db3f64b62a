"""Herald on a real three-master Redis Cluster (private ``redis-server`` nodes on loopback ports,
``HERALD_REDIS_CLUSTER=true``): cached reads hit, an invalidation drops the entry and fences
older fills, rate limits count and refuse, list pages are served, retired and refilled — through
the API itself and through the cache-invalidator's handler, with keys spread over the nodes."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from dataclasses import replace

import pytest
from redis.asyncio.cluster import RedisCluster

from herald_api.access.ratelimit import RateLimiter
from herald_api.settings import Settings
from herald_cache_invalidator.handlers import invalidate_post
from herald_shared.cache import CachedPost, CacheKeys, PostCache, revision
from herald_shared.events import PostUpdated
from herald_shared.redis_client import REDIS_ERRORS, create_redis
from herald_shared.resilience import Breaker
from herald_shared.settings import RateLimitSettings, RedisSettings
from tests.conftest import MakeKey
from tests.integration.handlers.conftest import event
from tests.support.apps import running_api
from tests.support.http import create_published
from tests.support.servers import PrivateRedisCluster


@pytest.fixture(scope="module")
async def cluster() -> AsyncIterator[PrivateRedisCluster]:
    cluster = await PrivateRedisCluster.create()
    try:
        yield cluster
    finally:
        await cluster.close()


@pytest.fixture
def cluster_settings(cluster: PrivateRedisCluster) -> RedisSettings:
    # Timeouts for a loaded test machine, not a production cache's tens of ms.
    return RedisSettings(
        url=cluster.url,
        cluster=True,
        key_prefix=f"c{uuid.uuid4().hex[:6]}:",
        socket_timeout_seconds=2,
        connect_timeout_seconds=2,
    )


@pytest.fixture
async def client(cluster_settings: RedisSettings) -> AsyncIterator[RedisCluster]:
    async with create_redis(cluster_settings, "test-cluster") as client:
        assert isinstance(client, RedisCluster)
        yield client


def breaker() -> Breaker:
    return Breaker("test.redis", fail_max=3, reset_timeout=60, counts=REDIS_ERRORS)


async def test_entries_and_fences_spread_over_the_nodes_and_fence_older_fills(
    client: RedisCluster, cluster_settings: RedisSettings, cluster: PrivateRedisCluster
) -> None:
    keys = CacheKeys(cluster_settings.key_prefix)
    cache = PostCache(client, keys, ttl_seconds=60, tombstone_ttl_seconds=120)
    author = uuid.uuid4()
    posts = [uuid.uuid4() for _ in range(12)]

    def entry(version: int) -> CachedPost:
        return CachedPost(version, "published", author, b'{"v":%d}' % version)

    for post_id in posts:
        assert await cache.fill(post_id, entry(2))
    nodes = {getattr(client.get_node_from_key(keys.post(p)), "port", None) for p in posts}
    assert nodes == {node.port for node in cluster.nodes}, "12 posts all on one node"

    for post_id in posts:
        await invalidate_post(
            event(
                PostUpdated(
                    author_id=author,
                    status="published",
                    title="t",
                    tags=[],
                    previous_status="published",
                ),
                post_id,
                2,
            ),
            cache=cache,
            breaker=breaker(),
        )
        assert await client.get(keys.post(post_id)) is None
        assert await client.get(keys.post_invalidated(post_id)) == b"4"
        assert not await cache.fill(post_id, entry(3)), "a fill older than the fence was stored"
        assert await cache.fill(post_id, entry(4))


async def test_list_pages_are_retired_by_one_write_and_fills_are_fenced(
    client: RedisCluster, cluster_settings: RedisSettings
) -> None:
    keys = CacheKeys(cluster_settings.key_prefix)
    cache = PostCache(client, keys, ttl_seconds=60, tombstone_ttl_seconds=120)
    page_key, generation_key = cache.list_keys("q:20")
    page, before = await client.mget([page_key, generation_key])
    assert page is None
    assert before is None
    assert await cache.fill_list(page_key, b"0", b"[1]")

    retired = await cache.invalidate_with_lists(uuid.uuid4(), 2)
    assert not await cache.fill_list(page_key, b"0", b"[stale]")
    assert await client.get(generation_key) == retired
    assert await cache.fill_list(page_key, retired, b"[2]")
    assert await client.get(page_key) == retired + b"|[2]"


async def test_the_rate_limit_counts_and_refuses_on_the_cluster(
    client: RedisCluster, cluster_settings: RedisSettings
) -> None:
    keys = CacheKeys(cluster_settings.key_prefix)
    limiter = RateLimiter(client, keys, breaker(), window_seconds=60, fail_closed=True)
    post_key = keys.post(uuid.uuid4())
    await client.set(post_key, b"cached")
    results = [await limiter.hit("key:k1:r", 5, also_get=(post_key,)) for _ in range(7)]
    assert [r.allowed for r in results] == [True] * 5 + [False] * 2
    assert [r.remaining for r in results[:5]] == [4, 3, 2, 1, 0]
    assert {r.values for r in results[:5]} == {(b"cached",)}
    assert {r.values for r in results[5:]} == {()}
    # Another principal's budget is its own.
    assert (await limiter.hit("key:k2:r", 5)).allowed


async def test_the_api_on_a_cluster_serves_hits_and_invalidates_its_writes(
    settings: Settings, cluster_settings: RedisSettings, make_key: MakeKey
) -> None:
    settings = replace(
        settings,
        redis=cluster_settings,
        rate_limit=RateLimitSettings(read_per_window=40, write_per_window=1000),
    )
    author, reader = await make_key(), await make_key()
    async with running_api(settings) as api:
        assert isinstance(api.state.cache.client if api.state.cache else None, RedisCluster)
        post = await create_published(api.http, author, title="Before", tags=["cl"])
        url = f"/v1/posts/{post['id']}"
        first, second = [await api.http.get(url, headers=reader.headers) for _ in range(2)]
        assert (first.headers["X-Cache"], second.headers["X-Cache"]) == ("miss", "hit")
        assert second.content == first.content

        patched = await api.http.patch(url, json={"title": "After"}, headers=author.headers)
        assert patched.status_code == 200, patched.text
        after = await api.http.get(url, headers=reader.headers)
        assert (after.headers["X-Cache"], after.json()["title"]) == ("miss", "After")

        lists = {"tag": "cl", "status": "published"}
        pages = [await api.http.get("/v1/posts", params=lists, headers=reader.headers)]
        pages.append(await api.http.get("/v1/posts", params=lists, headers=reader.headers))
        assert [p.headers["X-Cache"] for p in pages] == ["miss", "hit"]
        assert api.state.cache is not None
        await api.state.cache.invalidate_with_lists(
            uuid.UUID(post["id"]), revision(patched.json()["version"], enriched=False)
        )
        refilled = await api.http.get("/v1/posts", params=lists, headers=reader.headers)
        assert refilled.headers["X-Cache"] == "miss"

        # The read budget (40) is spent on the cluster: 6 reads so far, then 34 more pass.
        answers = await asyncio.gather(
            *(api.http.get(url, headers=reader.headers) for _ in range(40))
        )
        statuses = sorted(a.status_code for a in answers)
        assert statuses == [200] * 34 + [429] * 6, statuses
        assert api.state.redis_breaker.state == "closed"
