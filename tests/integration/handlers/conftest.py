"""Helpers for the handler tests: each handler is called directly, as the consumer runtime calls
it — the typed event and, for inbox handlers, a transaction on the run's real database — with
no broker in between. Posts are written with plain SQL, as the API would leave them."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import asyncpg

from herald_shared.db import Connection
from herald_shared.events import EventData, EventEnvelope
from herald_shared.messaging.handlers import Event, event_of

M = TypeVar("M", bound=EventData)


async def insert_post(
    pool: asyncpg.Pool,
    author_id: uuid.UUID,
    *,
    body: str = "A body",
    status: str = "draft",
    title: str = "A title",
    tags: list[str] | None = None,
) -> uuid.UUID:
    post_id = uuid.uuid4()
    await pool.execute(
        "INSERT INTO posts (id, author_id, title, body, tags, status) "
        "VALUES ($1, $2, $3, $4, $5, $6)",
        post_id,
        author_id,
        title,
        body,
        tags or [],
        status,
    )
    return post_id


async def change_post(pool: asyncpg.Pool, post_id: uuid.UUID, **fields: Any) -> int:
    """Change the post's columns as an update does (its version grows); returns the version."""
    assignments = ", ".join(f"{name} = ${n}" for n, name in enumerate(fields, 2))
    version: int = await pool.fetchval(
        f"UPDATE posts SET {assignments}, version = version + 1 WHERE id = $1 RETURNING version",
        post_id,
        *fields.values(),
    )
    return version


def event(payload: M, aggregate_id: uuid.UUID, version: int, *, attempt: int = 1) -> Event[M]:
    """The event a handler receives for ``payload`` about ``aggregate_id`` at ``version``."""
    envelope = EventEnvelope.wrap(payload, aggregate_id=aggregate_id, aggregate_version=version)
    return event_of(envelope, payload, attempt)


async def in_transaction(
    pool: asyncpg.Pool, handle: Callable[[Connection], Awaitable[None]]
) -> None:
    """Run an inbox handler's body in one committed transaction, as the runtime does."""
    async with pool.acquire() as tx, tx.transaction():
        await handle(tx)
