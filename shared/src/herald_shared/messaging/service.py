"""Running a consuming service: signals, the consumer, its background loops, clean exit.

SIGTERM or SIGINT sets the stop event: the consumer stops taking messages and drains; the
background loops (periodic jobs, relays) finish their current step. If any part fails, the
others are stopped too and the process exits non-zero so the supervisor restarts it.
"""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Sequence

import structlog

from herald_shared.background import Job
from herald_shared.health_server import serve_health
from herald_shared.messaging.consumer import Consumer
from herald_shared.telemetry import shutdown_tracing

_log = structlog.get_logger(__name__)


async def serve(
    consumer: Consumer,
    background: Sequence[Job] = (),
    *,
    health: tuple[str, int] | None = None,
) -> None:
    """Run the consumer and the ``background`` jobs until SIGTERM/SIGINT; ``health`` = (host,
    port) of /livez, /readyz and /metrics."""
    stop = asyncio.Event()
    if health is not None:
        host, port = health
        background = [
            *background,
            lambda stop: serve_health(
                host,
                port,
                ready=consumer.is_ready,
                refresh_metrics=consumer.refresh_metrics,
                stop=stop,
            ),
        ]
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    tasks = [asyncio.create_task(consumer.run(stop), name=f"consumer:{consumer.name}")]
    tasks += [
        asyncio.create_task(job(stop), name=f"background:{i}") for i, job in enumerate(background)
    ]
    try:
        done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        if not stop.is_set():
            failed = next(iter(done))
            _log.error("a service task ended unexpectedly", task=failed.get_name())
            stop.set()
        await asyncio.gather(*tasks, return_exceptions=True)
        for task in tasks:
            if not task.cancelled() and task.exception() is not None:
                raise task.exception()  # type: ignore[misc]
    finally:
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(sig)
        shutdown_tracing()
