"""The bare baselines Herald's hot paths are compared with, as one FastAPI app factory.

- B1 ``GET /b1``: a small JSON object, nothing else;
- B2 ``GET /b2/{id}``: the bytes of one Redis GET (the post's JSON, as Herald caches it);
- B3 ``GET /b3/{id}``: one asyncpg primary-key fetch of the post's columns, as JSON;
- B4 ``POST /b4``: one INSERT of a post (autocommit).

Its pools are Herald's: PostgreSQL 2..10 connections released without a reset query (asyncpg's
default pool runs ``pg_advisory_unlock_all(); CLOSE ALL; UNLISTEN *; RESET ALL`` on every
release, one more round trip per request, which Herald's pool does not make), Redis 64.
Served exactly as Herald is (``python -m bench.baselines`` runs uvicorn with the options of
``herald_api.main.main``: uvloop, httptools, the same process count). Each request is counted in
a Prometheus multi-process counter, as Herald counts its own, so the harness can see how the
load spread over the server processes.
"""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import asyncpg
import redis.asyncio as redis
import uvicorn
from fastapi import FastAPI
from fastapi.responses import Response
from prometheus_client import Counter
from starlette.types import ASGIApp, Receive, Scope, Send

from bench.seams import POST_COLUMNS

# Not registered: ``python -m bench.baselines`` imports this module twice (as __main__ and as the
# factory's module); the multi-process file is written all the same.
REQUESTS = Counter(
    "bench_http_requests_total", "Requests a baseline process answered.", registry=None
)
JSON = "application/json"


class CountRequests:
    """Counts every HTTP request in the per-process counter."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            REQUESTS.inc()
        await self.app(scope, receive, send)


class ResetFreeConnection(asyncpg.Connection):
    """A pooled connection released without a reset query, as Herald's are: the baselines keep
    no session state either."""

    def get_reset_query(self) -> str:
        return ""


def create_app() -> FastAPI:
    """The baselines app; its pools are Herald's (see the module's docstring)."""
    dsn = os.environ["HERALD_DB_DSN"]
    prefix = os.environ.get("HERALD_REDIS_KEY_PREFIX", "")
    author = uuid.UUID(os.environ["BENCH_AUTHOR_ID"])
    state: dict[str, Any] = {}

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        pool = await asyncpg.create_pool(
            dsn, min_size=2, max_size=10, connection_class=ResetFreeConnection
        )
        client = redis.Redis.from_url(
            os.environ.get("HERALD_REDIS_URL", "redis://127.0.0.1:6379/0"), max_connections=64
        )
        state.update(pool=pool, redis=client)
        try:
            yield
        finally:
            await client.aclose()
            await pool.close()

    app = FastAPI(lifespan=lifespan, openapi_url=None)

    @app.get("/livez")
    async def livez() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/b1")
    async def b1() -> dict[str, Any]:
        return {"status": "ok", "service": "baseline", "n": 1}

    @app.get("/b2/{post_id}")
    async def b2(post_id: uuid.UUID) -> Response:
        body = await state["redis"].get(f"{prefix}b2:{post_id}")
        if body is None:
            return Response(status_code=404)
        return Response(body, media_type=JSON)

    @app.get("/b3/{post_id}")
    async def b3(post_id: uuid.UUID) -> Response:
        async with state["pool"].acquire() as conn:
            row = await conn.fetchrow(
                f"SELECT {POST_COLUMNS} FROM posts WHERE id = $1",  # noqa: S608
                post_id,
            )
        if row is None:
            return Response(status_code=404)
        return Response(json.dumps(dict(row), default=str).encode(), media_type=JSON)

    @app.post("/b4", status_code=201)
    async def b4() -> Response:
        post_id = uuid.uuid4()
        async with state["pool"].acquire() as conn:
            await conn.execute(
                "INSERT INTO posts (id, author_id, title, body, status) "
                "VALUES ($1, $2, 'baseline', 'baseline body', 'published')",
                post_id,
                author,
            )
        return Response(json.dumps({"id": str(post_id)}).encode(), 201, media_type=JSON)

    return app


def create_counted_app() -> ASGIApp:
    return CountRequests(create_app())


def main() -> None:
    """Serve the baselines with the server options ``herald_api.main.main`` uses."""
    uvicorn.run(
        "bench.baselines:create_counted_app",
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
