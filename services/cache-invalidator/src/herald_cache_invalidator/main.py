"""``herald-cache-invalidator``: apply post events to the Redis cache until SIGTERM."""

from __future__ import annotations

import dataclasses

import typer
import uvloop

from herald_cache_invalidator.deps import create_deps
from herald_cache_invalidator.handlers import handler_table
from herald_cache_invalidator.settings import Settings
from herald_shared.logs import configure_logging
from herald_shared.messaging.consumer import Consumer
from herald_shared.messaging.options import Concurrency, Grace, Prefetch, with_overrides
from herald_shared.messaging.service import serve
from herald_shared.telemetry import configure_tracing

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
        port = settings.consumer.health_port
        health = (settings.consumer.health_host, HEALTH_PORT if port is None else port)
        await serve(consumer, health=health)


@app.command()
def main(concurrency: Concurrency = None, prefetch: Prefetch = None, grace: Grace = None) -> None:
    """Run a cache-invalidator process."""
    settings = Settings()
    consumer = with_overrides(
        settings.consumer, concurrency=concurrency, prefetch=prefetch, grace=grace
    )
    settings = dataclasses.replace(settings, consumer=consumer)
    configure_logging("herald-cache-invalidator", settings.log)
    configure_tracing("herald-cache-invalidator", settings.telemetry)
    uvloop.run(run(settings))
