"""Starting and stopping real service processes in tests, each in its own process group."""

from __future__ import annotations

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
    output = open(log_path, "wb") if log_path else subprocess.DEVNULL  # noqa: SIM115
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
    try:
        os.killpg(process.pid, sig)
    except ProcessLookupError:
        pass


def stop_process(process: subprocess.Popen[bytes], timeout: float = 30.0) -> int:
    """SIGTERM, wait up to ``timeout``, then SIGKILL the group; returns the exit code."""
    kill_group(process, signal.SIGTERM)
    try:
        return process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        kill_group(process)
        return process.wait(timeout=10)
