"""``invalidate_post`` called directly with the real Redis cache and a breaker: the entry goes,
older fills are refused from then on, and Redis being away is reported in the runtime's terms
(an open breaker defers, a failed call is transient) without touching the cache."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import pytest
import redis.asyncio as redis

from herald_cache_invalidator.handlers import invalidate_post
from herald_shared.cache import CachedPost, CacheKeys, PostCache, revision
from herald_shared.events import PostEnriched, PostUpdated
from herald_shared.messaging.handlers import DependencyUnavailableError, TransientError
from herald_shared.redis_client import REDIS_ERRORS
from herald_shared.resilience import Breaker
from tests.integration.handlers.conftest import event
from tests.support.cache import REDIS_URL
from tests.support.network import free_port


@pytest.fixture
async def cache(redis_prefix: str) -> AsyncIterator[PostCache]:
    client = redis.Redis.from_url(REDIS_URL)
    try:
        keys = CacheKeys(f"{redis_prefix}inv-{uuid.uuid4().hex[:8]}:")
        yield PostCache(client, keys, ttl_seconds=60, tombstone_ttl_seconds=120)
    finally:
        await client.aclose()


def breaker() -> Breaker:
    return Breaker("test.redis", fail_max=1, reset_timeout=60, counts=REDIS_ERRORS)


def updated(author_id: uuid.UUID) -> PostUpdated:
    return PostUpdated(
        author_id=author_id, status="published", title="t", tags=[], previous_status="published"
    )


def entry(version: int, author_id: uuid.UUID) -> CachedPost:
    return CachedPost(revision(version, enriched=False), "published", author_id, b"{}")


async def test_the_entry_goes_and_older_fills_are_refused(cache: PostCache) -> None:
    post_id, author = uuid.uuid4(), uuid.uuid4()
    assert await cache.fill(post_id, entry(1, author))

    await invalidate_post(event(updated(author), post_id, 2), cache=cache, breaker=breaker())

    assert await cache.client.get(cache.keys.post(post_id)) is None
    assert await cache.client.get(cache.keys.post_invalidated(post_id)) == b"4"
    assert not await cache.fill(post_id, entry(1, author))
    assert await cache.fill(post_id, entry(2, author))


async def test_enrichment_invalidates_the_unenriched_revision_of_its_version(
    cache: PostCache,
) -> None:
    post_id, author = uuid.uuid4(), uuid.uuid4()
    enriched = PostEnriched(
        author_id=author, status="published", word_count=3, reading_time_seconds=1
    )
    await invalidate_post(event(enriched, post_id, 2), cache=cache, breaker=breaker())
    assert await cache.client.get(cache.keys.post_invalidated(post_id)) == b"5"
    assert not await cache.fill(post_id, entry(2, author))


async def test_an_open_breaker_defers_without_calling_redis(cache: PostCache) -> None:
    post_id, author = uuid.uuid4(), uuid.uuid4()
    assert await cache.fill(post_id, entry(1, author))
    opened = breaker()
    with pytest.raises(ConnectionError):
        async with opened.guard():
            raise ConnectionError("redis went away")
    assert opened.is_open

    with pytest.raises(DependencyUnavailableError) as deferred:
        await invalidate_post(event(updated(author), post_id, 2), cache=cache, breaker=opened)
    assert deferred.value.retry_after == pytest.approx(60, abs=1)
    assert await cache.client.get(cache.keys.post(post_id)) is not None


async def test_redis_unreachable_is_a_transient_failure(redis_prefix: str) -> None:
    unreachable = redis.Redis(port=free_port(), socket_connect_timeout=0.5, socket_timeout=0.5)
    try:
        cache = PostCache(
            unreachable, CacheKeys(redis_prefix), ttl_seconds=60, tombstone_ttl_seconds=120
        )
        with pytest.raises(TransientError, match="redis"):
            await invalidate_post(
                event(updated(uuid.uuid4()), uuid.uuid4(), 2), cache=cache, breaker=breaker()
            )
    finally:
        await unreachable.aclose()
