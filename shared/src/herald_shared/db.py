"""The asyncpg pools: one for the primary and, when configured, one for the read replica.

Every connection carries a deadline: a connect timeout, an acquire timeout, a client-side
command timeout and (unless running behind PgBouncer) server-side statement and
idle-in-transaction timeouts as a backstop.

Connections go back to the pool without a reset query: Herald keeps no session state (advisory
locks are transaction-scoped, no LISTEN, no session SET, no held cursors), so asyncpg's
``RESET ALL``/``UNLISTEN *``/``pg_advisory_unlock_all()`` would be one wasted round trip per
borrow. An open transaction is still rolled back on release.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import asyncpg
from asyncpg.pool import PoolAcquireContext, PoolConnectionProxy

from herald_shared.settings import DatabaseSettings

#: A connection as handlers and repositories receive it: direct, or borrowed from a pool.
Connection = asyncpg.Connection | PoolConnectionProxy


class StatelessConnection(asyncpg.Connection):
    """A pooled connection released without a reset query (see the module's docstring)."""

    def get_reset_query(self) -> str:
        return ""


#: Errors meaning "the database cannot be reached right now" rather than "the query is wrong",
#: broadly: any OSError or TimeoutError counts. Where the caller knows which call failed, the
#: narrower ``CONNECTION_ERRORS`` and ``acquire`` say more.
UNAVAILABLE_ERRORS: tuple[type[BaseException], ...] = (
    OSError,
    TimeoutError,
    asyncpg.exceptions.CannotConnectNowError,
    asyncpg.exceptions.ConnectionDoesNotExistError,
    asyncpg.exceptions.TooManyConnectionsError,
    asyncpg.exceptions.AdminShutdownError,
    asyncpg.exceptions.CrashShutdownError,
)


#: What failed is PostgreSQL itself or the connection to it — not a statement, whatever it was:
#: connection errors (SQLSTATE class 08, a connection closed under a query), a server shutting
#: down or starting, or refusing more connections.
CONNECTION_ERRORS: tuple[type[BaseException], ...] = (
    asyncpg.exceptions.PostgresConnectionError,
    asyncpg.exceptions.CannotConnectNowError,
    asyncpg.exceptions.AdminShutdownError,
    asyncpg.exceptions.CrashShutdownError,
    asyncpg.exceptions.TooManyConnectionsError,
)


#: Failing to make or keep a connection: the socket's errors and PostgreSQL's connection-level ones.
CONNECTING_ERRORS: tuple[type[BaseException], ...] = (OSError, *CONNECTION_ERRORS)


class DatabaseUnavailableError(ConnectionError):
    """PostgreSQL could not be reached: connecting failed, timed out, or the server went away
    under one of our own statements."""


class PoolExhaustedError(TimeoutError):
    """Every pooled connection stayed checked out for the whole acquire timeout: this process
    is overloaded, PostgreSQL is not known to be unwell."""


@contextlib.asynccontextmanager
async def acquire(pool: asyncpg.Pool, timeout: float) -> AsyncIterator[PoolConnectionProxy]:  # noqa: ASYNC109 - passed to the pool
    """A connection from ``pool`` for the block, failing with what went wrong: a
    ``PoolExhaustedError`` when all of the pool's connections were busy throughout, a
    ``DatabaseUnavailableError`` when a connection could not be made."""
    try:
        conn: PoolConnectionProxy = await pool.acquire(timeout=timeout)
    except TimeoutError as exc:
        if pool.get_size() >= pool.get_max_size() and pool.get_idle_size() == 0:
            raise PoolExhaustedError(f"no connection free within {timeout} s") from exc
        raise DatabaseUnavailableError(f"no connection made within {timeout} s") from exc
    except CONNECTING_ERRORS as exc:
        raise DatabaseUnavailableError(f"cannot connect: {exc!r}") from exc
    try:
        yield conn
    finally:
        await pool.release(conn)


@dataclass(frozen=True, slots=True)
class Database:
    """The pools a process uses. ``replica`` is the primary when no replica is configured."""

    primary: asyncpg.Pool
    replica: asyncpg.Pool
    acquire_timeout: float

    def writer(self) -> PoolAcquireContext:
        """A primary connection, waiting at most the acquire timeout."""
        return self.primary.acquire(timeout=self.acquire_timeout)

    def reader(self) -> PoolAcquireContext:
        """A connection for reads that tolerate replica lag."""
        return self.replica.acquire(timeout=self.acquire_timeout)


def pool_options(settings: DatabaseSettings, application_name: str) -> dict[str, Any]:
    """Keyword arguments for ``asyncpg.create_pool`` that apply the settings' limits."""
    options: dict[str, Any] = {
        "min_size": settings.pool_min_size,
        "max_size": settings.pool_max_size,
        "timeout": settings.connect_timeout_seconds,
        "command_timeout": settings.command_timeout_seconds,
        "max_inactive_connection_lifetime": settings.max_inactive_connection_lifetime_seconds,
        "connection_class": StatelessConnection,
    }
    if settings.pgbouncer:
        # Transaction pooling hands each transaction to any server connection: a named
        # prepared statement would not exist there, and startup parameters are refused.
        options["statement_cache_size"] = 0
    else:
        options["server_settings"] = {
            "application_name": application_name,
            "statement_timeout": str(settings.statement_timeout_ms),
            "idle_in_transaction_session_timeout": str(settings.idle_in_transaction_timeout_ms),
        }
    return options


@contextlib.asynccontextmanager
async def create_database(
    settings: DatabaseSettings, application_name: str
) -> AsyncIterator[Database]:
    """Open the pools for the lifetime of the block and close them after it."""
    options = pool_options(settings, application_name)
    primary = await asyncpg.create_pool(settings.dsn, **options)
    try:
        if settings.replica_dsn:
            replica = await asyncpg.create_pool(settings.replica_dsn, **options)
        else:
            replica = primary
        try:
            yield Database(primary, replica, settings.acquire_timeout_seconds)
        finally:
            if replica is not primary:
                await replica.close()
    finally:
        await primary.close()
