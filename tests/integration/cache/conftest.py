"""Fixtures of the cache tests: a Redis client on the run's prefix, and the measurements
(invalidation lag) shown in the terminal summary of every run, not only with ``-s``."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
import redis.asyncio as redis

from tests.support.cache import REDIS_URL
from tests.support.measurements import MEASUREMENTS


@pytest.fixture
async def redis_client() -> AsyncIterator[redis.Redis]:
    client = redis.Redis.from_url(REDIS_URL)
    try:
        yield client
    finally:
        await client.aclose()


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if MEASUREMENTS:
        terminalreporter.section("cache measurements")
        for line in MEASUREMENTS:
            terminalreporter.write_line(line)
