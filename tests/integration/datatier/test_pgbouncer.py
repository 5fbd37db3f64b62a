"""Herald through a real PgBouncer in transaction mode, configured as the manifests configure it.

PgBouncer (Debian's package) runs on a private port with the ``[pgbouncer]`` settings of the
manifests' ``pgbouncer-config``; its aliases (``herald``, ``herald_replica``) point at this run's
database on the machine's PostgreSQL. Only what makes the instance private differs: its address,
pid file and trust authentication against an auth file of its own (the test server trusts
loopback; the manifests use SCRAM). Herald's database settings are exactly the manifests'
``HERALD_DB_*``, PgBouncer's address mapped to the private one.

Through it: the API's writes and reads, idempotency keys, the outbox relay, an inbox consumer,
the worker's handlers and periodic jobs' advisory locks. Migrations do not go through it
(decision 0020): the last test shows why, and that the manifests point them at the primary
itself.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import uuid
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any
from urllib.parse import urlsplit

import asyncpg
import httpx
import pytest

from herald_api.settings import Settings
from herald_shared.db import create_database, pool_options
from herald_shared.migrate import MIGRATION_LOCK_KEY, upgrade
from herald_shared.settings import DatabaseSettings
from herald_worker.jobs.periodic import JobRun, PeriodicJob, run_if_due
from tests.conftest import TEST_CONSUMERS, ApiKey, MakeKey
from tests.deploy.rendered import container, one
from tests.integration.datatier.manifests import (
    OVERLAY,
    PGBOUNCER_ADDRESS,
    alias_fields,
    database_environment,
    database_settings,
    pgbouncer_config,
    rewrite_alias,
)
from tests.support.apps import running_api
from tests.support.servers import PrivatePgBouncer
from tests.support.services import Processes
from tests.support.waiting import wait_until

#: The manifests' PostgreSQL servers; both are this machine's in this test (no replica here).
SERVER_ADDRESSES = ("postgres-primary:5432", "postgres-replica:5432")
#: How many requests run at once: more than one server connection is in use, so a statement
#: prepared on one and executed on another would fail.
CONCURRENCY = 24


@pytest.fixture(scope="module")
async def bouncer(database_dsn: str) -> AsyncIterator[PrivatePgBouncer]:
    """PgBouncer with the manifests' ini, its aliases pointing at the run's database."""
    server = urlsplit(database_dsn)
    assert server.hostname is not None
    assert server.port is not None
    config = pgbouncer_config()
    databases = {
        alias: rewrite_alias(
            connection, host=server.hostname, port=server.port, dbname=server.path.lstrip("/")
        )
        for alias, connection in config.databases.items()
    }
    bouncer = await PrivatePgBouncer.create(
        server.hostname,
        server.port,
        users=("postgres", "herald", server.username or "herald"),
        databases=databases,
        settings=config.settings,
    )
    try:
        yield bouncer
    finally:
        await bouncer.close()


@pytest.fixture(scope="module")
def manifest_env(bouncer: PrivatePgBouncer, database_dsn: str) -> dict[str, str]:
    """The manifests' database variables, PgBouncer and PostgreSQL at this test's addresses."""
    server = urlsplit(database_dsn)
    addresses = {PGBOUNCER_ADDRESS: f"127.0.0.1:{bouncer.port}"}
    addresses |= {name: f"{server.hostname}:{server.port}" for name in SERVER_ADDRESSES}
    return database_environment(addresses)


@pytest.fixture(scope="module")
def db_settings(manifest_env: dict[str, str]) -> DatabaseSettings:
    return database_settings(manifest_env)


def _transactions(stats: list[dict[str, str]], database: str) -> int:
    return sum(int(row["total_xact_count"]) for row in stats if row["database"] == database)


async def test_the_manifests_pool_transactions_without_prepared_statements(
    bouncer: PrivatePgBouncer, db_settings: DatabaseSettings
) -> None:
    config = {row["key"]: row["value"] for row in await bouncer.show("config")}
    assert config["pool_mode"] == "transaction"
    # Debian 12's PgBouncer (1.18) has no max_prepared_statements: Herald must not rely on it.
    assert "max_prepared_statements" not in pgbouncer_config().settings
    assert db_settings.pgbouncer
    assert f":{bouncer.port}/" in db_settings.dsn
    assert db_settings.replica_dsn is not None
    assert f":{bouncer.port}/" in db_settings.replica_dsn
    options = pool_options(db_settings, "herald-test")
    assert options["statement_cache_size"] == 0
    # Startup parameters other than the ones the ini ignores would be refused.
    assert "server_settings" not in options


async def _create(http: httpx.AsyncClient, key: ApiKey, n: int, idem: str) -> httpx.Response:
    return await http.post(
        "/v1/posts",
        json={"title": f"pooled {n}", "body": f"through pgbouncer {n}", "status": "published"},
        headers={**key.headers, "Idempotency-Key": idem},
    )


async def test_writes_reads_replays_relay_and_inbox_through_pgbouncer(
    bouncer: PrivatePgBouncer,
    db_settings: DatabaseSettings,
    manifest_env: dict[str, str],
    settings: Settings,
    make_key: MakeKey,
    db_pool: asyncpg.Pool,
    processes: Processes,
) -> None:
    """Concurrent creates (with idempotency keys), reads, lists and replays through the pool;
    the API's relay publishes every event; with their databases behind PgBouncer too, the real
    worker handles each (its handlers are idempotent by construction) and a consumer records
    each once in its inbox."""
    worker_env = {name: value for name, value in manifest_env.items() if name != "MIGRATE_DSN"}
    worker = await processes.start_service("herald_worker", "worker", worker_env)
    # An inbox consumer (the test consumer's recording handler) with the same database settings.
    recorder_name = f"t{uuid.uuid4().hex[:8]}"
    TEST_CONSUMERS.add(recorder_name)
    recorder = await processes.start_consumer(recorder_name, env=worker_env)
    before = _transactions(await bouncer.show("stats"), "herald")
    key = await make_key()
    api_settings = dataclasses.replace(settings, db=db_settings)
    async with running_api(api_settings) as api:
        prefix = uuid.uuid4().hex[:8]
        created = await asyncio.gather(
            *(_create(api.http, key, n, f"{prefix}-{n}") for n in range(CONCURRENCY))
        )
        assert [r.status_code for r in created] == [201] * CONCURRENCY, created[0].text
        ids = [r.json()["id"] for r in created]

        replays = await asyncio.gather(
            *(_create(api.http, key, n, f"{prefix}-{n}") for n in range(CONCURRENCY))
        )
        assert [r.json()["id"] for r in replays] == ids
        assert {r.headers.get("Idempotent-Replayed") for r in replays} == {"true"}

        reads = await asyncio.gather(
            *(api.http.get(f"/v1/posts/{post_id}", headers=key.headers) for post_id in ids),
            *(
                api.http.get(f"/v1/posts?author={key.account_id}&limit=100", headers=key.headers)
                for _ in range(4)
            ),
        )
        assert [r.status_code for r in reads] == [200] * len(reads), reads[0].text
        assert [r.json()["id"] for r in reads[: len(ids)]] == ids
        assert {item["id"] for item in reads[-1].json()["items"]} == set(ids)

        async def published() -> bool:
            pending: int = await db_pool.fetchval(
                "SELECT count(*) FROM outbox WHERE aggregate_id = ANY($1::uuid[]) "
                "AND published_at IS NULL",
                ids,
            )
            return pending == 0

        await wait_until(published, seconds=20, message="the relay did not publish every event")

        async def handled() -> bool:
            worker.check_running()
            done: int = await db_pool.fetchval(
                "SELECT count(*) FROM posts WHERE id = ANY($1::uuid[]) AND enriched_at IS NOT NULL",
                ids,
            )
            return done == len(ids)

        await wait_until(handled, seconds=30, message="the worker did not enrich every post")
        events = await db_pool.fetch(
            "SELECT event_id FROM outbox WHERE aggregate_id = ANY($1::uuid[]) "
            "AND event_type = 'post.created'",
            ids,
        )
        event_ids = [row["event_id"] for row in events]

        async def in_inbox() -> bool:
            recorder.check_running()
            done: int = await db_pool.fetchval(
                "SELECT count(*) FROM processed_events "
                "WHERE consumer = $1 AND event_id = ANY($2::uuid[])",
                recorder_name,
                event_ids,
            )
            return done == len(ids)

        await wait_until(in_inbox, seconds=30, message="the inbox consumer missed events")
        effects = await db_pool.fetch(
            "SELECT event_id, count(*) AS n FROM test_effects "
            "WHERE consumer = $1 AND event_id = ANY($2::uuid[]) GROUP BY event_id",
            recorder_name,
            event_ids,
        )
        assert {row["event_id"]: row["n"] for row in effects} == dict.fromkeys(event_ids, 1)
        enriched = await api.http.get(f"/v1/posts/{ids[0]}", headers=key.headers)
        assert enriched.json()["word_count"] == 3
    assert await worker.terminate() == 0, worker.log_tail()
    assert await recorder.terminate() == 0, recorder.log_tail()
    assert _transactions(await bouncer.show("stats"), "herald") > before
    errors = [line for line in worker.log_lines() if line.get("level") == "error"]
    assert not errors, errors


async def _advisory_locks(database_dsn: str) -> int:
    """Advisory locks granted in the database right now, whoever holds them."""
    conn = await asyncpg.connect(database_dsn)
    try:
        held: int = await conn.fetchval(
            "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted "
            "AND database = (SELECT oid FROM pg_database WHERE datname = current_database())"
        )
    finally:
        await conn.close()
    return held


async def _no_advisory_locks(database_dsn: str) -> bool:
    return await _advisory_locks(database_dsn) == 0


async def test_periodic_jobs_hold_their_lock_through_transaction_pooling(
    db_settings: DatabaseSettings, database_dsn: str
) -> None:
    """A job's transaction advisory lock keeps every other replica out for the whole run, and
    is free again once the run ends, though each replica's transactions reach PostgreSQL on
    whichever server connection PgBouncer hands out."""
    name = f"pooled-job-{uuid.uuid4().hex[:8]}"
    running, release = asyncio.Event(), asyncio.Event()

    async def run(job_run: JobRun) -> str:
        running.set()
        await release.wait()
        async with job_run.transaction() as conn:
            await conn.execute("SELECT 1")
        return "held"

    job = PeriodicJob(name, timedelta(0), run)
    stop = asyncio.Event()
    async with contextlib.AsyncExitStack() as stack:
        replicas = [
            await stack.enter_async_context(create_database(db_settings, f"replica-{n}"))
            for n in range(3)
        ]
        leader = asyncio.create_task(run_if_due(replicas[0].primary, job, stop))
        await asyncio.wait_for(running.wait(), 10)
        others = await asyncio.gather(
            *(run_if_due(db.primary, job, stop) for db in replicas[1:] for _ in range(4))
        )
        assert others == [False] * 8
        assert await _advisory_locks(database_dsn) >= 1
        release.set()
        assert await asyncio.wait_for(leader, 10)
        # Released with its transaction (a session lock would stay on the pooled server
        # connection): the next replica takes it at once.
        await wait_until(
            lambda: _no_advisory_locks(database_dsn), seconds=5, message="a lock outlived its run"
        )
        running.clear()
        release.set()
        assert await run_if_due(replicas[2].primary, job, stop)


async def test_migrations_bypass_pgbouncer_whose_pooling_keeps_session_locks(
    bouncer: PrivatePgBouncer, manifest_env: dict[str, str], database_dsn: str
) -> None:
    """The migration runner's lock is a session advisory lock. Through transaction pooling a
    session lock stays on the server connection after its client has gone, where any other
    client may be handed it: so the manifests send migrations to the primary itself."""
    migrate = urlsplit(manifest_env["MIGRATE_DSN"])
    herald = alias_fields(pgbouncer_config().databases["herald"])
    primary = urlsplit(database_dsn)
    # Every pod's migrate step connects with MIGRATE_DSN...
    for name in ("herald-api", "herald-worker"):
        migrate_env = container(one(OVERLAY, "Deployment", name), "migrate")["env"]
        assert {
            "name": "HERALD_DB_DSN",
            "valueFrom": {"configMapKeyRef": {"name": "herald-config", "key": "MIGRATE_DSN"}},
        } in migrate_env
    # ...the same server and database as PgBouncer's "herald" alias, without PgBouncer.
    assert (migrate.hostname, migrate.port) == (primary.hostname, primary.port)
    assert str(migrate.port) != str(bouncer.port)
    assert migrate.path.lstrip("/") == herald["dbname"]

    options: dict[str, Any] = {"statement_cache_size": 0}
    client = await asyncpg.connect(bouncer.dsn("herald", "herald"), **options)
    try:
        await client.execute(f"SELECT pg_advisory_lock({MIGRATION_LOCK_KEY})")
    finally:
        await client.close()
    direct = await asyncpg.connect(database_dsn)
    try:
        holders = await direct.fetch(
            "SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND granted "
            "AND ((classid::bigint << 32) | objid::bigint) = $1",
            MIGRATION_LOCK_KEY,
        )
        # Its client disconnected, yet a pooled server connection still holds the lock.
        assert len(holders) == 1
        await direct.execute("SELECT pg_terminate_backend($1)", holders[0]["pid"])
    finally:
        await direct.close()
    # Straight to the primary, as the manifests' init containers run it.
    database = primary.path.lstrip("/")
    await upgrade(manifest_env["MIGRATE_DSN"].rsplit("/", 1)[0] + f"/{database}")
