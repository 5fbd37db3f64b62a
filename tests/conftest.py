"""Fixtures shared by every suite: a private PostgreSQL database per test run, the API app
in-process, and API keys for fresh accounts.

The database is created from ``HERALD_DB_DSN`` (its role needs CREATEDB), migrated with the real
migrations, and dropped at the end of the run, so runs never see each other's rows.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

import asyncpg
import httpx
import pytest

from herald_api.settings import ServerSettings, Settings
from herald_shared import accounts
from herald_shared.apikeys import Role
from herald_shared.migrate import upgrade
from herald_shared.settings import (
    AmqpSettings,
    DatabaseSettings,
    RateLimitSettings,
    RedisSettings,
    RelaySettings,
    SecuritySettings,
)
from tests.support.apps import in_process_client
from tests.support.broker import AMQP_URL, Broker, delete_namespace
from tests.support.cache import REDIS_URL, delete_keys
from tests.support.databases import create_database, drop_database, dsn_for
from tests.support.services import Processes

#: Every consumer name and retry-delay set tests declare, so the run can remove them all.
TEST_CONSUMERS: set[str] = set()
TEST_RETRY_DELAYS: set[tuple[float, ...]] = set()


@pytest.fixture(scope="session")
async def database_dsn() -> AsyncIterator[str]:
    """A freshly migrated database of this run's own."""
    admin_dsn = os.environ.get("HERALD_DB_DSN", DatabaseSettings().dsn)
    name = f"herald_test_{os.getpid()}_{uuid.uuid4().hex[:8]}"
    await create_database(admin_dsn, name)
    dsn = dsn_for(admin_dsn, name)
    try:
        await upgrade(dsn)
        yield dsn
    finally:
        await drop_database(admin_dsn, name)


@pytest.fixture(scope="session")
async def amqp_namespace() -> AsyncIterator[str]:
    """A broker namespace of this run's own; its exchange and queues are deleted at the end."""
    namespace = f"test-{os.getpid()}-{uuid.uuid4().hex[:6]}"
    try:
        yield namespace
    finally:
        await delete_namespace(AMQP_URL, namespace, TEST_CONSUMERS, TEST_RETRY_DELAYS)


@pytest.fixture(scope="session")
async def redis_prefix() -> AsyncIterator[str]:
    """A Redis key prefix of this run's own; its keys are deleted at the end."""
    prefix = f"test:{os.getpid()}:{uuid.uuid4().hex[:6]}:"
    try:
        yield prefix
    finally:
        await delete_keys(REDIS_URL, prefix)


@pytest.fixture
def amqp_settings(amqp_namespace: str) -> AmqpSettings:
    return AmqpSettings(url=AMQP_URL, namespace=amqp_namespace)


@pytest.fixture(scope="session")
async def db_pool(database_dsn: str) -> AsyncIterator[asyncpg.Pool]:
    pool = await asyncpg.create_pool(database_dsn, min_size=1, max_size=4)
    try:
        yield pool
    finally:
        await pool.close()


@pytest.fixture
def settings(database_dsn: str, amqp_settings: AmqpSettings, redis_prefix: str) -> Settings:
    return Settings(
        server=ServerSettings(auth_cache_ttl_seconds=0),
        db=DatabaseSettings(dsn=database_dsn, pool_min_size=1, pool_max_size=8),
        security=SecuritySettings(cursor_secret="test-cursor-secret"),
        amqp=amqp_settings,
        relay=RelaySettings(sweep_interval_seconds=0.2),
        redis=RedisSettings(url=REDIS_URL, key_prefix=redis_prefix),
        # Generous budgets: the rate-limit tests set their own small ones.
        rate_limit=RateLimitSettings(
            read_per_window=1_000_000, write_per_window=1_000_000, anonymous_per_window=1_000_000
        ),
    )


@pytest.fixture
async def client(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    """The API in-process, its lifespan running, behind an HTTP client."""
    async with in_process_client(settings) as http:
        yield http


@dataclass(frozen=True)
class ApiKey:
    token: str
    key_id: str
    account_id: uuid.UUID
    account_name: str

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}


MakeKey = Callable[..., Awaitable[ApiKey]]


@pytest.fixture
def make_key(db_pool: asyncpg.Pool) -> MakeKey:
    """Create a key for a new account of its own (or for ``account`` when given)."""

    async def make(role: Role = Role.MEMBER, account: str | None = None) -> ApiKey:
        name = account or f"acct-{uuid.uuid4().hex[:12]}"
        async with db_pool.acquire() as conn:
            key = await accounts.create_key(conn, name, role)
            account_id = await conn.fetchval("SELECT id FROM accounts WHERE name = $1", name)
        return ApiKey(key.token, key.key_id, account_id, name)

    return make


@pytest.fixture
async def broker(amqp_settings: AmqpSettings) -> AsyncIterator[Broker]:
    """The run's broker namespace as tests see it."""
    async with Broker.open(amqp_settings) as broker:
        yield broker


@pytest.fixture
async def processes(
    database_dsn: str,
    amqp_settings: AmqpSettings,
    redis_prefix: str,
    broker: Broker,
    tmp_path: Path,
) -> AsyncIterator[Processes]:
    """Real service processes for one test; every process group is killed when it ends."""
    running = Processes(
        database_dsn,
        amqp_settings,
        redis_prefix,
        broker,
        tmp_path,
        TEST_RETRY_DELAYS,
        TEST_CONSUMERS,
    )
    try:
        yield running
    finally:
        running.kill_all()
