"""Periodic jobs run once per period across any number of worker replicas.

Each tick, every replica tries each due job. Inside one transaction it takes a transaction
advisory lock for the job (a replica that does not get it moves on), re-checks that the period
has passed since the last start recorded in ``periodic_jobs``, records the new start and runs the
job. The lock keeps runs from overlapping; the recorded start keeps them once per period.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import timedelta

import asyncpg
import structlog
from opentelemetry.instrumentation.utils import suppress_instrumentation

from herald_shared.db import UNAVAILABLE_ERRORS, Connection, borrow

_log = structlog.get_logger(__name__)
_JOB_FAILURES: tuple[type[BaseException], ...] = (*UNAVAILABLE_ERRORS, asyncpg.PostgresError)
_ACQUIRE_TIMEOUT_SECONDS = 5.0
_LOCK_CLASS = 0x4A42  # "JB": the first half of the advisory lock id of every job


@dataclass(frozen=True, slots=True)
class PeriodicJob:
    name: str
    every: timedelta
    #: Runs in the claiming transaction; returns a short summary for the log and the table.
    run: Callable[[Connection], Awaitable[str]]


async def run_if_due(pool: asyncpg.Pool, job: PeriodicJob) -> bool:
    """Run ``job`` if no other replica runs it now and its period has passed; True if it ran."""
    async with borrow(pool, _ACQUIRE_TIMEOUT_SECONDS) as conn, conn.transaction():
        locked = await conn.fetchval(
            "SELECT pg_try_advisory_xact_lock($1, hashtext($2))", _LOCK_CLASS, job.name
        )
        if not locked:
            return False
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
        result = await job.run(conn)
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
                    await run_if_due(pool, job)
            except _JOB_FAILURES as exc:
                _log.warning("periodic job failed", job=job.name, error=repr(exc))
        try:
            async with asyncio.timeout(tick):
                await stop.wait()
        except TimeoutError:
            pass
