"""The API as a real server process: serves over HTTP and stops cleanly on SIGTERM."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import sys
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from herald_api.settings import Settings
from tests.conftest import MakeKey
from tests.support.http import assert_problem
from tests.support.waiting import wait_until

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
READY_SECONDS = 30
STOP_SECONDS = 15


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


async def start_api(env: dict[str, str], log_path: Path) -> asyncio.subprocess.Process:
    """``python -m herald_api`` in a process group of its own, output to ``log_path``."""
    with log_path.open("wb") as log:  # the child keeps its own copy of the descriptor
        return await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "herald_api",
            cwd=ROOT,
            env=env,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=log,
            stderr=asyncio.subprocess.STDOUT,
            start_new_session=True,
        )


def requests_counted(metrics: str, method: str, route: str, status: str) -> float:
    return sum(
        sample.value
        for family in text_string_to_metric_families(metrics)
        if family.name == "herald_http_requests"
        for sample in family.samples
        if sample.name == "herald_http_requests_total"
        and sample.labels == {"method": method, "route": route, "status": status}
    )


def kill_group(process: asyncio.subprocess.Process) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)


async def is_ready(http: httpx.AsyncClient, process: asyncio.subprocess.Process) -> bool:
    if process.returncode is not None:
        raise AssertionError(f"the server exited early with {process.returncode}")
    try:
        return (await http.get("/readyz")).status_code == 200
    except httpx.TransportError:
        return False


async def test_api_server_serves_posts_and_stops_on_sigterm(
    database_dsn: str, settings: Settings, make_key: MakeKey, tmp_path: Path
) -> None:
    port = free_port()
    # The run's own database, broker namespace and Redis prefix, as the in-process tests use.
    env = os.environ | {
        "HERALD_API_HOST": "127.0.0.1",
        "HERALD_API_PORT": str(port),
        "HERALD_API_PROCESSES": "1",
        "HERALD_DB_DSN": database_dsn,
        "HERALD_AMQP_URL": settings.amqp.url.get_secret_value(),
        "HERALD_AMQP_NAMESPACE": settings.amqp.namespace,
        "HERALD_REDIS_URL": settings.redis.url.get_secret_value(),
        "HERALD_REDIS_KEY_PREFIX": settings.redis.key_prefix,
    }
    log_path = tmp_path / "api.log"
    process = await start_api(env, log_path)
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=5) as http:
            await wait_until(
                lambda: is_ready(http, process),
                seconds=READY_SECONDS,
                interval=0.1,
                message="/readyz never answered 200",
            )
            key = await make_key()

            created = await http.post(
                "/v1/posts",
                json={"title": "Over the wire", "body": "real HTTP", "status": "published"},
                headers=key.headers,
            )
            assert created.status_code == 201, created.text
            assert created.headers["ETag"] == '"1"'
            assert created.headers["x-request-id"]
            url = created.headers["Location"]

            got = await http.get(url, headers=key.headers)
            assert got.status_code == 200
            assert got.json() == created.json()

            patched = await http.patch(
                url, json={"title": "Changed"}, headers=key.headers | {"If-Match": '"1"'}
            )
            assert patched.status_code == 200, patched.text
            assert patched.headers["ETag"] == '"2"'

            stale = await http.patch(
                url, json={"title": "Lost update"}, headers=key.headers | {"If-Match": '"1"'}
            )
            assert_problem(stale, 412)

            deleted = await http.delete(url, headers=key.headers | {"If-Match": '"2"'})
            assert deleted.status_code == 204

            assert_problem(await http.get(url, headers=key.headers), 404)

            # One process too writes its metrics where /metrics reads them.
            metrics = (await http.get("/metrics")).text
            assert requests_counted(metrics, "POST", "/v1/posts", "201") == 1
            assert requests_counted(metrics, "DELETE", "/v1/posts/{post_id}", "204") == 1

        process.send_signal(signal.SIGTERM)
        try:
            code = await asyncio.wait_for(process.wait(), timeout=STOP_SECONDS)
        except TimeoutError:
            raise AssertionError(f"the server did not stop within {STOP_SECONDS} s") from None
        assert code == 0, log_path.read_text(errors="replace")[-4000:]
    finally:
        kill_group(process)
        if process.returncode is None:
            await asyncio.wait_for(process.wait(), timeout=STOP_SECONDS)
