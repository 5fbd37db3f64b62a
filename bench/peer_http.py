"""The peer HTTP stacks: what a team would write with the libraries people pick, serving the same
posts from the same database.

- P1 (read): FastAPI + SQLAlchemy 2 async (asyncpg driver, an ORM model of ``posts``), an API-key
  check against the same ``api_keys`` table (SHA-256 of the bearer token, as Herald stores it,
  kept in a per-process cache for a minute), ``slowapi`` rate limiting in Redis (a
  sliding-window counter per API key, like Herald's limit) and ``fastapi-cache2`` on Redis:
  ``GET /p1/posts/{id}`` and the first list page ``GET /p1/posts?status=published&limit=20``.
- P2 (write): ``POST /p2/posts`` — the same API-key check, a SQLAlchemy insert committed, then
  ``send_task`` to Celery after the commit: the common dual write, with no outbox (a crash or a
  broker outage between the commit and the publish loses the event), no idempotency key and no
  rate limit.

Built the way the libraries' documentation shows (``create_async_engine`` and
``async_sessionmaker``; ``Limiter(key_func=..., storage_uri=...)``, ``@limiter.limit`` and the
``RateLimitExceeded`` handler; ``FastAPICache.init(RedisBackend(...))`` and ``@cache``; the
``session.add``/``commit``/``refresh`` of FastAPI's SQL tutorial), with Herald's tuning: served
by ``python -m bench.peer_http`` with uvicorn, uvloop, httptools and Herald's process count; a
connection pool of Herald's size (10, no overflow). SQLAlchemy's pool does not use asyncpg's
reset query; on check-in it rolls back only a transaction still open, and the sessions here
always end theirs.
"""

from __future__ import annotations

import hashlib
import os
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated, Any

import redis.asyncio as aredis
import uvicorn
from fastapi import Depends, FastAPI, HTTPException, Query, Request, Response
from fastapi_cache import FastAPICache
from fastapi_cache.backends.redis import RedisBackend
from fastapi_cache.decorator import cache
from slowapi import Limiter, _rate_limit_exceeded_handler
from slowapi.errors import RateLimitExceeded
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import async_sessionmaker, create_async_engine

from bench.baselines import CountRequests
from bench.celery_app import create_app as create_celery_app
from bench.peer_models import ApiKey, Post, PostIn, PostOut, PostPage

#: A budget no benchmark reaches: the limiter is measured, never refusing.
RATE_LIMIT = "2000000000/minute"
KEY_CACHE_SECONDS = 60.0
P2_TASK = "bench.post_created"


def _bearer(request: Request) -> str:
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token:
        raise HTTPException(401, "missing API key")
    return token


def create_app() -> FastAPI:
    dsn = os.environ["HERALD_DB_DSN"].replace("postgresql://", "postgresql+asyncpg://", 1)
    redis_url = os.environ.get("HERALD_REDIS_URL", "redis://127.0.0.1:6379/0")
    prefix = os.environ.get("HERALD_REDIS_KEY_PREFIX", "")
    engine = create_async_engine(dsn, pool_size=10, max_overflow=0)
    sessions = async_sessionmaker(engine, expire_on_commit=False)
    celery = create_celery_app(os.environ["BENCH_P2_QUEUE"], os.environ["BENCH_P2_BROKER"])
    #: token hash → (account id, time the entry expires)
    keys: dict[bytes, tuple[uuid.UUID, float]] = {}

    async def authenticate(request: Request) -> uuid.UUID:
        digest = hashlib.sha256(_bearer(request).encode()).digest()
        cached = keys.get(digest)
        if cached is not None and cached[1] > time.monotonic():
            return cached[0]
        async with sessions() as session:
            account = await session.scalar(
                select(ApiKey.account_id).where(
                    ApiKey.token_hash == digest, ApiKey.revoked_at.is_(None)
                )
            )
        if account is None:
            raise HTTPException(401, "unknown API key")
        keys[digest] = (account, time.monotonic() + KEY_CACHE_SECONDS)
        return account

    def rate_key(request: Request) -> str:
        return hashlib.sha256(_bearer(request).encode()).hexdigest()

    limiter = Limiter(
        key_func=rate_key,
        storage_uri=redis_url,
        storage_options={"key_prefix": f"{prefix}p1-limits"},
        strategy="sliding-window-counter",
    )

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        client = aredis.Redis.from_url(redis_url, max_connections=64)
        FastAPICache.init(RedisBackend(client), prefix=f"{prefix}p1-cache")
        try:
            yield
        finally:
            await client.aclose()
            await engine.dispose()

    app = FastAPI(lifespan=lifespan, openapi_url=None)
    app.state.limiter = limiter
    app.add_exception_handler(RateLimitExceeded, _rate_limit_exceeded_handler)  # type: ignore[arg-type]

    @app.get("/livez")
    async def livez() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/p1/posts/{post_id}", dependencies=[Depends(authenticate)])
    @limiter.limit(RATE_LIMIT)
    @cache(expire=60)
    async def read_post(request: Request, response: Response, post_id: uuid.UUID) -> PostOut:
        async with sessions() as session:
            post = await session.get(Post, post_id)
        if post is None or post.status != "published":
            raise HTTPException(404, "post not found")
        return PostOut.model_validate(post)

    @app.get("/p1/posts", dependencies=[Depends(authenticate)])
    @limiter.limit(RATE_LIMIT)
    @cache(expire=30)
    async def list_posts(
        request: Request,
        response: Response,
        status: str = "published",
        limit: Annotated[int, Query(ge=1, le=100)] = 20,
    ) -> PostPage:
        async with sessions() as session:
            rows = await session.scalars(
                select(Post)
                .where(Post.status == status)
                .order_by(Post.created_at.desc(), Post.id.desc())
                .limit(limit)
            )
            items = [PostOut.model_validate(p) for p in rows]
        last = items[-1] if len(items) == limit else None
        cursor = f"{last.created_at.isoformat()}|{last.id}" if last else None
        return PostPage(items=items, next_cursor=cursor)

    @app.post("/p2/posts", status_code=201)
    async def create_post(
        payload: PostIn,
        # A closure's dependency: FastAPI cannot resolve it from a postponed annotation.
        account: uuid.UUID = Depends(authenticate),  # noqa: B008
    ) -> PostOut:
        async with sessions() as session:
            post = Post(
                id=uuid.uuid4(),
                author_id=account,
                title=payload.title,
                body=payload.body,
                tags=payload.tags,
                status=payload.status,
                published_at=func.now() if payload.status == "published" else None,
            )
            session.add(post)
            await session.commit()
            await session.refresh(post)
        # After the commit, as the common advice goes; nothing retries it if it fails.
        celery.send_task(P2_TASK, args=[str(post.id)])
        return PostOut.model_validate(post)

    return app


def create_counted_app() -> Any:
    return CountRequests(create_app())


def main() -> None:
    """Serve the peers with the server options ``herald_api.main.main`` uses."""
    uvicorn.run(
        "bench.peer_http:create_counted_app",
        factory=True,
        host="127.0.0.1",
        port=int(os.environ["HERALD_API_PORT"]),
        workers=int(os.environ.get("HERALD_API_PROCESSES", "1")),
        loop="uvloop",
        http="httptools",
        lifespan="on",
        access_log=False,
        log_config=None,
        timeout_graceful_shutdown=10,
        proxy_headers=False,
    )


if __name__ == "__main__":
    main()
