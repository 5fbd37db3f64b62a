"""Waiting on conditions with a deadline, instead of sleeping for a guessed time."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable


async def wait_until(
    condition: Callable[[], Awaitable[bool]],
    *,
    seconds: float,
    interval: float = 0.02,
    message: str = "condition not met",
) -> None:
    """Poll ``condition`` until it is true; fail with ``message`` once ``seconds`` pass."""
    deadline = time.monotonic() + seconds
    while not await condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"{message} within {seconds} s")
        await asyncio.sleep(interval)
