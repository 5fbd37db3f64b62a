"""Idempotency keys with Stripe's semantics, stored in PostgreSQL with the write itself.

Within the write's transaction the key is first locked with a transaction-scoped advisory lock:
a second request with the same key while the first is still running gets 409 at once instead of
waiting. A completed key replays the stored response; the same key with another request body
is refused with 422. The record commits atomically with the write, so a crash cannot leave a
write without its record or a record without its write.

``create_once`` is that whole protocol around a route's own insert, in a transaction of several
statements. ``create_in_one_statement`` runs the same protocol as one statement (one round trip,
its own implicit transaction) for a create whose response is known before it runs: its CTEs
take the advisory lock, claim the key by inserting the record with the stored response, and run
the create's own inserts only when the claim succeeded; the statement's single result row says
which of created, replay, mismatch or in flight it was. Every ``POST`` that creates a resource
goes through one of the two.
"""

from __future__ import annotations

import hashlib
import json
import re
import uuid
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from functools import lru_cache
from typing import Annotated, Any, Generic, TypeVar

import asyncpg
from fastapi import Header
from pydantic import BaseModel
from starlette.responses import Response

from herald_api.access.keys import Principal
from herald_api.http.media import JSON
from herald_api.http.problems import Problem
from herald_api.lifespan import AppState
from herald_shared.db import Connection

_MAX_KEY_CHARS = 255
#: 1 to 255 printable ASCII characters, not starting or ending with a space (HTTP strips those).
KEY_PATTERN = r"^[\x21-\x7e]([\x20-\x7e]{0,253}[\x21-\x7e])?$"
_KEY_RE = re.compile(KEY_PATTERN)

IdempotencyKey = Annotated[
    str | None,
    Header(
        alias="Idempotency-Key",
        description="Makes the request safe to retry: a replay returns the original response.",
        examples=["2f1d9c1e-create-post-42"],
        json_schema_extra={"pattern": KEY_PATTERN},
    ),
]
# The first half of the two-int advisory lock id; other users of advisory locks pick other values.
_LOCK_CLASS = 0x4944  # "ID"


@dataclass(frozen=True, slots=True)
class StoredResponse:
    status: int
    body: bytes
    headers: Mapping[str, str] = field(default_factory=dict)


def validate_key(key: str) -> str:
    if _KEY_RE.fullmatch(key) is None:
        raise Problem(
            400,
            f"Idempotency-Key must be 1 to {_MAX_KEY_CHARS} printable ASCII characters, "
            "without a space at either end.",
            type_="invalid-idempotency-key",
        )
    return key


def request_fingerprint(method: str, path: str, body: Any) -> bytes:
    """Identifies "the same request": method, path and the JSON body, key order ignored."""
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(f"{method} {path}\n{canonical}".encode()).digest()


def _lock_name(account_id: uuid.UUID, key: str) -> str:
    return f"{account_id}:{key}"


def _in_use() -> Problem:
    return Problem(
        409,
        "A request with this Idempotency-Key is still being processed.",
        type_="idempotency-key-in-use",
        headers={"Retry-After": "1"},
    )


def _reused() -> Problem:
    return Problem(
        422,
        "This Idempotency-Key was used with a different request.",
        type_="idempotency-key-reused",
    )


async def claim(
    conn: Connection, account_id: uuid.UUID, key: str, fingerprint: bytes
) -> StoredResponse | None:
    """Inside the write's transaction: the response to replay, or None to go ahead."""
    locked = await conn.fetchval(
        "SELECT pg_try_advisory_xact_lock($1, hashtext($2))",
        _LOCK_CLASS,
        _lock_name(account_id, key),
    )
    if not locked:
        raise _in_use()
    row = await conn.fetchrow(
        """
        SELECT request_hash, response_status, response_body, response_headers
        FROM idempotency_keys
        WHERE account_id = $1 AND key = $2 AND expires_at > now()
        """,
        account_id,
        key,
    )
    if row is None:
        return None
    return _replay(row, fingerprint)


def _replay(row: asyncpg.Record | Mapping[str, Any], fingerprint: bytes) -> StoredResponse:
    """The stored response of a key's record, or 422 when the key was used with another
    request."""
    if bytes(row["request_hash"]) != fingerprint:
        raise _reused()
    return StoredResponse(
        status=row["response_status"],
        body=bytes(row["response_body"]),
        headers=json.loads(row["response_headers"]),
    )


async def record(
    conn: Connection,
    account_id: uuid.UUID,
    key: str,
    fingerprint: bytes,
    response: StoredResponse,
    ttl: timedelta,
) -> None:
    """Inside the write's transaction: store the response (replacing an expired record)."""
    await conn.execute(
        """
        INSERT INTO idempotency_keys
            (account_id, key, request_hash, response_status, response_body, response_headers,
             expires_at)
        VALUES ($1, $2, $3, $4, $5, $6::jsonb, now() + $7::interval)
        ON CONFLICT (account_id, key) DO UPDATE SET
            request_hash = EXCLUDED.request_hash,
            response_status = EXCLUDED.response_status,
            response_body = EXCLUDED.response_body,
            response_headers = EXCLUDED.response_headers,
            created_at = now(),
            expires_at = EXCLUDED.expires_at
        """,
        account_id,
        key,
        fingerprint,
        response.status,
        response.body,
        json.dumps(dict(response.headers)),
        ttl,
    )


T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Created(Generic[T]):
    """What a create wrote: ``value`` for the route's own use after the commit, the response to
    send, and the response a replay sends (``response`` itself unless given)."""

    value: T
    response: StoredResponse
    replay: StoredResponse | None = None


@dataclass(frozen=True, slots=True)
class CreateOutcome(Generic[T]):
    response: Response
    #: What this request created; None when ``response`` replays an earlier request's.
    created: T | None


def replayed(stored: StoredResponse) -> Response:
    return Response(
        stored.body,
        stored.status,
        headers={**stored.headers, "Idempotent-Replayed": "true"},
        media_type=JSON,
    )


def answered(stored: StoredResponse) -> Response:
    return Response(stored.body, stored.status, headers=dict(stored.headers), media_type=JSON)


async def create_once(
    state: AppState,
    principal: Principal,
    idempotency_key: str | None,
    *,
    path: str,
    payload: BaseModel,
    create: Callable[[Connection], Awaitable[Created[T]]],
) -> CreateOutcome[T]:
    """Run ``create`` in one transaction with the idempotency key's claim and record.

    Without a key, ``create`` simply runs in a transaction. With one: 400 when it is malformed,
    409 while another request holds it, 422 when it came with another body; a completed key
    answers its stored response again and ``create`` does not run; otherwise the response
    ``create`` returns is stored in the same transaction as its write.
    """
    key = validate_key(idempotency_key) if idempotency_key is not None else None
    fingerprint = request_fingerprint("POST", path, payload.model_dump())
    async with state.db.writer() as conn, conn.transaction():
        if key is not None:
            stored = await claim(conn, principal.account_id, key, fingerprint)
            if stored is not None:
                return CreateOutcome(replayed(stored), None)
        created = await create(conn)
        if key is not None:
            ttl = timedelta(hours=state.settings.server.idempotency_ttl_hours)
            replay = created.replay or created.response
            await record(conn, principal.account_id, key, fingerprint, replay, ttl)
    return CreateOutcome(answered(created.response), created.value)


@dataclass(frozen=True, slots=True)
class GatedWrite(Generic[T]):
    """A create written as CTEs that run only when the key was claimed.

    ``ctes`` is one or more ``name AS (...)`` CTEs, comma-separated; the first write selects
    ``FROM claimed_key``, a CTE with one row when the create may go ahead and none otherwise,
    and every later one selects from a CTE that does. Parameters are written ``{name}`` and
    take their values from ``args`` (so the SQL may contain no other braces). ``value``,
    ``response`` and ``replay`` are as in ``Created``: the response must be known before the
    statement runs, since it is stored by the same statement.
    """

    ctes: str
    args: Mapping[str, Any]
    value: T
    response: StoredResponse
    replay: StoredResponse | None = None


#: The claim's parameters come first: lock class, lock name, account, key, request hash,
#: stored status, body, headers, time to live.
_CLAIM_ARGS = 9

_CLAIM_CTES = """
    key_lock AS (SELECT pg_try_advisory_xact_lock($1, hashtext($2)) AS locked),
    claimed_key AS (
        INSERT INTO idempotency_keys
            (account_id, key, request_hash, response_status, response_body, response_headers,
             expires_at)
        SELECT $3::uuid, $4::text, $5::bytea, $6::integer, $7::bytea, $8::jsonb,
               now() + $9::interval
        FROM key_lock WHERE key_lock.locked
        ON CONFLICT (account_id, key) DO UPDATE SET
            request_hash = EXCLUDED.request_hash,
            response_status = EXCLUDED.response_status,
            response_body = EXCLUDED.response_body,
            response_headers = EXCLUDED.response_headers,
            created_at = now(),
            expires_at = EXCLUDED.expires_at
        WHERE idempotency_keys.expires_at <= now()
        RETURNING 1
    )"""

# Not claimed: the record read in the statement's snapshot. A record that committed after the
# snapshot was taken (its request finished while this one started) is not seen: that request
# counts as still in flight, and the client's retry replays it.
_DECISION = """
    SELECT key_lock.locked,
           EXISTS (SELECT FROM claimed_key) AS claimed,
           stored.request_hash, stored.response_status, stored.response_body,
           stored.response_headers::text AS response_headers
    FROM key_lock
    LEFT JOIN idempotency_keys AS stored
        ON NOT EXISTS (SELECT FROM claimed_key)
        AND stored.account_id = $3 AND stored.key = $4 AND stored.expires_at > now()
"""


@lru_cache(maxsize=64)
def _statement(ctes: str, names: tuple[str, ...], with_key: bool) -> str:
    first = _CLAIM_ARGS + 1 if with_key else 1
    numbered = ctes.format(**{name: f"${first + i}" for i, name in enumerate(names)})
    if with_key:
        return f"WITH {_CLAIM_CTES},\n{numbered}\n{_DECISION}"
    return f"WITH claimed_key AS (SELECT),\n{numbered}\nSELECT true AS locked, true AS claimed"


def decide(row: asyncpg.Record | Mapping[str, Any], fingerprint: bytes) -> StoredResponse | None:
    """What a one-statement create's result row means: None when this statement claimed the
    key (its writes happened), else the stored response to replay. Raises 409 while the key is
    held by a request still in flight, 422 when it was used with another request."""
    if not row["locked"]:
        raise _in_use()
    if row["claimed"]:
        return None
    if row["request_hash"] is None:
        raise _in_use()
    return _replay(row, fingerprint)


async def create_in_one_statement(
    state: AppState,
    principal: Principal,
    idempotency_key: str | None,
    *,
    path: str,
    payload: BaseModel,
    write: GatedWrite[T],
) -> CreateOutcome[T]:
    """``create_once``'s protocol and answers in a single statement: one database round trip.

    The statement is its own transaction: the key's claim (with the response to replay), and
    ``write``'s inserts commit together or not at all. A key another request holds (its
    transaction is open, or its statement is running) is 409 at once, without waiting for it.
    """
    key = validate_key(idempotency_key) if idempotency_key is not None else None
    names = tuple(write.args)
    values = [write.args[name] for name in names]
    async with state.db.writer() as conn:
        if key is None:
            await conn.execute(_statement(write.ctes, names, with_key=False), *values)
            return CreateOutcome(answered(write.response), write.value)
        fingerprint = request_fingerprint("POST", path, payload.model_dump())
        replay = write.replay or write.response
        row = await conn.fetchrow(
            _statement(write.ctes, names, with_key=True),
            _LOCK_CLASS,
            _lock_name(principal.account_id, key),
            principal.account_id,
            key,
            fingerprint,
            replay.status,
            replay.body,
            json.dumps(dict(replay.headers)),
            timedelta(hours=state.settings.server.idempotency_ttl_hours),
            *values,
        )
    assert row is not None
    stored = decide(row, fingerprint)
    if stored is not None:
        return CreateOutcome(replayed(stored), None)
    return CreateOutcome(answered(write.response), write.value)
