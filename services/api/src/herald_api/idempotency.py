"""Idempotency keys with Stripe's semantics, stored in PostgreSQL with the write itself.

Within the write's transaction the key is first locked with a transaction-scoped advisory lock:
a second request with the same key while the first is still running gets 409 at once instead of
waiting. A completed key replays the stored response; the same key with another request body
is refused with 422. The record commits atomically with the write, so a crash cannot leave a
write without its record or a record without its write.

``create_once`` is that whole protocol around a route's own insert; every ``POST`` that creates
a resource goes through it.
"""

from __future__ import annotations

import hashlib
import json
import re
import uuid
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Annotated, Any, Generic, TypeVar

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


async def claim(
    conn: Connection, account_id: uuid.UUID, key: str, fingerprint: bytes
) -> StoredResponse | None:
    """Inside the write's transaction: the response to replay, or None to go ahead."""
    locked = await conn.fetchval(
        "SELECT pg_try_advisory_xact_lock($1, hashtext($2))", _LOCK_CLASS, f"{account_id}:{key}"
    )
    if not locked:
        raise Problem(
            409,
            "A request with this Idempotency-Key is still being processed.",
            type_="idempotency-key-in-use",
            headers={"Retry-After": "1"},
        )
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
    if bytes(row["request_hash"]) != fingerprint:
        raise Problem(
            422,
            "This Idempotency-Key was used with a different request.",
            type_="idempotency-key-reused",
        )
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
