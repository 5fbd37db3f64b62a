"""The composition root: every I/O client the API uses is created here and passed down.

The lifespan yields a typed ``AppState``; routes receive it through the ``StateDep`` alias.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from typing import Annotated, TypedDict

from fastapi import Depends, FastAPI, Request

from herald_api.access.keys import KeyCache, KeyDirectory
from herald_api.access.ratelimit import RateLimiter
from herald_api.access.unknown_keys import UnknownKeys
from herald_api.metrics_endpoint import pool_gauges
from herald_api.paging.cursors import CursorCodec
from herald_api.posts.single_flight import SingleFlight
from herald_api.settings import Settings
from herald_shared.background import running
from herald_shared.cache import CachedPost, CacheKeys, PostCache
from herald_shared.db import Database, create_database
from herald_shared.migrate import head_revision
from herald_shared.redis_client import create_breaker, create_redis
from herald_shared.relay import OutboxRelay
from herald_shared.resilience import Breaker
from herald_shared.telemetry import shutdown_tracing


@dataclass(frozen=True, slots=True)
class AppState:
    settings: Settings
    db: Database
    keys: KeyDirectory
    #: Tokens found not to be valid (None when that cache is switched off).
    unknown_keys: UnknownKeys | None
    cursors: CursorCodec
    schema_head: str
    relay: OutboxRelay | None
    redis_breaker: Breaker
    cache: PostCache | None
    limiter: RateLimiter | None
    post_reads: SingleFlight[CachedPost | None]

    def events_committed(self) -> None:
        """Call after a transaction that wrote outbox rows has committed."""
        if self.relay is not None:
            self.relay.wake()


class _LifespanState(TypedDict):
    herald: AppState


def create_lifespan(
    settings: Settings,
) -> Callable[[FastAPI], AbstractAsyncContextManager[_LifespanState]]:
    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[_LifespanState]:
        async with AsyncExitStack() as stack:
            stack.callback(shutdown_tracing)  # last out: flushes the spans of everything below
            db = await stack.enter_async_context(
                create_database(settings.db, application_name="herald-api")
            )
            await stack.enter_async_context(running(pool_gauges(db), name="pool-gauges", grace=1.0))
            redis = await stack.enter_async_context(create_redis(settings.redis, "herald-api"))
            breaker = create_breaker(settings.redis, "herald-api")
            keys = CacheKeys(settings.redis.key_prefix)
            relay = (
                OutboxRelay(db.primary, settings.amqp, settings.relay, name="herald-api")
                if settings.relay.enabled
                else None
            )
            if relay is not None:
                # A batch cut short on shutdown rolls back and is published again later.
                await stack.enter_async_context(running(relay.run, name="outbox-relay", grace=2.0))
            cache = (
                PostCache(
                    redis,
                    keys,
                    ttl_seconds=settings.cache.post_ttl_seconds,
                    tombstone_ttl_seconds=settings.cache.tombstone_ttl_seconds,
                    list_ttl_seconds=settings.cache.list_ttl_seconds,
                )
                if settings.cache.enabled
                else None
            )
            limiter = (
                RateLimiter(
                    redis,
                    keys,
                    breaker,
                    window_seconds=settings.rate_limit.window_seconds,
                    fail_closed=settings.rate_limit.fail_closed,
                )
                if settings.rate_limit.enabled
                else None
            )
            unknown_ttl = settings.server.unknown_key_cache_ttl_seconds
            unknown_keys = (
                UnknownKeys(redis, keys, breaker, ttl_seconds=unknown_ttl)
                if unknown_ttl > 0
                else None
            )
            yield {
                "herald": AppState(
                    settings=settings,
                    db=db,
                    keys=KeyDirectory(
                        db, KeyCache(ttl_seconds=settings.server.auth_cache_ttl_seconds)
                    ),
                    unknown_keys=unknown_keys,
                    cursors=CursorCodec(settings.security.cursor_secret.get_secret_value()),
                    schema_head=head_revision(),
                    relay=relay,
                    redis_breaker=breaker,
                    cache=cache,
                    limiter=limiter,
                    post_reads=SingleFlight(),
                )
            }

    return lifespan


async def get_state(request: Request) -> AppState:
    # A coroutine: FastAPI runs a plain ``def`` dependency in a worker thread, on every request.
    state: AppState = request.state.herald
    return state


StateDep = Annotated[AppState, Depends(get_state)]
