"""Periodic jobs run once per period across replicas: never two runs within one period."""

from __future__ import annotations

import itertools
import time

import asyncpg

from tests.support.services import Processes
from tests.support.waiting import wait_until

PERIOD = 0.5
#: Between the start a run records and its row's timestamp: a lock and an upsert, a few ms.
TOLERANCE = 0.02


async def test_two_replicas_run_a_job_once_per_period(
    db_pool: asyncpg.Pool, processes: Processes, consumer_name: str
) -> None:
    started = time.monotonic()
    replicas = [
        await processes.start_consumer(consumer_name, job_period=PERIOD, consumers=n)
        for n in (1, 2)
    ]

    async def ran_for_three_seconds() -> bool:
        first = await db_pool.fetchval(
            "SELECT clock_timestamp() - min(at) FROM test_job_runs WHERE consumer = $1",
            consumer_name,
        )
        return first is not None and first.total_seconds() >= 3.0

    await wait_until(ran_for_three_seconds, seconds=20, message="the job did not run for 3 s")
    for replica in replicas:
        assert await replica.terminate() == 0, replica.log_tail()
    lifetime = time.monotonic() - started

    runs = await db_pool.fetch(
        "SELECT pid, at FROM test_job_runs WHERE consumer = $1 ORDER BY at", consumer_name
    )
    times = [row["at"] for row in runs]
    gaps = [(later - earlier).total_seconds() for earlier, later in itertools.pairwise(times)]
    assert gaps, runs
    assert min(gaps) >= PERIOD - TOLERANCE, gaps
    span = (times[-1] - times[0]).total_seconds()
    assert len(runs) <= span / PERIOD + 1
    assert len(runs) <= lifetime / PERIOD + 1
    # About one run per period: ticks are 50 ms, so a run is late by at most a tick or so.
    assert len(runs) >= span / (PERIOD + 0.2), gaps
    assert {row["pid"] for row in runs} <= {r.pid for r in replicas}
    job = await db_pool.fetchrow(
        "SELECT runs, last_result FROM periodic_jobs WHERE name = $1", f"test-job-{consumer_name}"
    )
    assert job is not None
    assert job["runs"] == len(runs)
    assert job["last_result"] == "recorded"
