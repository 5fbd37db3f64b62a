"""The cache-invalidator's composition root: the Redis client, its breaker and the cache."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

from herald_cache_invalidator.settings import Settings
from herald_shared.cache import CacheKeys, PostCache
from herald_shared.redis_client import create_breaker, create_redis
from herald_shared.resilience import Breaker


@dataclass(frozen=True, slots=True)
class Deps:
    settings: Settings
    cache: PostCache
    breaker: Breaker


@asynccontextmanager
async def create_deps(settings: Settings) -> AsyncIterator[Deps]:
    async with create_redis(settings.redis, "herald-cache-invalidator") as client:
        cache = PostCache(
            client,
            CacheKeys(settings.redis.key_prefix),
            ttl_seconds=settings.cache.post_ttl_seconds,
            tombstone_ttl_seconds=settings.cache.tombstone_ttl_seconds,
        )
        yield Deps(settings, cache, create_breaker(settings.redis, "herald-cache-invalidator"))
