"""Starting and stopping real service processes in tests, each in its own process group."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


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
