"""Periodic jobs run once per period across any number of worker replicas.

Each tick, every replica tries each due job. It opens a transaction on a connection of its own
(the leader's) and takes a transaction advisory lock for the job there: a replica that does not
get it moves on. Holding the lock, it checks that the period has passed since the last start
recorded in ``periodic_jobs`` and records the new start (committed at once), then runs the job.
The lock keeps runs from overlapping; the recorded start keeps them once per period.

A job does its work in transactions of its own, each short (``JobRun.transaction``): a large
backlog becomes many small transactions, each committed, instead of one that grows until the
statement timeout rolls it all back. The leader's transaction stays open, holding nothing but the
lock, for as long as the run lasts; before each of the job's transactions the run checks, with a
round trip on it, that the lock is still held (and keeps the leader's session from looking idle
to ``idle_in_transaction_session_timeout``). If that connection was lost the lock is gone and the
run stops there, having committed what it did.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import timedelta

import asyncpg
import structlog
from asyncpg.pool import PoolConnectionProxy
from opentelemetry.instrumentation.utils import suppress_instrumentation

from herald_shared.db import UNAVAILABLE_ERRORS, Connection, borrow

_log = structlog.get_logger(__name__)
_JOB_FAILURES: tuple[type[BaseException], ...] = (*UNAVAILABLE_ERRORS, asyncpg.PostgresError)
_ACQUIRE_TIMEOUT_SECONDS = 5.0
_LOCK_CLASS = 0x4A42  # "JB": the first half of the advisory lock id of every job


class JobRun:
    """One run of a job, while this replica holds the job's lock."""

    def __init__(self, pool: asyncpg.Pool, leader: PoolConnectionProxy, stop: asyncio.Event):
        self._pool = pool
        self._leader = leader
        self._stop = stop

    @property
    def stopping(self) -> bool:
        """The process is stopping: a job that works in batches ends after the current one."""
        return self._stop.is_set()

    @contextlib.asynccontextmanager
    async def transaction(self) -> AsyncIterator[Connection]:
        """A connection in a transaction of its own, committed when the block ends; raises if
        the job's lock was lost."""
        await self._leader.execute("SELECT 1")
        async with borrow(self._pool, _ACQUIRE_TIMEOUT_SECONDS) as conn, conn.transaction():
            yield conn


@dataclass(frozen=True, slots=True)
class PeriodicJob:
    name: str
    every: timedelta
    #: Does the work in ``JobRun.transaction()``s; returns a short summary for the log and table.
    run: Callable[[JobRun], Awaitable[str]]


async def run_if_due(pool: asyncpg.Pool, job: PeriodicJob, stop: asyncio.Event) -> bool:
    """Run ``job`` if no other replica runs it now and its period has passed; True if it ran."""
    async with borrow(pool, _ACQUIRE_TIMEOUT_SECONDS) as leader, leader.transaction():
        locked = await leader.fetchval(
            "SELECT pg_try_advisory_xact_lock($1, hashtext($2))", _LOCK_CLASS, job.name
        )
        if not locked:
            return False
        # Its own transaction: the leader's must stay free of writes (and of an xid) while it
        # is held open.
        async with borrow(pool, _ACQUIRE_TIMEOUT_SECONDS) as conn:
            claimed = await conn.fetchval(
                """
            INSERT INTO periodic_jobs (name, last_started_at, runs) VALUES ($1, now(), 1)
            ON CONFLICT (name) DO UPDATE
                SET last_started_at = now(), runs = periodic_jobs.runs + 1
                WHERE periodic_jobs.last_started_at <= now() - $2::interval
            RETURNING true
            """,
                job.name,
                job.every,
            )
        if not claimed:
            return False
        result = await job.run(JobRun(pool, leader, stop))
        async with borrow(pool, _ACQUIRE_TIMEOUT_SECONDS) as conn:
            await conn.execute(
                "UPDATE periodic_jobs SET last_finished_at = clock_timestamp(), last_result = $2 "
                "WHERE name = $1",
                job.name,
                result,
            )
    _log.info("periodic job ran", job=job.name, result=result)
    return True


async def run_periodic_jobs(
    pool: asyncpg.Pool, jobs: Sequence[PeriodicJob], stop: asyncio.Event, *, tick: float = 1.0
) -> None:
    """Try every job each ``tick`` until ``stop``; a failing job is logged and tried next tick."""
    while not stop.is_set():
        for job in jobs:
            try:
                with suppress_instrumentation():  # polling would bury real traces
                    await run_if_due(pool, job, stop)
            except _JOB_FAILURES as exc:
                _log.warning("periodic job failed", job=job.name, error=repr(exc))
        try:
            async with asyncio.timeout(tick):
                await stop.wait()
        except TimeoutError:
            pass
