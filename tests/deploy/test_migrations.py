"""Migrations as a rollout runs them: several runners at once (one per new pod), each waiting
for the others under the advisory lock, and API readiness across expand/contract migrations."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from dataclasses import replace

import asyncpg

from herald_api.settings import Settings
from herald_shared.migrate import MIGRATION_LOCK_KEY, head_revision, known_revisions, upgrade
from herald_shared.settings import DatabaseSettings, RelaySettings
from tests.support.apps import in_process_client
from tests.support.processes import ROOT
from tests.support.waiting import wait_until

RUN_SECONDS = 60.0


def start_migrate(dsn: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "herald_cli", "migrate"],
        cwd=ROOT,
        env={**os.environ, "HERALD_DB_DSN": dsn},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )


async def finish(process: subprocess.Popen[bytes]) -> tuple[int, str]:
    output, _ = await asyncio.to_thread(process.communicate, timeout=RUN_SECONDS)
    return process.returncode, output.decode(errors="replace")


async def revision_of(dsn: str) -> str | None:
    conn = await asyncpg.connect(dsn)
    try:
        if not await conn.fetchval("SELECT to_regclass('alembic_version') IS NOT NULL"):
            return None
        revision: str | None = await conn.fetchval("SELECT version_num FROM alembic_version")
        return revision
    finally:
        await conn.close()


async def test_a_runner_waits_while_another_holds_the_migration_lock(
    empty_database_dsn: str,
) -> None:
    holder = await asyncpg.connect(empty_database_dsn)
    try:
        await holder.execute("SELECT pg_advisory_lock($1)", MIGRATION_LOCK_KEY)
        runner = start_migrate(empty_database_dsn)

        async def runner_is_waiting() -> bool:
            if runner.poll() is not None:
                raise AssertionError(f"runner did not wait: {(await finish(runner))[1]}")
            waiting = await holder.fetchval(
                "SELECT count(*) FROM pg_locks l JOIN pg_database d ON d.oid = l.database "
                "WHERE l.locktype = 'advisory' AND NOT l.granted AND d.datname = current_database()"
            )
            return bool(waiting)

        await wait_until(runner_is_waiting, seconds=RUN_SECONDS, message="runner never waited")
        assert runner.poll() is None
        assert await revision_of(empty_database_dsn) is None
        await holder.execute("SELECT pg_advisory_unlock($1)", MIGRATION_LOCK_KEY)
        code, output = await finish(runner)
    finally:
        await holder.close()
    assert code == 0, output
    assert await revision_of(empty_database_dsn) == head_revision()


async def test_runners_started_together_all_succeed(empty_database_dsn: str) -> None:
    runners = [start_migrate(empty_database_dsn) for _ in range(3)]
    results = await asyncio.gather(*(finish(runner) for runner in runners))
    for code, output in results:
        assert code == 0, output
    assert await revision_of(empty_database_dsn) == head_revision()


READY = (200, {"database": "ok", "schema": "ok"})


async def set_revision(dsn: str, revision: str) -> None:
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute("UPDATE alembic_version SET version_num = $1", revision)
    finally:
        await conn.close()


async def readiness(settings: Settings, dsn: str) -> tuple[int, dict[str, str]]:
    settings = replace(
        settings,
        db=DatabaseSettings(dsn=dsn, pool_min_size=1, pool_max_size=2),
        relay=RelaySettings(enabled=False),
    )
    async with in_process_client(settings) as http:
        response = await http.get("/readyz")
    checks: dict[str, str] = response.json()["checks"]
    return response.status_code, checks


async def test_the_api_stays_ready_on_a_newer_schema_and_not_on_an_older_one(
    settings: Settings, empty_database_dsn: str
) -> None:
    await upgrade(empty_database_dsn)
    assert await readiness(settings, empty_database_dsn) == READY

    # The next release's expand migration has landed; this release's pods keep serving.
    newer = "9999_next_release"
    assert newer not in known_revisions()
    await set_revision(empty_database_dsn, newer)
    assert await readiness(settings, empty_database_dsn) == READY

    # A database behind this code lacks what it uses: not ready.
    older = next(iter(known_revisions() - {head_revision()}))
    await set_revision(empty_database_dsn, older)
    status, checks = await readiness(settings, empty_database_dsn)
    assert status == 503
    assert checks["schema"] == f"at {older}, older than {head_revision()}"
