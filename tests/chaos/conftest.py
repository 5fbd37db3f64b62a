"""Fixtures of the chaos suite: the session's private PostgreSQL, Redis and RabbitMQ (started
once, restored after every scenario that broke them), a ``ChaosSystem`` per scenario, and the
figures of every scenario in the terminal summary — and, with ``HERALD_CHAOS_REPORT=<path>``,
in a JSON file that ``python -m tests.chaos.report`` turns into docs/reliability.md's table."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
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
#: Per scenario (test id): its outcome, how long it took and the ledger reports it made.
SCENARIOS: dict[str, dict[str, object]] = {}
_REPORTS_BEFORE: dict[str, int] = {}


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


def pytest_runtest_setup(item: pytest.Item) -> None:
    _REPORTS_BEFORE[item.nodeid] = len(REPORTS)


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    if report.when != "call" or report.nodeid not in _REPORTS_BEFORE:
        return
    made = REPORTS[_REPORTS_BEFORE[report.nodeid] :]
    SCENARIOS[report.nodeid] = {
        "outcome": report.outcome,
        "seconds": round(report.duration, 1),
        "reports": [
            {**dataclasses.asdict(r), "statuses": dict(r.statuses), "summary": r.summary()}
            for r in made
        ],
    }


def pytest_sessionfinish(session: pytest.Session) -> None:
    path = os.environ.get("HERALD_CHAOS_REPORT")
    if not path or not SCENARIOS:
        return
    scale = Scale.from_environment()
    document = {
        "finished_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "soak": scale.soak,
        "load": dataclasses.asdict(scale.profile),
        "phase_seconds": scale.phase_seconds,
        "servers": STARTUP,
        "scenarios": SCENARIOS,
    }
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text(json.dumps(document, indent=2) + "\n")


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if REPORTS or STARTUP:
        terminalreporter.section("chaos scenarios")
        for line in STARTUP:
            terminalreporter.write_line(line)
        for report in REPORTS:
            terminalreporter.write_line(report.summary())
