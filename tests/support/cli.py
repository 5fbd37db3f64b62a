"""Running the ``herald`` operator command in tests: the real command in a process of its own,
or in-process for tests that patch what it reads (e.g. the event registry)."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Mapping, Sequence
from typing import NamedTuple

from typer.testing import CliRunner

from herald_cli.main import app
from tests.support.processes import BIN


class CliResult(NamedTuple):
    code: int
    out: str
    err: str

    @property
    def output(self) -> str:
        """Both streams, for assertion messages."""
        return self.out + self.err


async def run_herald(
    args: Sequence[str], env: Mapping[str, str] | None = None, *, seconds: float = 30.0
) -> CliResult:
    """Run ``herald args…`` with ``env`` over this process's environment."""
    process = await asyncio.create_subprocess_exec(
        str(BIN / "herald"),
        *args,
        env={**os.environ, **(env or {})},
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        async with asyncio.timeout(seconds):
            out, err = await process.communicate()
    except TimeoutError:
        process.kill()
        await process.wait()
        raise
    assert process.returncode is not None
    return CliResult(process.returncode, out.decode(), err.decode())


def invoke_herald(args: Sequence[str]) -> CliResult:
    """Run the command's app in this process (it sees this process's monkeypatches)."""
    result = CliRunner().invoke(app, list(args))
    return CliResult(result.exit_code, result.stdout, result.stderr)
