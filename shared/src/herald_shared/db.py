"""The asyncpg pools: one for the primary and, when configured, one for the read replica.

Every connection carries a deadline: a connect timeout, an acquire timeout, a client-side
command timeout and (unless running behind PgBouncer) server-side statement, lock and
idle-in-transaction timeouts. The lock timeout bounds what the others do not: a write waiting
for a row another transaction holds (a consumer's transaction, slow under a slow network) would
otherwise wait up to the whole statement timeout.

Connections go back to the pool without a reset query: Herald keeps no session state (advisory
locks are transaction-scoped, no LISTEN, no session SET, no held cursors), so asyncpg's
``RESET ALL``/``UNLISTEN *``/``pg_advisory_unlock_all()`` would be one wasted round trip per
borrow. An open transaction is still rolled back on release. The reset query also served as a
check that the connection still works: without it, a connection whose protocol fell out of step
with the server (a query interrupted while the server went away) would go back to the pool and
fail the next borrower. ``borrow`` therefore discards a connection that fails that way.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import asyncpg
from asyncpg.pool import PoolConnectionProxy

from herald_shared.settings import DatabaseSettings

#: A connection as handlers and repositories receive it: direct, or borrowed from a pool.
Connection = asyncpg.Connection | PoolConnectionProxy


class StatelessConnection(asyncpg.Connection):
    """A pooled connection released without a reset query (see the module's docstring)."""

    def get_reset_query(self) -> str:
        return ""


class ConnectionLostError(ConnectionError):
    """The connection broke under an operation (closed, or its protocol out of step with the
    server). It was discarded; the operation may be tried again on another connection."""


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


@dataclass(frozen=True, slots=True)
class Database:
    """The pools a process uses. ``replica`` is the primary when no replica is configured."""

    primary: asyncpg.Pool
    replica: asyncpg.Pool
    acquire_timeout: float

    def writer(self) -> contextlib.AbstractAsyncContextManager[PoolConnectionProxy]:
        """A primary connection, waiting at most the acquire timeout."""
        return borrow(self.primary, self.acquire_timeout)

    def reader(self) -> contextlib.AbstractAsyncContextManager[PoolConnectionProxy]:
        """A connection for reads that tolerate replica lag."""
        return borrow(self.replica, self.acquire_timeout)


def _is_closed(conn: PoolConnectionProxy) -> bool:
    try:
        return conn.is_closed()
    except asyncpg.exceptions.InterfaceError:  # already given back to the pool
        return True


@asynccontextmanager
async def borrow(
    pool: asyncpg.Pool,
    timeout: float,  # noqa: ASYNC109 - the pool's own acquire deadline
) -> AsyncIterator[PoolConnectionProxy]:
    """A pooled connection for the block, waiting at most ``timeout`` for one.

    A connection the block found broken is terminated instead of going back to the pool, and
    the error is raised as ``ConnectionLostError`` (a connection-level failure, like any
    ``OSError``). Other errors, programming errors included, pass through unchanged.
    """
    async with pool.acquire(timeout=timeout) as conn:
        try:
            yield conn
        except (asyncpg.exceptions.InternalClientError, asyncpg.exceptions.InterfaceError) as exc:
            broken = isinstance(exc, asyncpg.exceptions.InternalClientError) or _is_closed(conn)
            if not broken:
                raise
            with contextlib.suppress(asyncpg.exceptions.InterfaceError):
                conn.terminate()
            raise ConnectionLostError(f"the database connection broke: {exc}") from exc


#: What failed is PostgreSQL itself or the connection to it — not a statement, whatever it was:
#: connection errors (SQLSTATE class 08, a connection closed under a query, one ``borrow`` found
#: broken), a server shutting down or starting, or refusing more connections.
CONNECTION_ERRORS: tuple[type[BaseException], ...] = (
    ConnectionLostError,
    asyncpg.exceptions.PostgresConnectionError,
    asyncpg.exceptions.CannotConnectNowError,
    asyncpg.exceptions.AdminShutdownError,
    asyncpg.exceptions.CrashShutdownError,
    asyncpg.exceptions.TooManyConnectionsError,
)

#: Failing to make or keep a connection: the socket's errors and PostgreSQL's connection-level
#: ones.
CONNECTING_ERRORS: tuple[type[BaseException], ...] = (OSError, *CONNECTION_ERRORS)


class DatabaseUnavailableError(ConnectionError):
    """PostgreSQL could not be reached: connecting failed, timed out, or the server went away
    under one of our own statements."""


class PoolExhaustedError(TimeoutError):
    """Every pooled connection stayed checked out for the whole acquire timeout: this process
    is overloaded, PostgreSQL is not known to be unwell."""


@asynccontextmanager
async def acquire(
    pool: asyncpg.Pool,
    timeout: float,  # noqa: ASYNC109 - the pool's own acquire deadline
) -> AsyncIterator[PoolConnectionProxy]:
    """``borrow``, failing with what went wrong when no connection could be had: a
    ``PoolExhaustedError`` when all of the pool's connections were busy throughout, a
    ``DatabaseUnavailableError`` when a connection could not be made."""
    async with contextlib.AsyncExitStack() as stack:
        try:
            conn = await stack.enter_async_context(borrow(pool, timeout))
        except TimeoutError as exc:
            if pool.get_size() >= pool.get_max_size() and pool.get_idle_size() == 0:
                raise PoolExhaustedError(f"no connection free within {timeout} s") from exc
            raise DatabaseUnavailableError(f"no connection made within {timeout} s") from exc
        except CONNECTING_ERRORS as exc:
            raise DatabaseUnavailableError(f"cannot connect: {exc!r}") from exc
        yield conn


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
            "lock_timeout": str(settings.lock_timeout_ms),
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
