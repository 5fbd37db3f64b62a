"""Background work with one lifecycle: start, signal stop, allow a grace period, cancel what is
still running, and wait for it.

A long-running job is an ``async def job(stop)`` that returns soon after ``stop`` is set (the
outbox relay, the webhook delivery loop, periodic jobs, the health endpoint). ``running`` runs
one for the duration of a block; ``finish`` ends a set of tasks that were already started (the
handlers or calls a loop has in flight).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable, Collection, Coroutine
from typing import Any

import structlog

_log = structlog.get_logger(__name__)

#: A job that runs until its ``stop`` event is set, then returns.
Job = Callable[[asyncio.Event], Coroutine[Any, Any, None]]

#: How long tasks get to unwind once cancelled (a cancelled handler hands its message back).
CANCEL_SECONDS = 5.0


async def finish(
    tasks: Collection[asyncio.Task[Any]],
    *,
    grace: float,
    cancel_seconds: float = CANCEL_SECONDS,
) -> set[asyncio.Task[Any]]:
    """Let ``tasks`` end within ``grace`` seconds, then cancel the rest and wait up to
    ``cancel_seconds`` for them to unwind. Returns the tasks that had to be cancelled.

    The caller tells the tasks to stop first (or they end by themselves); this only bounds the
    wait. It never raises what the tasks raised: their owners report that.
    """
    pending = {task for task in tasks if not task.done()}
    if not pending:
        return set()
    _, late = await asyncio.wait(pending, timeout=grace)
    for task in late:
        task.cancel()
    if late:
        _, stuck = await asyncio.wait(late, timeout=cancel_seconds)
        if stuck:
            _log.error(
                "tasks still running after cancellation",
                tasks=sorted(task.get_name() for task in stuck),
            )
    return late


@contextlib.asynccontextmanager
async def running(job: Job, *, name: str, grace: float) -> AsyncIterator[asyncio.Task[None]]:
    """Run ``job(stop)`` in a task while the block runs; on the way out set ``stop``, give the
    job ``grace`` seconds to return, then cancel it.

    A job that failed is not hidden: its exception is raised when the block ends.
    """
    stop = asyncio.Event()
    task = asyncio.create_task(job(stop), name=name)
    try:
        yield task
    finally:
        stop.set()
        if await finish([task], grace=grace):
            _log.warning("background job cut short", job=name, grace=grace)
        if task.done() and not task.cancelled() and (error := task.exception()) is not None:
            raise error
