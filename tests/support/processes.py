"""Starting and stopping real processes in tests, each in its own process group, and the
``ServiceProcess`` a test holds for one it started."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.support.waiting import wait_until

ROOT = Path(__file__).resolve().parents[2]
#: Where this environment's commands are (``herald``, ``herald-worker``, …).
BIN = Path(sys.executable).parent
STOP_SECONDS = 15.0


def start_process(
    args: list[str], env: Mapping[str, str], *, log_path: Path | None = None
) -> subprocess.Popen[bytes]:
    """Start ``python args…`` in a new process group, with ``env`` over the current environment."""
    with contextlib.ExitStack() as files:
        # The child keeps its own copy of the log's descriptor; ours is closed on return.
        output = files.enter_context(open(log_path, "wb")) if log_path else subprocess.DEVNULL
        return subprocess.Popen(
            [sys.executable, *args],
            cwd=ROOT,
            env={**os.environ, **env},
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def kill_group(process: subprocess.Popen[bytes], sig: int = signal.SIGKILL) -> None:
    """Signal the whole process group; ignore one that is already gone."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, sig)


def stop_process(process: subprocess.Popen[bytes], timeout: float = 30.0) -> int:
    """SIGTERM, wait up to ``timeout``, then SIGKILL the group; returns the exit code."""
    kill_group(process, signal.SIGTERM)
    try:
        return process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        kill_group(process)
        return process.wait(timeout=10)


@dataclass(slots=True)
class ServiceProcess:
    """A real process started by a test, in a process group of its own, logging to a file."""

    label: str
    process: subprocess.Popen[bytes]
    log_path: Path

    @property
    def pid(self) -> int:
        return self.process.pid

    def log_tail(self, lines: int = 40) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return "(no log)"
        return "\n".join(text.splitlines()[-lines:])

    def log_lines(self) -> list[dict[str, Any]]:
        """The JSON log records written so far (lines that are not JSON are skipped)."""
        records = []
        with contextlib.suppress(FileNotFoundError):
            for line in self.log_path.read_text(errors="replace").splitlines():
                with contextlib.suppress(ValueError):
                    records.append(json.loads(line))
        return records

    def check_running(self) -> None:
        """Fail, with the end of the log, if the process has already exited."""
        code = self.process.poll()
        if code is not None:
            raise AssertionError(f"{self.label} exited early with {code}:\n{self.log_tail()}")

    async def health_url(self, seconds: float = 30.0) -> str:
        """Where the service's /livez, /readyz and /metrics listen, as its log says (it must log
        at INFO, as JSON). Read from the log, the port can be one the system chose (port 0),
        which no other process can hold."""
        return await self._listening("health endpoint listening", seconds)

    async def metrics_url(self, seconds: float = 30.0) -> str:
        """Where the API's /metrics listens (its metrics port), as its log says."""
        return await self._listening("metrics endpoint listening", seconds)

    async def _listening(self, event: str, seconds: float) -> str:
        listening: dict[str, Any] = {}

        async def logged() -> bool:
            self.check_running()
            for record in self.log_lines():
                if record.get("event") == event:
                    listening.update(record)
                    return True
            return False

        await wait_until(logged, seconds=seconds, message=f"{self.label} never listened")
        return f"http://{listening['host']}:{listening['port']}"

    async def wait_exit(self, seconds: float) -> int:
        """The exit code, once the process has exited (fails after ``seconds``)."""

        async def exited() -> bool:
            return self.process.poll() is not None

        await wait_until(exited, seconds=seconds, message=f"{self.label} did not exit")
        code = self.process.returncode
        assert code is not None
        return code

    async def terminate(self, seconds: float = STOP_SECONDS) -> int:
        """SIGTERM the group and wait for the exit code."""
        kill_group(self.process, signal.SIGTERM)
        return await self.wait_exit(seconds)

    async def stop(self, seconds: float = STOP_SECONDS) -> int:
        """``terminate`` unless it has exited already; the exit code either way."""
        code = self.process.poll()
        return code if code is not None else await self.terminate(seconds)
