"""``herald-cache-invalidator``: apply post events to the Redis cache until SIGTERM."""

from __future__ import annotations

import typer

from herald_cache_invalidator.deps import create_deps
from herald_cache_invalidator.handlers import handler_table
from herald_cache_invalidator.settings import Settings
from herald_shared.messaging.consumer import Consumer
from herald_shared.messaging.options import (
    Concurrency,
    Grace,
    Prefetch,
    health_address,
    start_service,
)
from herald_shared.messaging.service import serve

CONSUMER_NAME = "cache-invalidator"
HEALTH_PORT = 9102
app = typer.Typer(add_completion=False)


async def run(settings: Settings) -> None:
    async with create_deps(settings) as deps:
        consumer = Consumer(
            CONSUMER_NAME,
            handler_table(deps),
            db=None,
            amqp=settings.amqp,
            settings=settings.consumer,
        )
        await serve(consumer, health=health_address(settings.consumer, HEALTH_PORT))


@app.command()
def main(concurrency: Concurrency = None, prefetch: Prefetch = None, grace: Grace = None) -> None:
    """Run a cache-invalidator process."""
    start_service(
        "herald-cache-invalidator",
        Settings(),
        run,
        concurrency=concurrency,
        prefetch=prefetch,
        grace=grace,
    )
