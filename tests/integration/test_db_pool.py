"""Herald's connection pools: borrowed connections return without a reset round trip, a
transaction left open is still rolled back, a broken connection is discarded, and a failed
acquire says whether the pool was busy or PostgreSQL could not be reached."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable

import asyncpg
import pytest

from herald_shared.db import (
    Connection,
    ConnectionLostError,
    Database,
    DatabaseUnavailableError,
    PoolExhaustedError,
    acquire,
    create_database,
)
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


async def _borrow_and_run(db: Database, work: Callable[[Connection], Awaitable[object]]) -> int:
    """Run ``work`` on a borrowed connection; the backend pid it ran on, raised through
    ``db.writer()`` if ``work`` raises (the error carries it as ``pid``)."""
    async with db.writer() as conn:
        pid = conn.get_server_pid()
        try:
            await work(conn)
        except Exception as exc:
            exc.add_note(f"pid={pid}")
            raise
    return pid


def _pid_of(exc: BaseException) -> int:
    return int(next(n for n in exc.__notes__ if n.startswith("pid="))[4:])


async def test_a_connection_out_of_step_is_discarded_not_reused(database_dsn: str) -> None:
    """A connection whose protocol fell out of step with the server must not go back to the
    pool: with no reset query on release, nothing else would notice before the next borrower."""

    async def out_of_step(conn: Connection) -> None:
        # What asyncpg raises when a connection is used while an earlier operation on it is
        # still unfinished (as after a query interrupted by a server going away).
        raise asyncpg.exceptions.InternalClientError(
            "cannot switch to state 12; another operation (2) is in progress"
        )

    async with create_database(_settings(database_dsn), "herald-test") as db:
        with pytest.raises(ConnectionLostError) as raised:
            await _borrow_and_run(db, out_of_step)
        assert isinstance(raised.value.__cause__, asyncpg.exceptions.InternalClientError)
        async with db.writer() as conn:
            assert conn.get_server_pid() != _pid_of(raised.value.__cause__)
            assert await conn.fetchval("SELECT 1") == 1


async def test_a_programming_error_is_not_taken_for_a_broken_connection(
    database_dsn: str,
) -> None:
    async def one_argument_too_many(conn: Connection) -> object:
        return await conn.fetchval("SELECT $1::int", 1, 2)

    async with create_database(_settings(database_dsn), "herald-test") as db:
        with pytest.raises(asyncpg.exceptions.InterfaceError) as raised:
            await _borrow_and_run(db, one_argument_too_many)
        assert not isinstance(raised.value, ConnectionLostError)
        async with db.writer() as conn:
            assert conn.get_server_pid() == _pid_of(raised.value)


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
