"""Running out of local Redis connections is a load spike in this process, not Redis failing:
the caller falls back as for any Redis error, but the breaker does not count it, so a burst of
reads never opens it and sends every read to PostgreSQL."""

from __future__ import annotations

import pytest
import redis.asyncio as redis

from herald_shared.redis_client import REDIS_ERRORS, create_breaker, create_redis
from herald_shared.resilience import Breaker
from herald_shared.settings import RedisSettings
from tests.support.cache import REDIS_URL


async def test_an_exhausted_pool_falls_back_without_opening_the_breaker(redis_prefix: str) -> None:
    settings = RedisSettings(
        url=REDIS_URL,
        key_prefix=redis_prefix,
        max_connections=1,
        pool_timeout_seconds=0.05,
        breaker_failures=1,
    )
    breaker: Breaker = create_breaker(settings, "test")
    async with create_redis(settings, "test-pool-exhaustion") as client:
        assert isinstance(client, redis.Redis)
        held = await client.connection_pool.get_connection()  # type: ignore[no-untyped-call]
        try:
            for _ in range(3):
                with pytest.raises(REDIS_ERRORS):
                    async with breaker.guard():
                        await client.get(f"{redis_prefix}exhausted")
            assert breaker.state == "closed", "an exhausted local pool opened the breaker"
        finally:
            await client.connection_pool.release(held)
        async with breaker.guard():
            assert await client.get(f"{redis_prefix}exhausted") is None
    assert breaker.state == "closed"


async def test_redis_refusing_connections_still_opens_the_breaker(redis_prefix: str) -> None:
    settings = RedisSettings(
        url="redis://127.0.0.1:1/0", key_prefix=redis_prefix, breaker_failures=2
    )
    breaker = create_breaker(settings, "test")
    async with create_redis(settings, "test-refused") as client:
        for _ in range(2):
            with pytest.raises(REDIS_ERRORS):
                async with breaker.guard():
                    await client.get(f"{redis_prefix}refused")
    assert breaker.state == "open"
