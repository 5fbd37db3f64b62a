"""Creating and dropping the private databases tests run against."""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import asyncpg

from herald_shared.migrate import upgrade
from herald_shared.settings import DatabaseSettings


def dsn_for(dsn: str, database: str) -> str:
    """``dsn`` pointing at another database on the same server."""
    base, _, query = dsn.partition("?")
    server = base.rsplit("/", 1)[0]
    return f"{server}/{database}" + (f"?{query}" if query else "")


async def create_database(admin_dsn: str, name: str) -> None:
    conn = await asyncpg.connect(admin_dsn)
    try:
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()


async def drop_database(admin_dsn: str, name: str) -> None:
    conn = await asyncpg.connect(admin_dsn)
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await conn.close()


def admin_dsn() -> str:
    """The server's DSN tests create databases through (``HERALD_DB_DSN``; its role needs
    CREATEDB)."""
    return os.environ.get("HERALD_DB_DSN", DatabaseSettings().dsn)


@asynccontextmanager
async def own_database(label: str) -> AsyncIterator[str]:
    """A migrated database of one test's own; its DSN. Dropped when the block ends, so what the
    test counts there is only what it wrote."""
    admin = admin_dsn()
    name = f"herald_test_{label}_{uuid.uuid4().hex[:8]}"
    await create_database(admin, name)
    try:
        dsn = dsn_for(admin, name)
        await upgrade(dsn)
        yield dsn
    finally:
        await drop_database(admin, name)
