"""Each service runs as the manifests configure it, and becomes ready.

Settings come only from the rendered ConfigMap and Secret (the operator's Secret: the keys of
the base's placeholder one, with generated values), the code tree is read-only, the process
runs as the pods' unprivileged user, and it may write only to the emptyDirs its container
mounts. Cluster addresses map to this machine's servers (``ADDRESSES``); PgBouncer's address
maps to PostgreSQL itself, as no PgBouncer runs in this test. The listening ports move to free
ones (the pods' network namespaces are not simulated); ``test_manifests`` checks that the
manifests' container ports are the services' own defaults.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import os
import re
import secrets
import signal
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest

from tests.deploy.pods import Pod, rewrite, with_database
from tests.deploy.rendered import (
    OVERLAYS,
    ROOT,
    container,
    empty_dir_mounts,
    environment,
    one,
    secret_data,
)
from tests.support.broker import AMQP_URL
from tests.support.network import free_port
from tests.support.processes import kill_group
from tests.support.waiting import wait_until

READY_SECONDS = 60.0
HEALTHCHECK = ROOT / "deploy" / "healthcheck.py"
#: The addresses the manifests name; each maps to this machine (the OTLP collector to a sink).
CLUSTER_HOST = re.compile(
    r"(?<=[/@])(pgbouncer|postgres-primary|postgres-replica|redis|rabbitmq|otel-collector\.[a-z.]+)"
    r"(?=[:/])"
)
SERVICES = {
    # Deployment: (container, the variable that sets its listening port)
    "herald-api": ("api", "HERALD_API_PORT"),
    "herald-worker": ("worker", "HERALD_CONSUMER_HEALTH_PORT"),
    "herald-cache-invalidator": ("cache-invalidator", "HERALD_CONSUMER_HEALTH_PORT"),
}


@pytest.fixture(scope="module")
async def otlp_sink() -> AsyncIterator[int]:
    """An OTLP/HTTP endpoint that accepts whatever it is sent: the production collector."""

    async def accept(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(ConnectionError):
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = 0
                for line in head.decode("latin-1").split("\r\n"):
                    name, _, value = line.partition(":")
                    if name.lower() == "content-length":
                        length = int(value)
                await reader.readexactly(length)
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
                await writer.drain()
        writer.close()

    server = await asyncio.start_server(accept, "127.0.0.1", 0)
    async with server:
        yield server.sockets[0].getsockname()[1]


def operator_secret() -> dict[str, str]:
    """What an operator puts in herald-secrets: the placeholder's keys, real values."""
    placeholder = secret_data()
    broker = urlsplit(AMQP_URL)
    cluster_broker = urlsplit(placeholder["HERALD_AMQP_URL"])
    secret = {
        "HERALD_CURSOR_SECRET": base64.b64encode(secrets.token_bytes(32)).decode(),
        "HERALD_AMQP_URL": cluster_broker._replace(
            netloc=f"{broker.username}:{broker.password}@{cluster_broker.hostname}:"
            f"{cluster_broker.port}"
        ).geturl(),
        "PGPASSWORD": "herald",
    }
    assert secret.keys() == placeholder.keys()
    return secret


MakePod = Callable[[str, str, str, dict[str, str]], Pod]


@pytest.fixture
def make_pod(database_dsn: str, amqp_namespace: str, redis_prefix: str, otlp_sink: int) -> MakePod:
    """``make_pod(overlay, deployment, container, secret)``: that container, ready to start."""
    database = database_dsn.rpartition("/")[2]
    server = urlsplit(database_dsn)
    addresses = {
        "pgbouncer:6432": f"{server.hostname}:{server.port}",
        "postgres-primary:5432": f"{server.hostname}:{server.port}",
        "postgres-replica:5432": f"{server.hostname}:{server.port}",
        "redis:6379": "127.0.0.1:6379",
        "rabbitmq:5672": "127.0.0.1:5672",
        "otel-collector.observability:4318": f"127.0.0.1:{otlp_sink}",
    }

    def make(
        overlay: str, deployment_name: str, container_name: str, secret: dict[str, str]
    ) -> Pod:
        deployment = one(overlay, "Deployment", deployment_name)
        spec = container(deployment, container_name)
        env = {
            name: rewrite(value, addresses)
            for name, value in environment(overlay, deployment, spec, secret).items()
        }
        for name in ("HERALD_DB_DSN", "HERALD_DB_REPLICA_DSN"):
            if name in env:
                env[name] = with_database(env[name], database)
        # The run's own broker namespace and Redis keys.
        env["HERALD_AMQP_NAMESPACE"] = amqp_namespace
        env["HERALD_REDIS_KEY_PREFIX"] = redis_prefix
        leftover = [(k, v) for k, v in env.items() if CLUSTER_HOST.search(v)]
        assert not leftover, f"cluster addresses left unmapped: {leftover}"
        return Pod(spec["command"], env, empty_dir_mounts(deployment, spec))

    return make


async def wait_ready(process: subprocess.Popen[bytes], port: int, log: Path) -> None:
    async def ready() -> bool:
        if process.poll() is not None:
            output = await asyncio.to_thread(log.read_text)
            raise AssertionError(f"exited with {process.returncode}:\n{output}")
        try:
            async with httpx.AsyncClient(timeout=2) as http:
                return (await http.get(f"http://127.0.0.1:{port}/readyz")).status_code == 200
        except httpx.TransportError:
            return False

    await wait_until(ready, seconds=READY_SECONDS, interval=0.2, message=f"not ready: {log}")


async def healthcheck(service: str, port_variable: str, port: int) -> int:
    """The image's HEALTHCHECK command, as Docker runs it in the container."""
    env = {"PATH": os.environ["PATH"], "HERALD_SERVICE": service, port_variable: str(port)}
    checked = await asyncio.to_thread(
        subprocess.run, [sys.executable, str(HEALTHCHECK)], env=env, timeout=10, check=False
    )
    return checked.returncode


async def stop(process: subprocess.Popen[bytes], grace_seconds: float) -> int:
    kill_group(process, signal.SIGTERM)
    try:
        return await asyncio.to_thread(process.wait, timeout=grace_seconds)
    finally:
        await kill(process)


async def kill(process: subprocess.Popen[bytes]) -> None:
    kill_group(process)
    await asyncio.to_thread(process.wait, timeout=10)


@pytest.mark.slow
@pytest.mark.parametrize("overlay", sorted(OVERLAYS))
@pytest.mark.parametrize("deployment_name", sorted(SERVICES))
async def test_the_service_becomes_ready_as_the_manifests_run_it(
    make_pod: MakePod, overlay: str, deployment_name: str, tmp_path: Path
) -> None:
    container_name, port_variable = SERVICES[deployment_name]
    secret = operator_secret()
    deployment = one(overlay, "Deployment", deployment_name)
    for init in deployment["spec"]["template"]["spec"].get("initContainers", []):
        pod = make_pod(overlay, deployment_name, init["name"], secret)
        scratch = tmp_path / init["name"]
        scratch.mkdir()
        migrate = pod.start(scratch, tmp_path / f"{init['name']}.log")
        code = await asyncio.to_thread(migrate.wait, timeout=READY_SECONDS)
        assert code == 0, (tmp_path / f"{init['name']}.log").read_text()

    pod = make_pod(overlay, deployment_name, container_name, secret)
    port = free_port()
    pod.env[port_variable] = str(port)
    # The API's /metrics is on a port of its own, off the public one.
    metrics_port = port
    if deployment_name == "herald-api":
        metrics_port = free_port()
        pod.env["HERALD_API_METRICS_PORT"] = str(metrics_port)
    scratch = tmp_path / container_name
    scratch.mkdir()
    log = tmp_path / f"{container_name}.log"
    process = pod.start(scratch, log)
    try:
        await wait_ready(process, port, log)
        async with httpx.AsyncClient(timeout=5) as http:
            assert (await http.get(f"http://127.0.0.1:{port}/livez")).status_code == 200
            metrics = await http.get(f"http://127.0.0.1:{metrics_port}/metrics")
            if deployment_name == "herald-api":
                public = f"http://127.0.0.1:{port}"
                assert (await http.get(f"{public}/metrics")).status_code == 404
                documents = (await http.get(f"{public}/openapi.json")).status_code
                served = pod.env.get("HERALD_API_DOCS_ENABLED", "true") != "false"
                assert documents == (200 if served else 404)
        assert metrics.status_code == 200
        assert "herald_" in metrics.text
        assert await healthcheck(deployment_name.removeprefix("herald-"), port_variable, port) == 0
        if "PROMETHEUS_MULTIPROC_DIR" in pod.env and deployment_name == "herald-api":
            # The server processes' metric files are on the emptyDir.
            (mount,) = pod.empty_dirs
            relative = Path(pod.env["PROMETHEUS_MULTIPROC_DIR"]).relative_to(mount)
            assert list((pod.volume(scratch, mount) / relative).glob("*.db"))
        grace = deployment["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]
        assert await stop(process, grace) == 0, log.read_text()
    finally:
        await kill(process)


@pytest.mark.slow
async def test_the_api_refuses_the_placeholder_secret(make_pod: MakePod, tmp_path: Path) -> None:
    pod = make_pod("base", "herald-api", "api", secret_data())
    pod.env["HERALD_API_PORT"] = str(free_port())
    log = tmp_path / "api.log"
    process = pod.start(tmp_path, log)
    try:
        code = await asyncio.to_thread(process.wait, timeout=READY_SECONDS)
    finally:
        await kill(process)
    output = log.read_text()
    assert code != 0, output
    assert "HERALD_CURSOR_SECRET must be at least 32 random bytes" in output


@pytest.mark.slow
async def test_a_service_without_a_writable_trace_directory_still_runs(
    make_pod: MakePod, tmp_path: Path
) -> None:
    # The default trace directory (var/traces) is relative to the working directory, the
    # read-only tree; one of the same kind that no earlier run can have made.
    pod = make_pod("base", "herald-worker", "worker", operator_secret())
    pod.env["HERALD_TRACE_DIR"] = f"var/traces-{uuid.uuid4().hex}"
    pod.env["HERALD_TRACE_SAMPLE_RATIO"] = "1.0"
    port = free_port()
    pod.env["HERALD_CONSUMER_HEALTH_PORT"] = str(port)
    log = tmp_path / "worker.log"
    process = pod.start(tmp_path, log)
    try:
        await wait_ready(process, port, log)
    finally:
        await kill(process)
    assert "trace directory is not writable" in log.read_text()


SANDBOX_PROBE = """
import errno, os, sys
try:
    open("probe", "w")
    print("tree: writable")
except OSError as error:
    print("tree:", errno.errorcode[error.errno])
with open("/tmp/probe", "w") as probe:
    probe.write("ok")
print("tmp: writable")
print("uid:", os.getuid(), os.getgid(), os.getgroups())
"""


async def test_the_sandbox_is_what_the_pod_would_see(tmp_path: Path) -> None:
    pod = Pod(["python", "-c", SANDBOX_PROBE], {}, ["/tmp"])  # noqa: S108
    log = tmp_path / "probe.log"
    process = pod.start(tmp_path, log)
    code = await asyncio.to_thread(process.wait, timeout=READY_SECONDS)
    output = log.read_text()
    assert code == 0, output
    assert "tree: EROFS" in output
    assert "tmp: writable" in output
    assert "uid: 10001 10001 []" in output
    assert (pod.volume(tmp_path, "/tmp") / "probe").read_text() == "ok"  # noqa: S108
    assert not (ROOT / "probe").exists()
