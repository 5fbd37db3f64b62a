"""Herald's connection pools: borrowed connections return without a reset round trip, and a
transaction left open is still rolled back."""

from __future__ import annotations

import uuid

import asyncpg

from herald_shared.db import create_database
from herald_shared.settings import DatabaseSettings


def _settings(dsn: str) -> DatabaseSettings:
    return DatabaseSettings(dsn=dsn, pool_min_size=1, pool_max_size=1)


async def _last_query(dsn: str, pid: int) -> str:
    conn = await asyncpg.connect(dsn)
    try:
        query: str = await conn.fetchval("SELECT query FROM pg_stat_activity WHERE pid = $1", pid)
        return query
    finally:
        await conn.close()


async def test_a_released_connection_sends_no_reset_query(database_dsn: str) -> None:
    marker = f"SELECT 'pool-{uuid.uuid4().hex}'"
    async with create_database(_settings(database_dsn), "herald-test") as db:
        async with db.writer() as conn:
            pid = conn.get_server_pid()
            await conn.execute(marker)
        # The backend's last statement is still ours: nothing was sent on release.
        assert await _last_query(database_dsn, pid) == marker
        async with db.writer() as again:
            assert again.get_server_pid() == pid


async def test_a_transaction_left_open_is_rolled_back_on_release(database_dsn: str) -> None:
    table = f"pool_{uuid.uuid4().hex[:8]}"
    async with create_database(_settings(database_dsn), "herald-test") as db:
        async with db.writer() as conn:
            await conn.execute(f"CREATE TABLE {table} (n int)")
        try:
            async with db.writer() as conn:
                transaction = conn.transaction()
                await transaction.start()
                await conn.execute(f"INSERT INTO {table} VALUES (1)")
            async with db.writer() as conn:
                assert not conn.is_in_transaction()
                assert await conn.fetchval(f"SELECT count(*) FROM {table}") == 0
        finally:
            async with db.writer() as conn:
                await conn.execute(f"DROP TABLE {table}")
