"""A private Redis server, and a private three-master Redis Cluster, from ``redis-server``.

``PrivateRedis.create()`` starts ``redis-server`` on a free loopback port with no persistence
(a restart after SIGKILL comes back empty, as a cache node does). ``PrivateRedisCluster.create()``
starts three such nodes with ``cluster-enabled yes``, assigns every slot with
``redis-cli --cluster create`` and waits for ``cluster_state:ok`` on each.
"""

from __future__ import annotations

import asyncio
import shutil
import time
from pathlib import Path

import redis.asyncio as redis
from redis.exceptions import RedisError

from tests.support.network import free_port
from tests.support.servers.process import (
    ServerProcess,
    owned_dir,
    private_dir,
    remove_dir,
    run_as,
)
from tests.support.waiting import wait_until

START_SECONDS = 20.0
#: A cluster node also listens on its port + 10000 (the cluster bus).
CLUSTER_BUS_OFFSET = 10000


def redis_binary(name: str = "redis-server") -> str:
    found = shutil.which(name)
    if found is None:
        raise FileNotFoundError(f"{name} is not installed")
    return found


class PrivateRedis:
    """One Redis server of a test's own. Use ``create()``."""

    def __init__(self, root: Path, *, port: int, cluster: bool = False) -> None:
        self.root = root
        self.port = port
        self.cluster = cluster
        args = [
            redis_binary(),
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--dir",
            str(root),
            "--save",
            "",
            "--appendonly",
            "no",
            "--daemonize",
            "no",
            "--loglevel",
            "warning",
        ]
        if cluster:
            args += [
                "--cluster-enabled",
                "yes",
                "--cluster-config-file",
                str(root / "nodes.conf"),
                "--cluster-node-timeout",
                "2000",
            ]
        self.process = ServerProcess(f"redis:{port}", args, log_path=root / "redis.log")
        self.last_start_seconds = 0.0

    @classmethod
    async def create(cls, *, parent: Path | None = None, cluster: bool = False) -> PrivateRedis:
        """Start a server on a free port, in a new directory (under ``parent`` when given)."""
        port = free_port(offsets=(CLUSTER_BUS_OFFSET,) if cluster else ())
        root = owned_dir(parent / str(port), None) if parent else private_dir("herald-redis-")
        server = cls(root, port=port, cluster=cluster)
        try:
            await server.start()
        except BaseException:
            await server.process.kill()
            remove_dir(root)
            raise
        return server

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    @property
    def running(self) -> bool:
        return self.process.running

    def client(self) -> redis.Redis:
        return redis.Redis.from_url(self.url, socket_timeout=5, socket_connect_timeout=5)

    async def start(self) -> float:
        started = time.monotonic()
        self.process.start()
        await wait_until(
            self._answers,
            seconds=START_SECONDS,
            interval=0.02,
            message=f"{self.process.label} never answered",
        )
        self.last_start_seconds = time.monotonic() - started
        return self.last_start_seconds

    async def kill(self) -> None:
        await self.process.kill()

    async def restart(self) -> float:
        if self.process.running:
            await self.process.stop()
        return await self.start()

    def pause(self) -> None:
        self.process.pause()

    def resume(self) -> None:
        self.process.resume()

    async def close(self) -> None:
        await self.process.kill()
        remove_dir(self.root)

    async def _answers(self) -> bool:
        self.process.check_running()
        client = self.client()
        try:
            return bool(await client.ping())
        except (RedisError, OSError):
            return False
        finally:
            await client.aclose()


class PrivateRedisCluster:
    """Three Redis masters on private ports sharing every hash slot. Use ``create()``."""

    def __init__(self, root: Path, nodes: list[PrivateRedis]) -> None:
        self.root = root
        self.nodes = nodes

    @classmethod
    async def create(cls, masters: int = 3) -> PrivateRedisCluster:
        root = private_dir("herald-redis-cluster-")
        nodes: list[PrivateRedis] = []
        cluster = cls(root, nodes)
        try:
            for _ in range(masters):
                nodes.append(await PrivateRedis.create(parent=root, cluster=True))
            await asyncio.to_thread(
                run_as,
                [
                    redis_binary("redis-cli"),
                    "--cluster",
                    "create",
                    *(f"127.0.0.1:{node.port}" for node in nodes),
                    "--cluster-replicas",
                    "0",
                    "--cluster-yes",
                ],
            )
            await wait_until(
                cluster._ok,
                seconds=START_SECONDS,
                interval=0.1,
                message="the cluster never reached cluster_state:ok",
            )
        except BaseException:
            await cluster.close()
            raise
        return cluster

    @property
    def url(self) -> str:
        """A URL of one node; a cluster client discovers the others from it."""
        return self.nodes[0].url

    @property
    def startup_nodes(self) -> list[tuple[str, int]]:
        return [("127.0.0.1", node.port) for node in self.nodes]

    def client(self) -> redis.RedisCluster:
        return redis.RedisCluster(
            host="127.0.0.1", port=self.nodes[0].port, socket_timeout=5, socket_connect_timeout=5
        )

    async def close(self) -> None:
        for node in self.nodes:
            await node.process.kill()
        remove_dir(self.root)

    async def _ok(self) -> bool:
        for node in self.nodes:
            client = node.client()
            try:
                info = await client.execute_command("CLUSTER", "INFO")  # type: ignore[no-untyped-call]
            finally:
                await client.aclose()
            text = info.decode() if isinstance(info, bytes) else str(info)
            if "cluster_state:ok" not in text:
                return False
        return True
