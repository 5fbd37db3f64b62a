"""The Redis client every process shares, with deadlines and a circuit breaker around it."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import redis.asyncio as redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError

from herald_shared.resilience import Breaker, BreakerOpenError
from herald_shared.settings import RedisSettings

#: Errors meaning "Redis cannot answer right now".
REDIS_ERRORS: tuple[type[BaseException], ...] = (RedisError, OSError, TimeoutError)
#: What a call guarded by the Redis breaker raises when Redis cannot answer (or was not asked).
REDIS_UNAVAILABLE: tuple[type[BaseException], ...] = (BreakerOpenError, *REDIS_ERRORS)


def create_breaker(settings: RedisSettings, owner: str) -> Breaker:
    return Breaker(
        f"{owner}.redis",
        fail_max=settings.breaker_failures,
        reset_timeout=settings.breaker_reset_seconds,
        counts=REDIS_ERRORS,
    )


@asynccontextmanager
async def create_redis(settings: RedisSettings, client_name: str) -> AsyncIterator[redis.Redis]:
    """One long-lived client per process: a blocking pool (waits briefly instead of raising
    "too many connections"), short socket timeouts, and no client-side retries — the breaker
    and the callers' fallbacks decide what a failure means."""
    pool = redis.BlockingConnectionPool.from_url(
        settings.url.get_secret_value(),
        max_connections=settings.max_connections,
        timeout=settings.pool_timeout_seconds,
        socket_timeout=settings.socket_timeout_seconds,
        socket_connect_timeout=settings.connect_timeout_seconds,
        client_name=client_name,
        retry=Retry(NoBackoff(), 0),
    )
    client = redis.Redis(connection_pool=pool)
    try:
        yield client
    finally:
        await client.aclose()
        await pool.aclose()
