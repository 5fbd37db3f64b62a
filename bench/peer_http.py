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
from datetime import datetime
from typing import Annotated, Any

import redis.asyncio as aredis
import uvicorn
from fastapi import Depends, FastAPI, HTTPException, Query, Request, Response
from fastapi_cache import FastAPICache
from fastapi_cache.backends.redis import RedisBackend
from fastapi_cache.decorator import cache
from pydantic import BaseModel, ConfigDict, Field
from slowapi import Limiter, _rate_limit_exceeded_handler
from slowapi.errors import RateLimitExceeded
from sqlalchemy import ARRAY, DateTime, Integer, String, Text, func, select
from sqlalchemy.dialects.postgresql import BYTEA, UUID
from sqlalchemy.ext.asyncio import async_sessionmaker, create_async_engine
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from bench.baselines import CountRequests
from bench.celery_app import create_app as create_celery_app

#: A budget no benchmark reaches: the limiter is measured, never refusing.
RATE_LIMIT = "2000000000/minute"
KEY_CACHE_SECONDS = 60.0
P2_TASK = "bench.post_created"


class Base(DeclarativeBase):
    pass


class Post(Base):
    __tablename__ = "posts"

    id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), primary_key=True)
    author_id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True))
    title: Mapped[str] = mapped_column(Text)
    body: Mapped[str] = mapped_column(Text)
    tags: Mapped[list[str]] = mapped_column(ARRAY(Text), default=list)
    status: Mapped[str] = mapped_column(Text)
    version: Mapped[int] = mapped_column(Integer, server_default="1")
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default="now()")
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default="now()")
    published_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    excerpt: Mapped[str | None] = mapped_column(Text)
    word_count: Mapped[int | None] = mapped_column(Integer)
    reading_time_seconds: Mapped[int | None] = mapped_column(Integer)
    enriched_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    enriched_version: Mapped[int | None] = mapped_column(Integer)


class ApiKey(Base):
    __tablename__ = "api_keys"

    id: Mapped[str] = mapped_column(String, primary_key=True)
    account_id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True))
    token_hash: Mapped[bytes] = mapped_column(BYTEA)
    role: Mapped[str] = mapped_column(Text)
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class PostOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    author_id: uuid.UUID
    title: str
    body: str
    tags: list[str]
    status: str
    version: int
    created_at: datetime
    updated_at: datetime
    published_at: datetime | None
    excerpt: str | None
    word_count: int | None
    reading_time_seconds: int | None
    enriched_at: datetime | None
    enriched_version: int | None


class PostPage(BaseModel):
    items: list[PostOut]
    next_cursor: str | None


class PostIn(BaseModel):
    title: str = Field(min_length=1, max_length=200)
    body: str = Field(min_length=1, max_length=100_000)
    tags: list[str] = Field(default_factory=list, max_length=20)
    status: str = Field(default="draft", pattern="^(draft|published)$")


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
        payload: PostIn, account: Annotated[uuid.UUID, Depends(authenticate)]
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
