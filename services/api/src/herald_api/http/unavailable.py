"""Database failures as a client sees them: ``503`` problem+json with ``Retry-After``, never 500.

A request that fails because PostgreSQL is unreachable, overloaded or slow says nothing about the
request: the client may send it again shortly. That covers more than the connection-level errors
``herald_shared.db`` names — a statement cut off by ``statement_timeout`` (or cancelled by an
operator), a lock wait past ``lock_timeout``, a serialization failure or deadlock, the server out
of connections, memory or disk, and asyncpg's own client-side state (a pool closing under a
request, a connection found in a bad state). A malformed statement stays a 500: that is a bug.
"""

from __future__ import annotations

import asyncpg
import structlog
from fastapi import FastAPI, Request
from starlette.responses import Response

from herald_api.http.problems import Problem, problem_response
from herald_shared.db import UNAVAILABLE_ERRORS

_log = structlog.get_logger(__name__)

#: Seconds a client is asked to wait before trying again.
RETRY_AFTER_SECONDS = 2

#: Every error that means "the database cannot serve this now" rather than "this is wrong".
DATABASE_UNAVAILABLE: tuple[type[Exception], ...] = (
    *(error for error in UNAVAILABLE_ERRORS if issubclass(error, Exception)),
    asyncpg.exceptions.PostgresConnectionError,  # SQLSTATE class 08
    asyncpg.exceptions.InsufficientResourcesError,  # 53: connections, memory, disk
    asyncpg.exceptions.OperatorInterventionError,  # 57: statement timeout, cancel, shutdown
    asyncpg.exceptions.TransactionRollbackError,  # 40: serialization failure, deadlock
    asyncpg.exceptions.LockNotAvailableError,  # 55P03: lock_timeout
    asyncpg.exceptions.InterfaceError,  # a pool closing, a connection in a bad state
    asyncpg.exceptions.InternalClientError,
)


def unavailable_problem() -> Problem:
    return Problem(
        503,
        "A backing service is unavailable or overloaded; try again shortly.",
        headers={"Retry-After": str(RETRY_AFTER_SECONDS)},
    )


async def _on_unavailable(request: Request, exc: Exception) -> Response:
    _log.warning("database unavailable", error_type=type(exc).__name__, error=str(exc))
    return problem_response(request, unavailable_problem())


def install_unavailable_handlers(app: FastAPI) -> None:
    """Answer every ``DATABASE_UNAVAILABLE`` error with 503 (handlers match by class, so each
    subclass — ``QueryCanceledError`` under class 57, say — is covered)."""
    for error in DATABASE_UNAVAILABLE:
        app.add_exception_handler(error, _on_unavailable)
