"""A private RabbitMQ node from the installed ``rabbitmq-server``, beside the shared one.

The node has a name of its own (``rabbit-chaos-<id>@localhost``), its own AMQP and
distribution ports, and its database, logs, pid file, Erlang cookie (``HOME``), configuration
and an empty enabled-plugins file under a temporary directory: it never reads the machine's
``/etc/rabbitmq`` files and never tries to bind the management ports the shared node may use.
It registers with the machine's ``epmd`` like any node (epmd is the Erlang port mapper every
node shares; nothing else of the shared node is used). guest/guest may connect from loopback.

``kill`` (SIGKILL of the Erlang VM and its port programs) and ``restart`` keep the data
directory, so durable queues and persistent messages survive. Erlang is slow to boot: ``start``
waits for a real AMQP connection, and ``round_trip`` proves a quorum queue takes a confirmed
publish (wait for it after declaring quorum queues and before injecting a fault).
"""

from __future__ import annotations

import os
import time
import uuid
from pathlib import Path

import aio_pika
import aiormq
from aio_pika.abc import AbstractRobustConnection

from tests.support.network import free_port
from tests.support.servers.process import (
    ServerProcess,
    owned_dir,
    private_dir,
    remove_dir,
    write_owned,
)
from tests.support.waiting import wait_until

#: Boot takes about 8 s on a quiet two-core machine, restarts about 5 s.
START_SECONDS = 90.0
SERVER_SCRIPT = Path("/usr/lib/rabbitmq/bin/rabbitmq-server")
CTL_SCRIPT = Path("/usr/lib/rabbitmq/bin/rabbitmqctl")
#: RabbitMQ 3.10 loses a quorum queue for good when the node is SIGKILLed less than about a
#: second after the queue was declared (measured here: 0 s lost it, 1 s and 3 s kept it); no
#: client-visible signal says when it is safe, so faults wait this long after a declaration.
QUORUM_SETTLE_SECONDS = 2.0
#: Errors meaning "the node is not (yet) accepting AMQP".
_NOT_UP = (OSError, TimeoutError, aiormq.exceptions.AMQPError, ConnectionError)


class PrivateRabbitMQ:
    """One RabbitMQ node of a test's own. Use ``create()``."""

    def __init__(self, root: Path, *, port: int, dist_port: int, node_name: str) -> None:
        self.root = root
        self.port = port
        self.dist_port = dist_port
        self.node_name = node_name
        self.env = {
            "HOME": str(root),
            "RABBITMQ_CONF_ENV_FILE": str(root / "rabbitmq-env.conf"),
            "RABBITMQ_CONFIG_FILE": str(root / "rabbitmq.conf"),
            "RABBITMQ_ENABLED_PLUGINS_FILE": str(root / "enabled_plugins"),
            "RABBITMQ_NODENAME": node_name,
            "RABBITMQ_NODE_IP_ADDRESS": "127.0.0.1",
            "RABBITMQ_NODE_PORT": str(port),
            "RABBITMQ_DIST_PORT": str(dist_port),
            "RABBITMQ_MNESIA_BASE": str(root / "mnesia"),
            "RABBITMQ_LOG_BASE": str(root / "log"),
            "RABBITMQ_PID_FILE": str(root / "rabbitmq.pid"),
            "ERL_EPMD_ADDRESS": "127.0.0.1",
            "RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS": "-kernel inet_dist_use_interface {127,0,0,1}",
        }
        self.process = ServerProcess(
            f"rabbitmq:{port}",
            [str(SERVER_SCRIPT)],
            log_path=root / "server.log",
            env=self.env,
            cwd=root,
        )
        self.last_start_seconds = 0.0
        #: When the node last began accepting AMQP (``time.monotonic()``).
        self.started_at = 0.0
        #: When ``round_trip`` last declared a queue (``time.monotonic()``).
        self.declared_at = 0.0

    @classmethod
    async def create(cls) -> PrivateRabbitMQ:
        """Write the node's files into a new temporary directory and boot it."""
        if not os.access(SERVER_SCRIPT, os.X_OK):
            raise FileNotFoundError(f"{SERVER_SCRIPT} is not installed")
        root = private_dir("herald-rabbitmq-")
        port = free_port()
        dist_port = free_port(avoid=(port,))
        node = cls(
            root,
            port=port,
            dist_port=dist_port,
            node_name=f"rabbit-chaos-{uuid.uuid4().hex[:8]}@localhost",
        )
        try:
            owned_dir(root / "mnesia", None)
            owned_dir(root / "log", None)
            write_owned(root / "rabbitmq-env.conf", "", None)
            write_owned(root / "enabled_plugins", "[].\n", None)
            write_owned(
                root / "rabbitmq.conf",
                f"listeners.tcp.1 = 127.0.0.1:{port}\n"
                "loopback_users.guest = true\n"
                # A test machine's disk may be nearly full: never block publishers for it.
                "disk_free_limit.absolute = 1MB\n",
                None,
            )
            await node.start()
        except BaseException:
            await node.process.kill()
            remove_dir(root)
            raise
        return node

    @property
    def url(self) -> str:
        return f"amqp://guest:guest@127.0.0.1:{self.port}/"

    @property
    def running(self) -> bool:
        return self.process.running

    async def start(self) -> float:
        """Boot the node and wait until it accepts an AMQP connection; the seconds it took."""
        started = time.monotonic()
        self.process.start()
        await wait_until(
            self._accepts_amqp,
            seconds=START_SECONDS,
            interval=0.1,
            message=f"{self.node_name} never accepted AMQP",
        )
        self.started_at = time.monotonic()
        self.last_start_seconds = self.started_at - started
        return self.last_start_seconds

    async def kill(self) -> None:
        """SIGKILL the Erlang VM (and its port programs): no clean shutdown, data kept."""
        await self.process.kill()

    async def restart(self) -> float:
        if self.process.running:
            await self.process.stop()
        return await self.start()

    def pause(self) -> None:
        self.process.pause()

    def resume(self) -> None:
        self.process.resume()

    async def connect(self) -> AbstractRobustConnection:
        return await aio_pika.connect_robust(self.url, timeout=5)

    async def round_trip(self, queue: str | None = None, *, seconds: float = 30.0) -> None:
        """Declare a quorum queue, publish a persistent message with a confirm and get it
        back: the node and its quorum machinery are really serving. Before SIGKILLing the node
        after a declaration, also ``await settled()``."""
        name = queue or f"probe.{uuid.uuid4().hex[:8]}"

        async def served() -> bool:
            try:
                connection = await aio_pika.connect(self.url, timeout=5)
            except _NOT_UP:
                return False
            try:
                channel = await connection.channel()
                declared = await channel.declare_queue(
                    name, durable=True, arguments={"x-queue-type": "quorum"}
                )
                self.declared_at = time.monotonic()
                await channel.default_exchange.publish(
                    aio_pika.Message(b"probe", delivery_mode=aio_pika.DeliveryMode.PERSISTENT),
                    routing_key=name,
                    timeout=5,
                )
                message = await declared.get(timeout=5, fail=False)
                if message is None:
                    return False
                await message.ack()
                if queue is None:
                    await declared.delete(if_unused=False, if_empty=False)
                return True
            except _NOT_UP:
                return False
            finally:
                await connection.close()

        await wait_until(
            served, seconds=seconds, interval=0.2, message=f"{self.node_name} never round-tripped"
        )

    async def settled(self, declared_at: float | None = None) -> None:
        """Wait until ``QUORUM_SETTLE_SECONDS`` have passed since ``declared_at`` (default:
        the last ``round_trip``), so a SIGKILL cannot lose the quorum queues declared then."""
        since = self.declared_at if declared_at is None else declared_at

        async def old_enough() -> bool:
            return time.monotonic() - since >= QUORUM_SETTLE_SECONDS

        await wait_until(old_enough, seconds=QUORUM_SETTLE_SECONDS + 1, interval=0.05)

    async def close(self) -> None:
        await self.process.kill()
        remove_dir(self.root)

    async def _accepts_amqp(self) -> bool:
        self.process.check_running()
        try:
            connection = await aio_pika.connect(self.url, timeout=2)
        except _NOT_UP:
            return False
        await connection.close()
        return True
