"""The run's private resources: its own database, Redis key prefix and broker namespace, the
environment every process it starts gets, and removing all of them afterwards.

PostgreSQL, Redis and RabbitMQ are shared with other people's work on this machine: the run
never touches a database, key or queue that is not its own, and refuses non-loopback addresses.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote, unquote, urlsplit, urlunsplit

import aio_pika
import aiormq
import asyncpg
import redis.asyncio as redis

from bench.seams import DatabaseSettings, upgrade

_LOOPBACK = re.compile(r"@(127\.[0-9.]+|localhost|\[::1\])(:|/|$)|^redis://(127\.|localhost)")
CURSOR_SECRET = "bench-cursor-secret-not-for-production"  # noqa: S105
#: Budgets for the benchmark's own accounts (set as per-account overrides).
HIGH_LIMIT = 2_000_000_000


def _require_loopback(name: str, url: str) -> None:
    if not _LOOPBACK.search(url):
        raise SystemExit(f"{name} must point at this machine (loopback) for the benchmark: {url}")


def _dsn_for(dsn: str, database: str) -> str:
    base, _, query = dsn.partition("?")
    return f"{base.rsplit('/', 1)[0]}/{database}" + (f"?{query}" if query else "")


@dataclass(frozen=True, slots=True)
class BenchEnv:
    """Names of the run's resources and the work folder for logs, scripts and traces."""

    admin_dsn: str
    database: str
    redis_url: str
    prefix: str
    amqp_url: str
    namespace: str
    work: Path

    @classmethod
    def create(cls) -> BenchEnv:
        admin_dsn = os.environ.get("HERALD_DB_DSN", DatabaseSettings().dsn)
        redis_url = os.environ.get("HERALD_REDIS_URL", "redis://127.0.0.1:6379/0")
        amqp_url = os.environ.get("HERALD_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/")
        for name, url in (("HERALD_DB_DSN", admin_dsn), ("HERALD_REDIS_URL", redis_url)):
            _require_loopback(name, url)
        _require_loopback("HERALD_AMQP_URL", amqp_url)
        run = f"{os.getpid()}-{uuid.uuid4().hex[:6]}"
        return cls(
            admin_dsn=admin_dsn,
            database=f"herald_bench_{run.replace('-', '_')}",
            redis_url=redis_url,
            prefix=f"bench:{run}:",
            amqp_url=amqp_url,
            namespace=f"bench-{run}",
            work=Path(tempfile.mkdtemp(prefix="herald-bench-")),
        )

    @property
    def dsn(self) -> str:
        return _dsn_for(self.admin_dsn, self.database)

    def process_env(self) -> dict[str, str]:
        """What every Herald or benchmark process gets: this run's resources, quiet logs,
        tracing off (the tracing scenarios turn it on) and generous default write budgets."""
        return {
            "HERALD_DB_DSN": self.dsn,
            "HERALD_REDIS_URL": self.redis_url,
            "HERALD_REDIS_KEY_PREFIX": self.prefix,
            "HERALD_AMQP_URL": self.amqp_url,
            "HERALD_AMQP_NAMESPACE": self.namespace,
            "HERALD_CURSOR_SECRET": CURSOR_SECRET,
            "HERALD_LOG_LEVEL": "WARNING",
            "HERALD_TRACE_ENABLED": "false",
            "HERALD_TRACE_DIR": str(self.work / "traces"),
            "HERALD_RATE_LIMIT_WRITE_PER_WINDOW": str(HIGH_LIMIT),
            "HERALD_RATE_LIMIT_ANONYMOUS_PER_WINDOW": str(HIGH_LIMIT),
            "HERALD_CONSUMER_HEALTH_PORT": "0",
            "HERALD_WORKER_JOBS_ENABLED": "false",
            "PYTHONPATH": str(Path(__file__).resolve().parents[1]),
        }

    async def create_database(self) -> None:
        conn = await asyncpg.connect(self.admin_dsn)
        try:
            await conn.execute(f'CREATE DATABASE "{self.database}"')
        finally:
            await conn.close()
        await upgrade(self.dsn)

    async def cleanup(self, *, keep_work: bool = False) -> list[str]:
        """Drop the database, delete the keys and the namespace; returns what was left over."""
        problems: list[str] = []
        conn = await asyncpg.connect(self.admin_dsn)
        try:
            await conn.execute(f'DROP DATABASE IF EXISTS "{self.database}" WITH (FORCE)')
        finally:
            await conn.close()
        client = redis.Redis.from_url(self.redis_url)
        try:
            async for key in client.scan_iter(match=f"{self.prefix}*", count=1000):
                await client.delete(key)
            if [k async for k in client.scan_iter(match=f"{self.prefix}*", count=1000)]:
                problems.append(f"Redis keys under {self.prefix} are left")
        finally:
            await client.aclose()
        await delete_namespace(self.amqp_url, self.namespace)
        queues, exchanges = broker_names(self.namespace)
        if queues or exchanges:
            problems.append(f"broker objects left: {queues + exchanges}")
        if vhost_exists(self.namespace):
            problems.append(f"RabbitMQ virtual host {self.namespace} is left")
        if not keep_work:
            shutil.rmtree(self.work, ignore_errors=True)
        return problems


def _rabbitmqctl(*args: str) -> str:
    return subprocess.run(  # noqa: S603
        ["rabbitmqctl", "-q", *args],  # noqa: S607
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    ).stdout


@contextlib.contextmanager
def private_vhost(amqp_url: str, name: str) -> Iterator[str]:
    """A RabbitMQ virtual host of the run's own, for a client (Celery) that declares broker-wide
    names of its own (``celery_delayed_*``); deleting the vhost removes everything in it.
    Yields the AMQP URL of the vhost."""
    parts = urlsplit(amqp_url)
    _rabbitmqctl("add_vhost", name)
    try:
        _rabbitmqctl(
            "set_permissions", "-p", name, unquote(parts.username or "guest"), ".*", ".*", ".*"
        )
        yield urlunsplit(parts._replace(path="/" + quote(name, safe="")))
    finally:
        _rabbitmqctl("delete_vhost", name)


def vhost_exists(name: str) -> bool:
    try:
        return name in _rabbitmqctl("list_vhosts", "name").split()
    except (OSError, subprocess.SubprocessError):
        return False


def broker_names(namespace: str) -> tuple[list[str], list[str]]:
    """Queues and exchanges whose names start with ``namespace.`` (asked of rabbitmqctl)."""

    def names(kind: str) -> list[str]:
        try:
            out = _rabbitmqctl(f"list_{kind}", "name")
        except (OSError, subprocess.SubprocessError):
            return []
        return [n for n in out.split() if n.startswith(f"{namespace}.")]

    return names("queues"), names("exchanges")


async def delete_namespace(amqp_url: str, namespace: str) -> None:
    """Delete every queue and exchange of the namespace."""
    queues, exchanges = broker_names(namespace)
    connection = await aio_pika.connect(amqp_url)
    try:
        for name in queues:
            channel = await connection.channel()
            with contextlib.suppress(aiormq.exceptions.AMQPError):
                await channel.queue_delete(name)
            with contextlib.suppress(aiormq.exceptions.AMQPError):
                await channel.close()
        for name in exchanges:
            channel = await connection.channel()
            with contextlib.suppress(aiormq.exceptions.AMQPError):
                await channel.exchange_delete(name)
            with contextlib.suppress(aiormq.exceptions.AMQPError):
                await channel.close()
    finally:
        await connection.close()


async def purge_queues(amqp_url: str, names: list[str]) -> None:
    """Empty queues of the run's namespace (missing ones are skipped)."""
    connection = await aio_pika.connect(amqp_url)
    try:
        for name in names:
            channel = await connection.channel()
            with contextlib.suppress(aiormq.exceptions.AMQPError):
                queue = await channel.get_queue(name, ensure=True)
                await queue.purge()
            with contextlib.suppress(aiormq.exceptions.AMQPError):
                await channel.close()
    finally:
        await connection.close()
