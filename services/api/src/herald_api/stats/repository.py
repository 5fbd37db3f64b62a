"""SQL for an account's statistics (the ``account_stats`` row the worker keeps)."""

from __future__ import annotations

import uuid

import asyncpg

from herald_shared.db import Connection


async def fetch_account_stats(conn: Connection, account_id: uuid.UUID) -> asyncpg.Record | None:
    """The account's counters; None before the worker applied its first post event."""
    return await conn.fetchrow(
        "SELECT draft_posts, published_posts, total_words, updated_at "
        "FROM account_stats WHERE account_id = $1",
        account_id,
    )
