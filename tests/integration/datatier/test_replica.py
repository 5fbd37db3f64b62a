"""Reads from a real streaming replica that really lags.

A private primary (``wal_level=replica``) and a replica made of it with ``pg_basebackup -R``,
each on its own port, the replica applying every transaction ``LAG`` seconds after its commit
(``recovery_min_apply_delay``). The API runs in-process with the primary as ``HERALD_DB_DSN``
and the replica as ``HERALD_DB_REPLICA_DSN``: directly, and through a private PgBouncer
configured as the manifests configure theirs (``herald`` → the primary, ``herald_replica`` →
the replica, Herald's ``HERALD_DB_*`` from the manifests). Each test does what it checks within
the lag, and checks on the replica itself that it still lacked the change while the test ran
(decision 0036).
"""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import asyncpg
import httpx
import pytest
from prometheus_client import REGISTRY
from pydantic import SecretStr

from herald_api.replica import primary_position, remember_write, write_fence
from herald_api.settings import Settings
from herald_shared import accounts
from herald_shared.apikeys import Role
from herald_shared.cache import revision
from herald_shared.migrate import upgrade
from herald_shared.settings import DatabaseSettings, RelaySettings
from tests.conftest import ApiKey
from tests.integration.datatier.manifests import (
    PGBOUNCER_ADDRESS,
    alias_fields,
    database_environment,
    database_settings,
    pgbouncer_config,
    rewrite_alias,
)
from tests.support.apps import RunningApi, running_api
from tests.support.http import create_published
from tests.support.network import free_port
from tests.support.servers import PrivatePgBouncer, PrivatePostgres

#: The replica's apply delay: long enough to act within, short enough to wait out.
LAG = 1.5
DATABASE = "herald"


@dataclass(frozen=True, slots=True)
class Replicated:
    primary: PrivatePostgres
    replica: PrivatePostgres
    #: The primary's database, for setting up and for checks.
    pool: asyncpg.Pool

    async def caught_up(self) -> None:
        """Wait until the replica has replayed everything committed so far."""
        await self.replica.wait_replayed(await self.primary.current_lsn(), seconds=LAG * 10)

    async def on_replica(self, sql: str, *args: Any) -> Any:
        conn = await self.replica.connect(DATABASE)
        try:
            return await conn.fetchval(sql, *args)
        finally:
            await conn.close()


@pytest.fixture(scope="module")
async def replicated() -> AsyncIterator[Replicated]:
    primary = await PrivatePostgres.create(label="primary")
    try:
        await primary.create_database(DATABASE)
        await upgrade(primary.dsn(DATABASE))
        replica = await primary.create_replica(apply_delay_seconds=LAG)
        pool = await asyncpg.create_pool(primary.dsn(DATABASE), min_size=1, max_size=4)
        try:
            yield Replicated(primary, replica, pool)
        finally:
            await pool.close()
    finally:
        await primary.close()


@pytest.fixture(scope="module")
async def bouncer(replicated: Replicated) -> AsyncIterator[PrivatePgBouncer]:
    """PgBouncer with the manifests' ini: its aliases point at the private primary and replica."""
    config = pgbouncer_config()
    servers = {
        "postgres-primary": replicated.primary.port,
        "postgres-replica": replicated.replica.port,
    }
    databases = {
        alias: rewrite_alias(
            connection,
            host="127.0.0.1",
            port=servers[alias_fields(connection)["host"]],
            dbname=DATABASE,
        )
        for alias, connection in config.databases.items()
    }
    bouncer = await PrivatePgBouncer.create(
        "127.0.0.1",
        replicated.primary.port,
        users=("postgres", "herald"),
        databases=databases,
        settings=config.settings,
    )
    try:
        yield bouncer
    finally:
        await bouncer.close()


async def _replica_role(replicated: Replicated) -> None:
    """The manifests connect as ``herald``: the role must exist (the replica copies it)."""
    exists = await replicated.pool.fetchval("SELECT 1 FROM pg_roles WHERE rolname = 'herald'")
    if not exists:
        await replicated.pool.execute("CREATE ROLE herald LOGIN")
        await replicated.pool.execute("GRANT ALL ON ALL TABLES IN SCHEMA public TO herald")
        await replicated.pool.execute("GRANT ALL ON ALL SEQUENCES IN SCHEMA public TO herald")
        await replicated.caught_up()


@pytest.fixture(params=["direct", "pgbouncer"])
async def api(
    request: pytest.FixtureRequest,
    replicated: Replicated,
    bouncer: PrivatePgBouncer,
    settings: Settings,
    redis_prefix: str,
) -> AsyncIterator[RunningApi]:
    primary, replica = replicated.primary, replicated.replica
    if request.param == "direct":
        db = DatabaseSettings(
            dsn=primary.dsn(DATABASE),
            replica_dsn=replica.dsn(DATABASE),
            pool_min_size=1,
            pool_max_size=4,
        )
    else:
        await _replica_role(replicated)
        db = database_settings(
            database_environment({PGBOUNCER_ADDRESS: f"127.0.0.1:{bouncer.port}"})
        )
    replicated_settings = dataclasses.replace(
        settings,
        db=db,
        # Keys of this test's own: list pages are cached by their filters alone.
        redis=settings.redis.model_copy(
            update={"key_prefix": f"{redis_prefix}replica-{uuid.uuid4().hex[:6]}:"}
        ),
        relay=RelaySettings(enabled=False),
    )
    async with running_api(replicated_settings) as running:
        yield running


async def new_key(replicated: Replicated) -> ApiKey:
    name = f"acct-{uuid.uuid4().hex[:12]}"
    async with replicated.pool.acquire() as conn:
        key = await accounts.create_key(conn, name, Role.MEMBER)
        account_id = await conn.fetchval("SELECT id FROM accounts WHERE name = $1", name)
    return ApiKey(key.token, key.key_id, account_id, name)


async def on_replica_title(replicated: Replicated, post_id: str) -> str | None:
    title: str | None = await replicated.on_replica(
        "SELECT title FROM posts WHERE id = $1", uuid.UUID(post_id)
    )
    return title


def routed(server: str, reason: str) -> float:
    """How many reads ``herald_db_replica_routing_total`` counted for ``server`` and ``reason``."""
    labels = {"server": server, "reason": reason}
    return REGISTRY.get_sample_value("herald_db_replica_routing_total", labels) or 0.0


def titles(page: httpx.Response) -> dict[str, str]:
    assert page.status_code == 200, page.text
    return {item["id"]: item["title"] for item in page.json()["items"]}


async def test_reads_go_to_the_replica(api: RunningApi, replicated: Replicated) -> None:
    author, reader = await new_key(replicated), await new_key(replicated)
    tag = f"r{uuid.uuid4().hex[:8]}"
    post = await create_published(api.http, author, tags=[tag])
    behind = routed("replica", "behind-page")
    listed = await api.http.get(f"/v1/posts?author={author.account_id}", headers=reader.headers)
    # Only the replica lacks the post yet: the reader's list came from it (and was not cached).
    assert post["id"] not in titles(listed)
    assert routed("replica", "behind-page") == behind + 1
    assert await on_replica_title(replicated, post["id"]) is None
    await replicated.caught_up()
    listed = await api.http.get(f"/v1/posts?author={author.account_id}", headers=reader.headers)
    assert post["id"] in titles(listed)
    # It streams through a replication slot of its own.
    assert await replicated.pool.fetchval("SELECT bool_and(active) FROM pg_replication_slots")


async def test_a_write_fence_only_rises(api: RunningApi, replicated: Replicated) -> None:
    """Two writes by one account answered out of order: the later fence must not win."""
    account = (await new_key(replicated)).account_id
    assert await write_fence(api.state, account) is None
    position = await primary_position(api.state)
    await remember_write(api.state, account, position + 1000)
    await remember_write(api.state, account, position)
    assert await write_fence(api.state, account) == position + 1000


async def test_a_client_reads_its_own_writes(api: RunningApi, replicated: Replicated) -> None:
    author = await new_key(replicated)
    tag = f"w{uuid.uuid4().hex[:8]}"
    published = f"/v1/posts?tag={tag}&status=published"
    # A page every viewer sees alike, cached before the write (and retired only when the
    # cache-invalidator handles the write's event, which does not run here).
    await replicated.caught_up()
    assert (await api.http.get(published, headers=author.headers)).headers["X-Cache"] == "miss"
    assert (await api.http.get(published, headers=author.headers)).headers["X-Cache"] == "hit"
    post = await create_published(api.http, author, tags=[tag], title="First")
    url = f"/v1/posts/{post['id']}"
    read = await api.http.get(url, headers=author.headers)
    assert read.status_code == 200, read.text
    assert read.json()["title"] == "First"

    patched = await api.http.patch(url, json={"title": "Second"}, headers=author.headers)
    assert patched.status_code == 200, patched.text
    behind_fence = routed("primary", "behind-fence")
    read = await api.http.get(url, headers=author.headers)
    assert (read.json()["title"], read.headers["ETag"]) == ("Second", '"2"')
    mine = await api.http.get(f"/v1/posts?author={author.account_id}", headers=author.headers)
    assert titles(mine) == {post["id"]: "Second"}
    page = await api.http.get(published, headers=author.headers)
    assert titles(page) == {post["id"]: "Second"}
    tagged = await api.http.get(f"/v1/posts?tag={tag}", headers=author.headers)
    assert titles(tagged) == {post["id"]: "Second"}
    assert routed("primary", "behind-fence") == behind_fence + 3
    # All of that within the lag: the replica had not even the post yet.
    assert await on_replica_title(replicated, post["id"]) is None


async def test_a_read_after_an_invalidation_never_returns_an_older_version(
    api: RunningApi, replicated: Replicated
) -> None:
    author, reader = await new_key(replicated), await new_key(replicated)
    post = await create_published(api.http, author, title="Old")
    url = f"/v1/posts/{post['id']}"
    await replicated.caught_up()
    cached = await api.http.get(url, headers=reader.headers)
    assert (cached.json()["title"], cached.headers["X-Cache"]) == ("Old", "miss")

    # The write's invalidation has completed when the PATCH answers.
    patched = await api.http.patch(url, json={"title": "New"}, headers=author.headers)
    assert patched.status_code == 200, patched.text
    stale = routed("primary", "stale")
    read = await api.http.get(url, headers=reader.headers)
    assert (read.json()["title"], read.headers["ETag"]) == ("New", '"2"')
    # The replica's version 1 was refused by the version check and read again from the primary.
    assert routed("primary", "stale") == stale + 1
    again = await api.http.get(url, headers=reader.headers)
    assert (again.json()["title"], again.headers["X-Cache"]) == ("New", "hit")
    assert await on_replica_title(replicated, post["id"]) == "Old"

    deleted = await api.http.delete(url, headers=author.headers)
    assert deleted.status_code == 204
    gone = await api.http.get(url, headers=reader.headers)
    assert gone.status_code == 404, gone.text
    assert await on_replica_title(replicated, post["id"]) == "Old"


async def test_a_lagging_replica_never_refills_a_stale_list_page(
    api: RunningApi, replicated: Replicated
) -> None:
    author, reader = await new_key(replicated), await new_key(replicated)
    tag = f"l{uuid.uuid4().hex[:8]}"
    post = await create_published(api.http, author, tags=[tag], title="Old")
    await replicated.caught_up()
    page_url = f"/v1/posts?tag={tag}&status=published"
    first = await api.http.get(page_url, headers=reader.headers)
    assert (titles(first), first.headers["X-Cache"]) == ({post["id"]: "Old"}, "miss")
    assert (await api.http.get(page_url, headers=reader.headers)).headers["X-Cache"] == "hit"

    patched = await api.http.patch(
        f"/v1/posts/{post['id']}", json={"title": "New"}, headers=author.headers
    )
    assert patched.status_code == 200, patched.text
    # What the cache-invalidator does with the PATCH's event (the only party that retires list
    # pages, decision 0039): from then on the page from before the PATCH is a miss.
    assert api.state.cache is not None
    await api.state.cache.invalidate_with_lists(
        uuid.UUID(post["id"]), revision(patched.json()["version"], enriched=False)
    )
    # The reader wrote nothing: its reads may see the replica's older page (a miss), but the
    # cache never serves it.
    for _ in range(3):
        during = await api.http.get(page_url, headers=reader.headers)
        if during.headers["X-Cache"] == "hit":
            assert titles(during) == {post["id"]: "New"}
    assert await on_replica_title(replicated, post["id"]) == "Old"

    await replicated.caught_up()
    after = await api.http.get(page_url, headers=reader.headers)
    assert titles(after) == {post["id"]: "New"}
    cached = await api.http.get(page_url, headers=reader.headers)
    assert (titles(cached), cached.headers["X-Cache"]) == ({post["id"]: "New"}, "hit")


async def test_without_redis_reads_go_to_the_primary(
    replicated: Replicated, settings: Settings
) -> None:
    """No fence can be read and no version checked: only the primary is known to be current."""
    dead_redis = f"redis://127.0.0.1:{free_port()}/0"
    no_redis = dataclasses.replace(
        settings,
        db=DatabaseSettings(
            dsn=replicated.primary.dsn(DATABASE),
            replica_dsn=replicated.replica.dsn(DATABASE),
            pool_min_size=1,
            pool_max_size=4,
        ),
        redis=settings.redis.model_copy(update={"url": SecretStr(dead_redis)}),
        relay=RelaySettings(enabled=False),
    )
    author, reader = await new_key(replicated), await new_key(replicated)
    async with running_api(no_redis) as api:
        post = await create_published(api.http, author, title="Unfenced")
        read = await api.http.get(f"/v1/posts/{post['id']}", headers=reader.headers)
        assert (read.status_code, read.headers["X-Cache"]) == (200, "miss"), read.text
        for key in (author, reader):
            listed = await api.http.get(
                f"/v1/posts?author={author.account_id}", headers=key.headers
            )
            assert titles(listed) == {post["id"]: "Unfenced"}
    assert await on_replica_title(replicated, post["id"]) is None
