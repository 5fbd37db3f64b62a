"""One short-lived database connection for a command."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TypeVar

import asyncpg

from herald_shared.db import Connection
from herald_shared.settings import DatabaseSettings

T = TypeVar("T")


async def with_connection_async(work: Callable[[Connection], Awaitable[T]]) -> T:
    settings = DatabaseSettings()
    conn = await asyncpg.connect(settings.dsn, timeout=settings.connect_timeout_seconds)
    try:
        return await work(conn)
    finally:
        await conn.close()


def with_connection(work: Callable[[Connection], Awaitable[T]]) -> T:
    """Run ``work`` on a connection to HERALD_DB_DSN and return its result."""
    return asyncio.run(with_connection_async(work))
