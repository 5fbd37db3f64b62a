"""A real consumer process for tests: the shared runtime with a recording handler.

Run as ``python -m tests.support.consumer_app``. Configured by environment:

- ``HERALD_TEST_CONSUMER``: the consumer (queue) name;
- ``HERALD_TEST_BEHAVIOUR``: ``ok``, ``slow:SECONDS``, ``slow-on:TITLE:SECONDS`` (only posts of
  that title are slow), ``fail-once-on:TITLE`` (the first try of posts of that title raises
  a transient error), ``fail-transient:N`` (the first N tries
  of each event raise a transient error), ``fail-permanent``, ``fail-until-fixed`` (a
  permanent error until a row for the consumer exists in ``test_fixed``), ``fail-oserror``
  (the handler's own ``OSError``, every try), ``slow-query:SECONDS`` (a query of that long
  in the inbox transaction, every try) or ``crash-on:TITLE`` (the process dies, as an OOM kill
  would, handling a post of that title; other events are handled);
- ``HERALD_TEST_JOB_PERIOD``: when set, also run a periodic job with this period (seconds)
  that records each run in ``test_job_runs``;
- ``HERALD_TRACE_DIR``: when set, spans are written there as the services write theirs
  (otherwise the process is not traced);
- ``HERALD_CONSUMER_HEALTH_PORT``: where ``/livez``, ``/readyz`` and ``/metrics`` listen (0: any
  free port, logged);
- the usual ``HERALD_DB_*``, ``HERALD_AMQP_*`` and ``HERALD_CONSUMER_*`` settings.

Every try is recorded in ``test_attempts`` (outside the handler's transaction, so failed tries
are kept); every effect in ``test_effects`` inside it, so a duplicate effect would show. Both
record the id of the handler's transaction (``xid``): events of one inbox batch share it.
"""

from __future__ import annotations

import asyncio
import os
from datetime import timedelta

import asyncpg
import uvloop

from herald_shared.background import Job
from herald_shared.db import Connection, create_database
from herald_shared.events import PostCreated
from herald_shared.logs import configure_logging
from herald_shared.messaging.consumer import Consumer
from herald_shared.messaging.handlers import Event, HandlerTable, PermanentError, TransientError
from herald_shared.messaging.options import health_address
from herald_shared.messaging.service import serve
from herald_shared.settings import (
    AmqpSettings,
    ConsumerSettings,
    DatabaseSettings,
    LogSettings,
    TelemetrySettings,
)
from herald_shared.telemetry import configure_tracing
from herald_worker.jobs.periodic import JobRun, PeriodicJob, run_periodic_jobs

#: The exit status of a process that ``crash-on`` killed.
CRASH_STATUS = 70

SCHEMA = """
CREATE TABLE IF NOT EXISTS test_attempts (
    consumer text NOT NULL, event_id uuid NOT NULL, attempt int NOT NULL, pid int NOT NULL,
    at timestamptz NOT NULL DEFAULT clock_timestamp(), xid bigint);
CREATE TABLE IF NOT EXISTS test_effects (
    consumer text NOT NULL, event_id uuid NOT NULL, pid int NOT NULL,
    at timestamptz NOT NULL DEFAULT clock_timestamp(),
    xid bigint NOT NULL DEFAULT txid_current());
CREATE TABLE IF NOT EXISTS test_fixed (consumer text PRIMARY KEY);
CREATE TABLE IF NOT EXISTS test_job_runs (
    consumer text NOT NULL, pid int NOT NULL, at timestamptz NOT NULL DEFAULT clock_timestamp());
"""


async def ensure_schema(dsn: str) -> None:
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute("SELECT pg_advisory_lock(4242)")
        await conn.execute(SCHEMA)
        await conn.execute("SELECT pg_advisory_unlock(4242)")
    finally:
        await conn.close()


async def record(
    event: Event[PostCreated], tx: Connection, *, name: str, behaviour: str, pool: asyncpg.Pool
) -> None:
    """Record the try, behave as told, then record the effect in the inbox transaction."""
    kind, _, argument = behaviour.partition(":")
    xid = await tx.fetchval("SELECT txid_current()")
    async with pool.acquire() as conn:
        tries = await _record_attempt(conn, name, event, xid)
        fixed = await conn.fetchval("SELECT true FROM test_fixed WHERE consumer = $1", name)
    if kind == "slow":
        await asyncio.sleep(float(argument))
    elif kind == "slow-on" and event.payload.title == argument.partition(":")[0]:
        await asyncio.sleep(float(argument.partition(":")[2]))
    elif kind == "fail-once-on" and event.payload.title == argument and tries == 1:
        raise TransientError("first try of this post fails")
    elif kind == "fail-transient" and tries <= int(argument):
        raise TransientError(f"transient failure {tries}")
    elif kind == "fail-permanent" or (kind == "fail-until-fixed" and not fixed):
        raise PermanentError("this handler always fails")
    elif kind == "crash-on" and event.payload.title == argument:
        os._exit(CRASH_STATUS)
    elif kind == "fail-oserror":
        raise OSError(28, "No space left on device")
    elif kind == "slow-query":
        await tx.execute("SELECT pg_sleep($1)", float(argument))
    await tx.execute(
        "INSERT INTO test_effects (consumer, event_id, pid) VALUES ($1, $2, $3)",
        name,
        event.id,
        os.getpid(),
    )


async def _record_attempt(conn: Connection, name: str, event: Event[PostCreated], xid: int) -> int:
    await conn.execute(
        "INSERT INTO test_attempts (consumer, event_id, attempt, pid, xid) "
        "VALUES ($1, $2, $3, $4, $5)",
        name,
        event.id,
        event.attempt,
        os.getpid(),
        xid,
    )
    tries: int = await conn.fetchval(
        "SELECT count(*) FROM test_attempts WHERE consumer = $1 AND event_id = $2", name, event.id
    )
    return tries


async def main() -> None:
    name = os.environ["HERALD_TEST_CONSUMER"]
    behaviour = os.environ.get("HERALD_TEST_BEHAVIOUR", "ok")
    consumer_settings = ConsumerSettings()
    db_settings = DatabaseSettings()
    # Each handler in flight holds the runtime's inbox connection and takes a second one to
    # record its try (plus one for the periodic job): a smaller pool starves them all.
    needed = 2 * consumer_settings.concurrency + 1
    if db_settings.pool_max_size < needed:
        db_settings = db_settings.model_copy(update={"pool_max_size": needed})
    await ensure_schema(db_settings.dsn)
    async with create_database(db_settings, application_name=f"test-{name}") as db:
        handlers = HandlerTable()
        handlers.inbox(PostCreated, record, name=name, behaviour=behaviour, pool=db.primary)
        consumer = Consumer(
            name,
            handlers,
            db=db,
            amqp=AmqpSettings(),
            settings=consumer_settings,
        )
        background: list[Job] = []
        period = os.environ.get("HERALD_TEST_JOB_PERIOD")
        if period:

            async def record_run(run: JobRun) -> str:
                async with run.transaction() as conn:
                    await conn.execute(
                        "INSERT INTO test_job_runs (consumer, pid) VALUES ($1, $2)",
                        name,
                        os.getpid(),
                    )
                return "recorded"

            job = PeriodicJob(f"test-job-{name}", timedelta(seconds=float(period)), record_run)
            background.append(lambda stop: run_periodic_jobs(db.primary, [job], stop, tick=0.05))
        await serve(consumer, background, health=health_address(consumer_settings, 0))


if __name__ == "__main__":
    configure_logging("herald-test-consumer", LogSettings())
    if "HERALD_TRACE_DIR" in os.environ:  # never into the default directory of the source tree
        configure_tracing("herald-test-consumer", TelemetrySettings())
    uvloop.run(main())
