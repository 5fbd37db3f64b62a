"""The Redis client every process shares, with deadlines and a circuit breaker around it:
one Redis node, or a Redis Cluster (``HERALD_REDIS_CLUSTER``) discovered from the URL's node."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import redis.asyncio as redis
from redis.asyncio.cluster import RedisCluster
from redis.asyncio.connection import AbstractConnection
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import MaxConnectionsError, RedisError

from herald_shared.resilience import Breaker, BreakerOpenError
from herald_shared.settings import RedisSettings

#: A client of one Redis node or of a Redis Cluster: the cache and the limiter work with both.
RedisClient = redis.Redis | RedisCluster

#: Errors meaning "Redis cannot answer right now" (callers fall back on any of them).
REDIS_ERRORS: tuple[type[BaseException], ...] = (RedisError, OSError, TimeoutError)
#: What a call guarded by the Redis breaker raises when Redis cannot answer (or was not asked).
REDIS_UNAVAILABLE: tuple[type[BaseException], ...] = (BreakerOpenError, *REDIS_ERRORS)

#: Errors of this process, not of Redis: every local connection was busy.
POOL_EXHAUSTED: tuple[type[BaseException], ...] = (MaxConnectionsError,)


#: What redis-py's blocking pool says when its wait for a free connection timed out.
_NO_CONNECTION = "No connection available."


class PoolExhaustedError(MaxConnectionsError):
    """No pooled connection became free within the pool timeout (a load spike here)."""


class _Pool(redis.BlockingConnectionPool):
    """A blocking pool whose wait timeout says what it is: redis-py raises a plain
    ``ConnectionError`` for it, indistinguishable from Redis refusing connections."""

    async def get_connection(self, *args: Any, **kwargs: Any) -> AbstractConnection:
        try:
            # redis-py leaves get_connection untyped.
            connection: AbstractConnection = await super().get_connection(  # type: ignore[no-untyped-call]
                *args, **kwargs
            )
        except redis.ConnectionError as exc:
            if str(exc) == _NO_CONNECTION and isinstance(exc.__cause__, TimeoutError):
                raise PoolExhaustedError(_NO_CONNECTION) from exc
            raise
        return connection


def create_breaker(settings: RedisSettings, owner: str) -> Breaker:
    """Counts what says Redis is unhealthy; an exhausted local pool is not counted."""
    return Breaker(
        f"{owner}.redis",
        fail_max=settings.breaker_failures,
        reset_timeout=settings.breaker_reset_seconds,
        counts=REDIS_ERRORS,
        ignores=POOL_EXHAUSTED,
    )


def is_cluster(client: RedisClient) -> bool:
    """Whether keys of different hash slots may live on different nodes (no cross-slot script)."""
    return isinstance(client, RedisCluster)


@asynccontextmanager
async def create_redis(settings: RedisSettings, client_name: str) -> AsyncIterator[RedisClient]:
    """One long-lived client per process with short socket timeouts and no client-side retries
    — the breaker and the callers' fallbacks decide what a failure means.

    One node: a blocking pool (waits briefly instead of raising "too many connections").
    A cluster: the URL names one node, the others are discovered from it; each node gets its
    own pool of ``max_connections``, which raises at once when full (counted as an exhausted
    pool, not as Redis failing). Redirections (MOVED/ASK) are followed; a lost node fails the
    call, and the client reloads the slot map on its next call.
    """
    if settings.cluster:
        cluster = RedisCluster.from_url(
            settings.url.get_secret_value(),
            max_connections=settings.max_connections,
            socket_timeout=settings.socket_timeout_seconds,
            socket_connect_timeout=settings.connect_timeout_seconds,
            client_name=client_name,
            retry=Retry(NoBackoff(), 0),
        )
        try:
            yield cluster
        finally:
            await cluster.aclose()
        return
    pool = _Pool.from_url(
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
