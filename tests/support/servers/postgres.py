"""A private PostgreSQL server (and streaming replicas of it) from the installed binaries.

``PrivatePostgres.create()`` runs ``initdb`` into a temporary directory (trust authentication on
loopback, ``wal_level=replica``) and starts ``postgres`` on a free port; the machine's shared
server is never touched. It can be SIGKILLed and started again on the same port and data
directory (crash recovery, as after a power cut), paused and resumed, and stopped gracefully.
``create_replica()`` makes a streaming replica with ``pg_basebackup -R`` on its own port and a
replication slot of its own, with an optional ``recovery_min_apply_delay`` for real lag.
PostgreSQL refuses to run as root, so under root every binary runs as the ``postgres`` OS user,
in directories that user owns.
"""

from __future__ import annotations

import asyncio
import glob
import pwd
import shutil
import signal
import subprocess
import time
import uuid
from pathlib import Path

import asyncpg

from tests.support.network import free_port
from tests.support.servers.process import (
    ServerProcess,
    owned_dir,
    private_dir,
    remove_dir,
    run_as,
    service_user,
)
from tests.support.waiting import wait_until

START_SECONDS = 60.0

#: Settings for a disposable test server: no fsync (a SIGKILL is not an OS crash, so nothing
#: committed is lost without it), quick checkpoints, and the log on stderr.
_SERVER_SETTINGS: dict[str, str] = {
    "listen_addresses": "127.0.0.1",
    "wal_level": "replica",
    "max_wal_senders": "5",
    "fsync": "off",
    "synchronous_commit": "on",
    "full_page_writes": "off",
    "hot_standby": "on",
    "shared_buffers": "32MB",
    "max_connections": "100",
    "logging_collector": "off",
    "log_min_messages": "warning",
}


def postgres_bindir() -> Path:
    """Where ``initdb`` and ``postgres`` are: ``pg_config --bindir``, else the newest
    ``/usr/lib/postgresql/*/bin``."""
    pg_config = shutil.which("pg_config")
    if pg_config:
        bindir = Path(
            subprocess.run(
                [pg_config, "--bindir"], capture_output=True, text=True, check=True
            ).stdout.strip()
        )
        if (bindir / "initdb").exists():
            return bindir
    candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=_major_version)
    for candidate in reversed(candidates):
        if (Path(candidate) / "initdb").exists():
            return Path(candidate)
    raise FileNotFoundError("no PostgreSQL server binaries (initdb) installed")


def _major_version(path: str) -> int:
    part = Path(path).parent.name
    return int(part) if part.isdigit() else 0


class PrivatePostgres:
    """One PostgreSQL server of a test's own. Use ``create()`` or ``create_replica()``."""

    def __init__(
        self,
        root: Path,
        *,
        port: int,
        bindir: Path,
        user: pwd.struct_passwd | None,
        settings: dict[str, str],
        label: str = "postgres",
    ) -> None:
        self.root = root
        self.port = port
        self.bindir = bindir
        self.user = user
        self.data_dir = root / "data"
        self.settings = settings
        args = [str(bindir / "postgres"), "-D", str(self.data_dir), "-p", str(port)]
        args += [f"-c{name}={value}" for name, value in settings.items()]
        self.process = ServerProcess(
            label,
            args,
            log_path=root / "postgres.log",
            user=user,
            # SIGINT is PostgreSQL's "fast" shutdown: roll back sessions, checkpoint, exit.
            stop_signal=signal.SIGINT,
        )
        self.replicas: list[PrivatePostgres] = []
        #: Seconds the last start took until the server accepted a query.
        self.last_start_seconds = 0.0

    @classmethod
    async def create(
        cls, *, settings: dict[str, str] | None = None, label: str = "postgres"
    ) -> PrivatePostgres:
        """initdb into a new temporary directory and start the server on a free port."""
        user = service_user("postgres")
        bindir = postgres_bindir()
        root = private_dir("herald-pg-", user)
        try:
            owned_dir(root / "data", user)
            owned_dir(root / "sockets", user, 0o755)
            await asyncio.to_thread(
                run_as,
                [
                    str(bindir / "initdb"),
                    "-D",
                    str(root / "data"),
                    "--auth=trust",
                    "-U",
                    "postgres",
                    "-E",
                    "UTF8",
                    "--locale=C",
                    "--no-sync",
                    "--no-instructions",
                ],
                user=user,
            )
            server = cls(
                root,
                port=free_port(),
                bindir=bindir,
                user=user,
                settings=_settings(root, settings),
                label=label,
            )
        except BaseException:
            remove_dir(root)
            raise
        try:
            await server.start()
        except BaseException:
            await server.close()
            raise
        return server

    def dsn(self, database: str = "postgres", user: str = "postgres") -> str:
        return f"postgresql://{user}@127.0.0.1:{self.port}/{database}"

    @property
    def running(self) -> bool:
        return self.process.running

    async def start(self) -> float:
        """Start the server (after a kill it runs crash recovery first) and wait until it
        answers a query; returns how long that took."""
        started = time.monotonic()
        self.process.start()
        await wait_until(
            self._answers,
            seconds=START_SECONDS,
            interval=0.05,
            message=f"{self.process.label} never answered",
        )
        self.last_start_seconds = time.monotonic() - started
        return self.last_start_seconds

    async def kill(self) -> None:
        """SIGKILL the postmaster and every backend at once."""
        await self.process.kill()

    async def restart(self) -> float:
        """Start again on the same port and data directory after ``kill`` or ``stop``."""
        if self.process.running:
            await self.process.stop()
        return await self.start()

    async def stop(self) -> None:
        """A fast shutdown (sessions rolled back, a checkpoint written)."""
        await self.process.stop()

    def pause(self) -> None:
        """SIGSTOP every process: connections stay open and nothing answers."""
        self.process.pause()

    def resume(self) -> None:
        self.process.resume()

    async def connect(self, database: str = "postgres") -> asyncpg.Connection:
        return await asyncpg.connect(self.dsn(database), timeout=5)

    async def execute(self, sql: str, database: str = "postgres") -> None:
        conn = await self.connect(database)
        try:
            await conn.execute(sql)
        finally:
            await conn.close()

    async def create_database(self, name: str, *, template: str | None = None) -> str:
        """Create a database (from ``template`` when given); returns its DSN."""
        clause = f' TEMPLATE "{template}"' if template else ""
        await self.execute(f'CREATE DATABASE "{name}"{clause}')
        return self.dsn(name)

    async def drop_database(self, name: str) -> None:
        await self.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    async def current_lsn(self) -> str:
        """The primary's current WAL write position (``pg_current_wal_lsn()``)."""
        conn = await self.connect()
        try:
            lsn: str = await conn.fetchval("SELECT pg_current_wal_lsn()::text")
        finally:
            await conn.close()
        return lsn

    async def create_replica(
        self, *, apply_delay_seconds: float = 0.0, label: str = "replica"
    ) -> PrivatePostgres:
        """A streaming replica of this server, from ``pg_basebackup -R``, on its own port;
        each transaction is applied ``apply_delay_seconds`` after its commit on the primary."""
        root = private_dir("herald-pg-replica-", self.user)
        try:
            owned_dir(root / "data", self.user)
            owned_dir(root / "sockets", self.user, 0o755)
            await asyncio.to_thread(
                run_as,
                [
                    str(self.bindir / "pg_basebackup"),
                    "-h",
                    "127.0.0.1",
                    "-p",
                    str(self.port),
                    "-U",
                    "postgres",
                    "-D",
                    str(root / "data"),
                    "-R",
                    "-X",
                    "stream",
                    # A slot of its own: the primary keeps the WAL the replica has not received,
                    # however far behind it falls (pg_basebackup writes primary_slot_name).
                    "--create-slot",
                    f"--slot=herald_replica_{uuid.uuid4().hex[:8]}",
                    "--checkpoint=fast",
                    "--no-sync",
                ],
                user=self.user,
            )
            delay = {"recovery_min_apply_delay": f"{round(apply_delay_seconds * 1000)}ms"}
            replica = PrivatePostgres(
                root,
                port=free_port(),
                bindir=self.bindir,
                user=self.user,
                settings=_settings(root, delay),
                label=label,
            )
        except BaseException:
            remove_dir(root)
            raise
        try:
            await replica.start()
        except BaseException:
            await replica.close()
            raise
        self.replicas.append(replica)
        return replica

    async def replay_lsn(self) -> str | None:
        """On a replica: the last WAL position replayed (None on a primary)."""
        conn = await self.connect()
        try:
            lsn = await conn.fetchval("SELECT pg_last_wal_replay_lsn()::text")
        finally:
            await conn.close()
        return None if lsn is None else str(lsn)

    async def lag_bytes(self, primary: PrivatePostgres) -> int:
        """On a replica: how many bytes of the primary's WAL it has not replayed yet."""
        target = await primary.current_lsn()
        conn = await self.connect()
        try:
            lag = await conn.fetchval(
                "SELECT pg_wal_lsn_diff($1::text::pg_lsn, pg_last_wal_replay_lsn())", target
            )
        finally:
            await conn.close()
        return max(0, int(lag))

    async def replay_delay_seconds(self) -> float | None:
        """On a replica: seconds since the last replayed transaction committed on the primary
        (None before it has replayed one)."""
        conn = await self.connect()
        try:
            delay = await conn.fetchval(
                "SELECT extract(epoch FROM clock_timestamp() - pg_last_xact_replay_timestamp())"
            )
        finally:
            await conn.close()
        return None if delay is None else float(delay)

    async def wait_replayed(self, lsn: str, *, seconds: float = 30.0) -> None:
        """On a replica: wait until it has replayed the primary's WAL up to ``lsn``."""

        async def replayed() -> bool:
            conn = await self.connect()
            try:
                done: bool = await conn.fetchval(
                    "SELECT pg_last_wal_replay_lsn() >= $1::text::pg_lsn", lsn
                )
            finally:
                await conn.close()
            return done

        await wait_until(
            replayed, seconds=seconds, interval=0.05, message=f"{self.process.label} behind {lsn}"
        )

    async def close(self) -> None:
        """Kill this server and its replicas and remove their directories."""
        for replica in self.replicas:
            await replica.close()
        self.replicas.clear()
        await self.process.kill()
        remove_dir(self.root)

    async def _answers(self) -> bool:
        self.process.check_running()
        try:
            conn = await asyncpg.connect(self.dsn(), timeout=2)
        except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError):
            return False
        try:
            await conn.fetchval("SELECT 1")
        finally:
            await conn.close()
        return True


def _settings(root: Path, extra: dict[str, str] | None) -> dict[str, str]:
    return {**_SERVER_SETTINGS, "unix_socket_directories": str(root / "sockets"), **(extra or {})}
