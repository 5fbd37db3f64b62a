"""A private PgBouncer (Debian's ``pgbouncer`` package) in transaction pool mode.

``PrivatePgBouncer.create(target_host, target_port)`` writes an ini and an auth file into a
temporary directory and starts ``pgbouncer`` on a free port in front of any PostgreSQL server
(a ``PrivatePostgres`` or a proxy before one); every database name is passed through, unless
``databases`` names the aliases (``herald = host=... dbname=...``), and ``settings`` may replace
the pooling settings (a deployment's own ini). What makes the instance private (its address,
pid file, trust authentication against its own auth file, admin user) is always its own.
PgBouncer refuses to run as root, so under root it runs as the ``postgres`` OS user (or
``nobody``).
"""

from __future__ import annotations

import asyncio
import csv
import io
import pwd
import shutil
import time
from collections.abc import Mapping
from pathlib import Path

from tests.support.network import free_port
from tests.support.servers.postgres import postgres_bindir
from tests.support.servers.process import (
    ServerProcess,
    private_dir,
    remove_dir,
    run_as,
    service_user,
    write_owned,
)
from tests.support.waiting import wait_until

START_SECONDS = 20.0

#: Startup parameters clients send that PgBouncer would otherwise refuse: asyncpg and psql
#: send some of them, and Herald outside PgBouncer sets the timeouts per connection.
IGNORED_STARTUP_PARAMETERS = (
    "extra_float_digits",
    "statement_timeout",
    "lock_timeout",
    "idle_in_transaction_session_timeout",
    "application_name",
)


def pgbouncer_binary() -> str:
    found = shutil.which("pgbouncer") or (
        "/usr/sbin/pgbouncer" if Path("/usr/sbin/pgbouncer").exists() else None
    )
    if found is None:
        raise FileNotFoundError("pgbouncer is not installed (make tools installs it)")
    return found


class PrivatePgBouncer:
    """PgBouncer of a test's own. Use ``create()``."""

    def __init__(
        self, root: Path, *, port: int, user: pwd.struct_passwd | None, binary: str
    ) -> None:
        self.root = root
        self.port = port
        self.user = user
        self.process = ServerProcess(
            "pgbouncer",
            [binary, str(root / "pgbouncer.ini")],
            log_path=root / "pgbouncer.log",
            user=user,
        )

    @classmethod
    async def create(
        cls,
        target_host: str,
        target_port: int,
        *,
        pool_size: int = 20,
        max_client_conn: int = 500,
        users: tuple[str, ...] = ("postgres",),
        databases: Mapping[str, str] | None = None,
        settings: Mapping[str, str] | None = None,
    ) -> PrivatePgBouncer:
        """Start PgBouncer in front of ``target_host:target_port`` (every database), or of
        ``databases`` (alias → connection string); ``settings`` replace the defaults of the
        ``[pgbouncer]`` section, except the instance's own address, files and authentication."""
        binary = pgbouncer_binary()
        user = service_user("postgres") or service_user("nobody")
        root = private_dir("herald-pgbouncer-", user)
        try:
            port = free_port()
            write_owned(root / "users.txt", "".join(f'"{name}" ""\n' for name in users), user)
            write_owned(
                root / "pgbouncer.ini",
                _ini(
                    root,
                    target_host=target_host,
                    target_port=target_port,
                    port=port,
                    pool_size=pool_size,
                    max_client_conn=max_client_conn,
                    admin=users[0],
                    databases=databases,
                    settings=settings,
                ),
                user,
            )
            bouncer = cls(root, port=port, user=user, binary=binary)
        except BaseException:
            remove_dir(root)
            raise
        try:
            await bouncer.start()
        except BaseException:
            await bouncer.close()
            raise
        return bouncer

    def dsn(self, database: str = "postgres", user: str = "postgres") -> str:
        return f"postgresql://{user}@127.0.0.1:{self.port}/{database}"

    async def start(self) -> float:
        started = time.monotonic()
        self.process.start()
        await wait_until(
            self._answers, seconds=START_SECONDS, interval=0.05, message="pgbouncer never answered"
        )
        return time.monotonic() - started

    async def kill(self) -> None:
        await self.process.kill()

    async def restart(self) -> float:
        if self.process.running:
            await self.process.stop()
        return await self.start()

    async def show(self, what: str) -> list[dict[str, str]]:
        """``SHOW <what>`` on the admin console (``pools``, ``stats``, ``clients``, ...), one
        dict per row. The console speaks only the simple query protocol, so this runs psql."""
        output = await asyncio.to_thread(
            run_as,
            [
                str(postgres_bindir() / "psql"),
                "--csv",
                "-X",
                "-h",
                "127.0.0.1",
                "-p",
                str(self.port),
                "-U",
                "postgres",
                "-d",
                "pgbouncer",
                "-c",
                f"SHOW {what}",
            ],
            timeout=10,
        )
        return list(csv.DictReader(io.StringIO(output)))

    async def close(self) -> None:
        await self.process.kill()
        remove_dir(self.root)

    async def _answers(self) -> bool:
        self.process.check_running()
        try:
            await self.show("version")
        except AssertionError:
            return False
        return True


#: What makes the instance private: never taken from ``settings``.
PRIVATE_SETTINGS = frozenset(
    {
        "listen_addr",
        "listen_port",
        "unix_socket_dir",
        "pidfile",
        "auth_type",
        "auth_file",
        "admin_users",
    }
)


def _ini(
    root: Path,
    *,
    target_host: str,
    target_port: int,
    port: int,
    pool_size: int,
    max_client_conn: int,
    admin: str,
    databases: Mapping[str, str] | None = None,
    settings: Mapping[str, str] | None = None,
) -> str:
    pooling = {
        "admin_users": admin,
        "pool_mode": "transaction",
        "default_pool_size": str(pool_size),
        "max_client_conn": str(max_client_conn),
        "ignore_startup_parameters": ",".join(IGNORED_STARTUP_PARAMETERS),
        "server_connect_timeout": "5",
        "server_login_retry": "1",
        "query_wait_timeout": "30",
    }
    if settings is not None:
        pooling = {
            name: value for name, value in settings.items() if name not in PRIVATE_SETTINGS
        } | {"admin_users": admin}
    aliases = databases or {"*": f"host={target_host} port={target_port}"}
    lines = ["[databases]", *(f"{name} = {value}" for name, value in aliases.items())]
    lines += [
        "",
        "[pgbouncer]",
        "listen_addr = 127.0.0.1",
        f"listen_port = {port}",
        "unix_socket_dir =",
        f"pidfile = {root}/pgbouncer.pid",
        "auth_type = trust",
        f"auth_file = {root}/users.txt",
        *(f"{name} = {value}" for name, value in pooling.items()),
    ]
    return "\n".join(lines) + "\n"
