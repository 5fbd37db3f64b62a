"""A paused Redis (SIGSTOP: connections are accepted, nothing is ever answered) must cost a
request no more than the socket timeout, and only until the breaker opens.

The pause is applied to a private redis-server of this test's own, never the shared one.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import pytest
import redis.asyncio as redis

from herald_api.settings import Settings
from herald_shared.settings import RedisSettings
from tests.conftest import MakeKey
from tests.support.apps import running_api
from tests.support.http import create_published
from tests.support.network import free_port
from tests.support.waiting import wait_until


@dataclass(frozen=True, slots=True)
class PrivateRedis:
    process: subprocess.Popen[bytes]
    url: str

    def pause(self) -> None:
        os.kill(self.process.pid, signal.SIGSTOP)

    def resume(self) -> None:
        os.kill(self.process.pid, signal.SIGCONT)


@contextlib.contextmanager
def _redis_server(directory: Path, port: int) -> Iterator[subprocess.Popen[bytes]]:
    process = subprocess.Popen(
        [
            *("redis-server", "--port", str(port), "--bind", "127.0.0.1", "--dir", str(directory)),
            *("--save", "", "--appendonly", "no", "--daemonize", "no"),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        yield process
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.kill(process.pid, signal.SIGCONT)
            process.kill()
        process.wait(timeout=10)


@pytest.fixture
async def private_redis(tmp_path: Path) -> AsyncIterator[PrivateRedis]:
    port = free_port()
    url = f"redis://127.0.0.1:{port}/0"
    with _redis_server(tmp_path, port) as process:
        client = redis.Redis.from_url(url)

        async def answering() -> bool:
            assert process.poll() is None, "redis-server exited"
            try:
                return bool(await client.ping())
            except (redis.ConnectionError, OSError):
                return False

        try:
            await wait_until(answering, seconds=10, message="the private Redis never answered")
        finally:
            await client.aclose()
        yield PrivateRedis(process, url)


async def test_a_paused_redis_costs_reads_at_most_the_socket_timeout(
    settings: Settings, redis_prefix: str, make_key: MakeKey, private_redis: PrivateRedis
) -> None:
    redis_settings = RedisSettings(
        url=private_redis.url,
        key_prefix=redis_prefix,
        breaker_failures=3,
        breaker_reset_seconds=1,
        socket_timeout_seconds=0.1,
        connect_timeout_seconds=0.1,
    )
    key = await make_key()
    async with running_api(replace(settings, redis=redis_settings)) as api:
        post = await create_published(api.http, key)
        url = f"/v1/posts/{post['id']}"
        await api.http.get(url, headers=key.headers)
        assert (await api.http.get(url, headers=key.headers)).headers["X-Cache"] == "hit"

        private_redis.pause()
        durations = []
        for _ in range(6):
            started = time.monotonic()
            response = await api.http.get(url, headers=key.headers)
            durations.append(time.monotonic() - started)
            assert response.status_code == 200, response.text
            assert response.headers["X-Cache"] == "miss"
        breaker = (await api.http.get("/readyz")).json()["dependencies"]["redis_breaker"]
        # Two Redis calls per read (rate limit, fill), each given up after ~0.1 s; once three
        # have failed the breaker is open and reads no longer wait at all.
        assert max(durations) < 1.0, durations
        assert sum(durations[2:]) < 0.5, durations
        assert breaker == "open"

        private_redis.resume()

        async def cached_again() -> bool:
            response = await api.http.get(url, headers=key.headers)
            assert response.status_code == 200
            return response.headers["X-Cache"] == "hit"

        await wait_until(cached_again, seconds=10, interval=0.1, message="caching never resumed")
