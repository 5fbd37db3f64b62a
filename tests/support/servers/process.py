"""A server binary run as a process group of its own, and the directories and ports it uses.

Every private server (PostgreSQL, PgBouncer, Redis, RabbitMQ) is one ``ServerProcess``: started
with ``start_new_session`` so that a signal reaches the server and every child it forked (the
postmaster's backends, the Erlang VM's port programs) at once, as a machine crash or a frozen
host would. ``kill`` is SIGKILL of the whole group, ``pause``/``resume`` SIGSTOP/SIGCONT, and
``stop`` a graceful signal followed by SIGKILL after a deadline. Servers that refuse to run as
root (PostgreSQL, PgBouncer) run as an unprivileged OS user, in directories that user owns.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import pwd
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

from tests.support.waiting import wait_until

#: How long a server may take to exit after SIGKILL (the kernel reaps it; this is generous).
_KILL_SECONDS = 10.0


def service_user(name: str) -> pwd.struct_passwd | None:
    """The OS user a root process should run ``name``'s server as; None when not root (the
    server then runs as the current user) or when no such user exists."""
    if os.geteuid() != 0:
        return None
    try:
        return pwd.getpwnam(name)
    except KeyError:
        return None


def private_dir(prefix: str, owner: pwd.struct_passwd | None = None) -> Path:
    """A new temporary directory; readable by ``owner`` when given (and owned by it)."""
    path = Path(tempfile.mkdtemp(prefix=prefix))
    if owner is not None:
        path.chmod(0o755)
        os.chown(path, owner.pw_uid, owner.pw_gid)
    return path


def owned_dir(path: Path, owner: pwd.struct_passwd | None, mode: int = 0o700) -> Path:
    """Create ``path`` (owned by ``owner`` when given) and return it."""
    path.mkdir(parents=True, exist_ok=True)
    path.chmod(mode)
    if owner is not None:
        os.chown(path, owner.pw_uid, owner.pw_gid)
    return path


def write_owned(path: Path, text: str, owner: pwd.struct_passwd | None, mode: int = 0o600) -> Path:
    path.write_text(text)
    path.chmod(mode)
    if owner is not None:
        os.chown(path, owner.pw_uid, owner.pw_gid)
    return path


def remove_dir(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)


def run_as(
    args: Sequence[str],
    *,
    user: pwd.struct_passwd | None = None,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
    timeout: float = 60.0,
) -> str:
    """Run a short command (``initdb``, ``redis-cli``) to completion; its output, or an
    ``AssertionError`` carrying the output when it fails."""
    result = subprocess.run(
        list(args),
        user=user.pw_uid if user else None,
        group=user.pw_gid if user else None,
        env={**os.environ, **(env or {})},
        cwd=cwd,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    if result.returncode != 0:
        raise AssertionError(
            f"{args[0]} exited with {result.returncode}:\n{result.stdout}\n{result.stderr}"
        )
    return result.stdout


class ServerProcess:
    """One server binary: start, stop, SIGKILL, SIGSTOP/SIGCONT, all of its process group."""

    def __init__(
        self,
        label: str,
        args: Sequence[str],
        *,
        log_path: Path,
        user: pwd.struct_passwd | None = None,
        env: Mapping[str, str] | None = None,
        cwd: Path | None = None,
        stop_signal: int = signal.SIGTERM,
    ) -> None:
        self.label = label
        self.args = list(args)
        self.log_path = log_path
        self.user = user
        self.env = dict(env or {})
        self.cwd = cwd
        self.stop_signal = stop_signal
        self._process: subprocess.Popen[bytes] | None = None
        self.paused = False

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process is not None else None

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def start(self) -> None:
        """Start the binary (appending to its log, so a restart's lines follow the crash's)."""
        if self.running:
            raise RuntimeError(f"{self.label} is already running")
        with open(self.log_path, "ab") as log:
            self._process = subprocess.Popen(
                self.args,
                user=self.user.pw_uid if self.user else None,
                group=self.user.pw_gid if self.user else None,
                env={**os.environ, **self.env},
                cwd=self.cwd,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self.paused = False

    def check_running(self) -> None:
        """Fail, with the end of its log, if the server has exited."""
        if self._process is not None and self._process.poll() is not None:
            raise AssertionError(
                f"{self.label} exited with {self._process.returncode}:\n{self.log_tail()}"
            )

    def signal_group(self, sig: int) -> None:
        if self._process is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self._process.pid, sig)

    async def kill(self) -> None:
        """SIGKILL the server and every process of its group; return once it has exited."""
        if self._process is None:
            return
        self.signal_group(signal.SIGKILL)
        await self._wait_exit(_KILL_SECONDS)
        # Children of the group outlive their parent for a moment: wait until none is left,
        # so a restart on the same port or data directory never meets one.
        await wait_until(
            self._group_gone, seconds=_KILL_SECONDS, message=f"{self.label}'s group lingers"
        )
        self.paused = False

    async def stop(self, seconds: float = 20.0) -> int | None:
        """The graceful stop signal, then SIGKILL after ``seconds``; the exit code."""
        if self._process is None or self._process.poll() is not None:
            return self._process.returncode if self._process else None
        if self.paused:
            self.resume()
        self.signal_group(self.stop_signal)
        try:
            await self._wait_exit(seconds)
        except AssertionError:
            await self.kill()
        return self._process.returncode

    def pause(self) -> None:
        """SIGSTOP the group: connections stay open, nothing answers (a frozen host)."""
        self.signal_group(signal.SIGSTOP)
        self.paused = True

    def resume(self) -> None:
        self.signal_group(signal.SIGCONT)
        self.paused = False

    def log_tail(self, lines: int = 40) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return "(no log)"
        return "\n".join(text.splitlines()[-lines:])

    async def _wait_exit(self, seconds: float) -> None:
        process = self._process
        assert process is not None

        async def exited() -> bool:
            return process.poll() is not None

        await wait_until(exited, seconds=seconds, interval=0.02, message=f"{self.label} lives on")

    async def _group_gone(self) -> bool:
        assert self._process is not None
        try:
            os.killpg(self._process.pid, 0)
        except ProcessLookupError:
            return True
        except PermissionError:
            return False
        return False


async def wait_for_port(server: ServerProcess, port: int, *, seconds: float) -> float:
    """Wait until ``port`` accepts connections (failing early if ``server`` exits); returns
    how long it took."""
    started = time.monotonic()

    async def accepting() -> bool:
        server.check_running()
        try:
            _, writer = await asyncio.open_connection("127.0.0.1", port)
        except OSError:
            return False
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()
        return True

    await wait_until(
        accepting, seconds=seconds, interval=0.05, message=f"{server.label} never listened"
    )
    return time.monotonic() - started
