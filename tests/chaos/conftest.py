"""Fixtures of the chaos suite: the session's private PostgreSQL, Redis and RabbitMQ (started
once, restored after every scenario that broke them), a ``ChaosSystem`` per scenario, and the
figures of every scenario in the terminal summary."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from herald_shared.migrate import upgrade
from tests.chaos.ledger import REPORTS
from tests.chaos.scenario import Scale
from tests.chaos.system import ChaosSystem, PrivateServers
from tests.support.servers import PrivatePostgres, PrivateRabbitMQ, PrivateRedis

TEMPLATE = "chaos_template"
#: Start-up figures of the session's servers, for the summary.
STARTUP: list[str] = []


@pytest.fixture(scope="session")
async def chaos_servers() -> AsyncIterator[PrivateServers]:
    """PostgreSQL, Redis and RabbitMQ of this run's own, and a migrated template database."""
    started = time.monotonic()
    results = await asyncio.gather(
        PrivatePostgres.create(label="chaos-postgres"),
        PrivateRedis.create(),
        PrivateRabbitMQ.create(),
        return_exceptions=True,
    )
    failures = [r for r in results if isinstance(r, BaseException)]
    servers = [r for r in results if not isinstance(r, BaseException)]
    if failures:
        for server in servers:
            await server.close()
        raise failures[0]
    postgres, redis, rabbitmq = results
    assert isinstance(postgres, PrivatePostgres)
    assert isinstance(redis, PrivateRedis)
    assert isinstance(rabbitmq, PrivateRabbitMQ)
    running = PrivateServers(postgres, redis, rabbitmq, TEMPLATE)
    try:
        migrated = time.monotonic()
        await postgres.create_database(TEMPLATE)
        await upgrade(postgres.dsn(TEMPLATE))
        STARTUP.append(
            f"private servers up in {time.monotonic() - started:.1f} s (postgres "
            f"{postgres.last_start_seconds:.1f} s, redis {redis.last_start_seconds:.2f} s, "
            f"rabbitmq {rabbitmq.last_start_seconds:.1f} s; template migrated in "
            f"{time.monotonic() - migrated:.1f} s)"
        )
        yield running
    finally:
        await running.close()


@pytest.fixture
async def chaos_system(chaos_servers: PrivateServers, tmp_path: Path) -> AsyncIterator[ChaosSystem]:
    """One scenario's database, namespace and key prefix; its processes are killed and the
    servers restored when it ends."""
    system = ChaosSystem(chaos_servers, tmp_path)
    await system.open()
    try:
        yield system
    finally:
        await system.close()


@pytest.fixture(scope="session")
def scale() -> Scale:
    return Scale.from_environment()


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if REPORTS or STARTUP:
        terminalreporter.section("chaos scenarios")
        for line in STARTUP:
            terminalreporter.write_line(line)
        for report in REPORTS:
            terminalreporter.write_line(report.summary())
