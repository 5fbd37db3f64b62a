"""A database that cannot serve a request answers 503 problem+json with Retry-After, never 500,
and makes ``/readyz`` 503: a statement cut off by its statement timeout, a pool closed under the
app, a server refusing more connections. Each on a real PostgreSQL database of the test's own.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from dataclasses import replace

import asyncpg
import httpx
import pytest

from herald_api.settings import Settings
from herald_shared import accounts
from herald_shared.apikeys import Role
from herald_shared.settings import DatabaseSettings, RelaySettings
from tests.support.apps import running_api
from tests.support.databases import own_database
from tests.support.http import assert_problem


@pytest.fixture
async def own_dsn() -> AsyncIterator[str]:
    async with own_database("dbfail") as dsn:
        yield dsn


async def _key(dsn: str) -> dict[str, str]:
    conn = await asyncpg.connect(dsn)
    try:
        key = await accounts.create_key(conn, f"acct-{uuid.uuid4().hex[:8]}", Role.MEMBER)
    finally:
        await conn.close()
    return {"Authorization": f"Bearer {key.token}"}


def _on(
    settings: Settings, dsn: str, *, pool_min_size: int = 1, statement_timeout_ms: int = 5000
) -> Settings:
    db = DatabaseSettings(
        dsn=dsn,
        pool_min_size=pool_min_size,
        pool_max_size=2,
        statement_timeout_ms=statement_timeout_ms,
    )
    return replace(settings, db=db, relay=RelaySettings(enabled=False))


def assert_unavailable(response: httpx.Response) -> None:
    assert_problem(response, 503)
    assert int(response.headers["Retry-After"]) >= 1


def assert_unready(response: httpx.Response) -> None:
    assert response.status_code == 503, response.text
    body = response.json()
    assert body["status"] == "unavailable"
    assert body["checks"]["database"] != "ok"


async def test_a_statement_timeout_answers_503_and_readyz_503(
    settings: Settings, own_dsn: str
) -> None:
    headers = await _key(own_dsn)
    locker = await asyncpg.connect(own_dsn)
    try:
        async with running_api(_on(settings, own_dsn, statement_timeout_ms=300)) as api:
            assert (await api.http.get("/v1/posts", headers=headers)).status_code == 200
            async with locker.transaction():
                # The key lookup and the readiness query wait on these locks until PostgreSQL
                # cancels them (QueryCanceledError).
                await locker.execute(
                    "LOCK TABLE api_keys, alembic_version IN ACCESS EXCLUSIVE MODE"
                )
                assert_unavailable(await api.http.get("/v1/posts", headers=headers))
                assert_unready(await api.http.get("/readyz"))
            assert (await api.http.get("/v1/posts", headers=headers)).status_code == 200
            assert (await api.http.get("/readyz")).status_code == 200
    finally:
        await locker.close()


async def test_a_closed_pool_answers_503_and_readyz_503(settings: Settings, own_dsn: str) -> None:
    headers = await _key(own_dsn)
    async with running_api(_on(settings, own_dsn)) as api:
        await api.state.db.primary.close()  # acquiring now raises asyncpg's InterfaceError
        assert_unavailable(await api.http.get("/v1/posts", headers=headers))
        assert_unavailable(
            await api.http.post("/v1/posts", json={"title": "T", "body": "B"}, headers=headers)
        )
        assert_unready(await api.http.get("/readyz"))


async def test_too_many_connections_answers_503_and_readyz_503(
    settings: Settings, own_dsn: str
) -> None:
    headers = await _key(own_dsn)
    name = own_dsn.rsplit("/", 1)[1].split("?")[0]
    admin = await asyncpg.connect(own_dsn)
    try:
        await admin.execute(f'ALTER DATABASE "{name}" CONNECTION LIMIT 0')
    finally:
        await admin.close()
    # No pooled connection is made at start-up: every request has to connect, and is refused.
    async with running_api(_on(settings, own_dsn, pool_min_size=0)) as api:
        assert_unavailable(await api.http.get("/v1/posts", headers=headers))
        assert_unready(await api.http.get("/readyz"))


async def test_a_pool_acquire_timeout_answers_503(settings: Settings, own_dsn: str) -> None:
    headers = await _key(own_dsn)
    config = _on(settings, own_dsn)
    config = replace(config, db=config.db.model_copy(update={"acquire_timeout_seconds": 0.2}))
    async with running_api(config) as api:
        pool = api.state.db.primary
        held = [await pool.acquire() for _ in range(pool.get_max_size())]
        try:
            assert_unavailable(await api.http.get("/v1/posts", headers=headers))
            assert_unready(await api.http.get("/readyz"))
        finally:
            for conn in held:
                await pool.release(conn)
        assert (await api.http.get("/v1/posts", headers=headers)).status_code == 200
