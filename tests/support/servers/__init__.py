"""Private servers started from the installed binaries, for tests that crash or restart them.

Each runs on free loopback ports with its own data directory under a temporary directory, can
be SIGKILLed and restarted on the same port, paused (SIGSTOP) and resumed, and ``close()``
leaves no process or directory behind. The machine's shared servers are never touched.
"""

from tests.support.servers.pgbouncer import PrivatePgBouncer
from tests.support.servers.postgres import PrivatePostgres
from tests.support.servers.process import ServerProcess
from tests.support.servers.rabbitmq import PrivateRabbitMQ
from tests.support.servers.redis import PrivateRedis, PrivateRedisCluster

__all__ = [
    "PrivatePgBouncer",
    "PrivatePostgres",
    "PrivateRabbitMQ",
    "PrivateRedis",
    "PrivateRedisCluster",
    "ServerProcess",
]
