"""``POST /v1/posts`` decides create, replay, mismatch and in-flight in one statement: one
database round trip each, counted on the wire by a proxy in front of PostgreSQL."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from dataclasses import replace
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import httpx
import pytest

from herald_api.settings import ServerSettings, Settings
from herald_shared.settings import RelaySettings
from tests.conftest import ApiKey, MakeKey
from tests.support.apps import in_process_client
from tests.support.http import assert_problem
from tests.support.pg_wire import RoundTripCounter, round_trip_counter

BODY = {"title": "Counted", "body": "one statement", "tags": ["wire"]}
# The advisory lock's class, as a request holding the key takes it.
_LOCK_CLASS = 0x4944


def _through(dsn: str, port: int) -> str:
    parts = urlsplit(dsn)
    netloc = f"{parts.netloc.rpartition('@')[0]}@127.0.0.1:{port}".lstrip("@")
    query = "&".join(p for p in (parts.query, "sslmode=disable") if p)
    return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))


@pytest.fixture
async def counted(
    settings: Settings, database_dsn: str
) -> AsyncIterator[tuple[httpx.AsyncClient, RoundTripCounter]]:
    """The API with its database behind a counting proxy, the relay off (its sweeps would be
    counted too) and the key cache on (so authentication is not a round trip after the first)."""
    target = urlsplit(database_dsn)
    async with round_trip_counter(target.hostname or "127.0.0.1", target.port or 5432) as wire:
        counted_settings = replace(
            settings,
            db=settings.db.model_copy(
                update={
                    "dsn": _through(database_dsn, wire.port),
                    "pool_min_size": 1,
                    "pool_max_size": 1,
                }
            ),
            relay=RelaySettings(enabled=False),
            server=ServerSettings(auth_cache_ttl_seconds=60),
        )
        async with in_process_client(counted_settings) as http:
            yield http, wire


async def _post(
    http: httpx.AsyncClient, key: ApiKey, idem: str | None, body: dict[str, Any] = BODY
) -> httpx.Response:
    headers = key.headers | ({"Idempotency-Key": idem} if idem is not None else {})
    return await http.post("/v1/posts", json=body, headers=headers)


async def _counted_post(
    http: httpx.AsyncClient,
    wire: RoundTripCounter,
    key: ApiKey,
    idem: str | None,
    body: dict[str, Any] = BODY,
) -> tuple[httpx.Response, int]:
    wire.reset()
    response = await _post(http, key, idem, body)
    return response, wire.round_trips


async def test_each_outcome_of_a_create_is_one_round_trip(
    counted: tuple[httpx.AsyncClient, RoundTripCounter], make_key: MakeKey, db_pool: asyncpg.Pool
) -> None:
    http, wire = counted
    key = await make_key()
    # Warm up: the key's lookup, and the statements' preparation on the pool's one connection.
    assert (await _post(http, key, f"warm-{uuid.uuid4()}")).status_code == 201
    assert (await _post(http, key, None)).status_code == 201

    idem = f"rt-{uuid.uuid4()}"
    created, trips = await _counted_post(http, wire, key, idem)
    assert created.status_code == 201, created.text
    assert trips == 1, wire.messages

    replay, trips = await _counted_post(http, wire, key, idem)
    assert replay.headers["Idempotent-Replayed"] == "true"
    assert replay.content == created.content
    assert trips == 1, wire.messages

    mismatch, trips = await _counted_post(http, wire, key, idem, BODY | {"title": "Other"})
    assert_problem(mismatch, 422)
    assert trips == 1, wire.messages

    without_key, trips = await _counted_post(http, wire, key, None)
    assert without_key.status_code == 201
    assert trips == 1, wire.messages

    posts = await db_pool.fetchval(
        "SELECT count(*) FROM posts WHERE author_id = $1", key.account_id
    )
    events = await db_pool.fetchval(
        "SELECT count(*) FROM outbox o JOIN posts p ON p.id = o.aggregate_id "
        "WHERE p.author_id = $1",
        key.account_id,
    )
    assert posts == events == 4


async def test_a_key_held_by_a_running_request_is_409_at_once_in_one_round_trip(
    counted: tuple[httpx.AsyncClient, RoundTripCounter], make_key: MakeKey, database_dsn: str
) -> None:
    """Another request holds the key (its transaction is open, as a multi-statement create's is
    while it runs): the statement does not wait for it, and creates nothing."""
    http, wire = counted
    key = await make_key()
    assert (await _post(http, key, f"warm-{uuid.uuid4()}")).status_code == 201
    idem = f"held-{uuid.uuid4()}"
    holder = await asyncpg.connect(database_dsn)
    try:
        async with holder.transaction():
            await holder.execute(
                "SELECT pg_advisory_xact_lock($1, hashtext($2))",
                _LOCK_CLASS,
                f"{key.account_id}:{idem}",
            )
            response, trips = await _counted_post(http, wire, key, idem)
        problem = assert_problem(response, 409)
        assert problem["type"] == "/problems/idempotency-key-in-use"
        assert response.headers["Retry-After"] == "1"
        assert trips == 1, wire.messages
        stored = await holder.fetchval(
            "SELECT count(*) FROM idempotency_keys WHERE account_id = $1 AND key = $2",
            key.account_id,
            idem,
        )
        assert stored == 0
    finally:
        await holder.close()
    # Released: the same key now creates.
    again = await _post(http, key, idem)
    assert again.status_code == 201
    assert "Idempotent-Replayed" not in again.headers
