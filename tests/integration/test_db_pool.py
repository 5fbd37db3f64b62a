"""Herald's connection pools: borrowed connections return without a reset round trip, a
transaction left open is still rolled back, and a failed acquire says whether the pool was busy
or PostgreSQL could not be reached."""

from __future__ import annotations

import asyncio
import uuid

import asyncpg
import pytest

from herald_shared.db import DatabaseUnavailableError, PoolExhaustedError, acquire, create_database
from herald_shared.settings import DatabaseSettings
from tests.support.network import free_port, with_port


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


async def test_an_acquire_that_waited_on_busy_connections_is_an_exhausted_pool(
    database_dsn: str,
) -> None:
    async with create_database(_settings(database_dsn), "herald-test") as db, db.writer():
        with pytest.raises(PoolExhaustedError):
            async with acquire(db.primary, 0.1):
                pytest.fail("a second connection from a pool of one")


async def test_an_acquire_that_cannot_connect_is_postgresql_unavailable(database_dsn: str) -> None:
    refusing = with_port(database_dsn, free_port())
    pool = await asyncpg.create_pool(refusing, min_size=0, max_size=2)
    try:
        with pytest.raises(DatabaseUnavailableError):
            async with acquire(pool, 1.0):
                pytest.fail("connected to nothing")
    finally:
        await pool.close()


async def test_an_acquire_that_times_out_connecting_is_postgresql_unavailable(
    database_dsn: str,
) -> None:
    """A server that accepts connections and never answers (hung, or blackholed)."""
    accepted: list[asyncio.StreamWriter] = []

    async def never_answer(_: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        accepted.append(writer)

    silent = await asyncio.start_server(never_answer, "127.0.0.1", 0)
    port = silent.sockets[0].getsockname()[1]
    pool = await asyncpg.create_pool(with_port(database_dsn, port), min_size=0, max_size=2)
    try:
        with pytest.raises(DatabaseUnavailableError):
            async with acquire(pool, 0.2):
                pytest.fail("connected to a silent server")
    finally:
        await pool.close()
        for writer in accepted:
            writer.close()
        silent.close()
        await silent.wait_closed()
