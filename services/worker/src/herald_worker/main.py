"""``herald-worker``: consume events and run periodic jobs until SIGTERM."""

from __future__ import annotations

from datetime import timedelta

import typer

from herald_shared.background import Job
from herald_shared.messaging.consumer import Consumer
from herald_shared.messaging.options import (
    Concurrency,
    Grace,
    Prefetch,
    health_address,
    start_service,
)
from herald_shared.messaging.service import serve
from herald_shared.relay import OutboxRelay
from herald_worker.deps import create_deps
from herald_worker.handlers import handler_table
from herald_worker.jobs.cleanup import cleanup_jobs
from herald_worker.jobs.periodic import run_periodic_jobs
from herald_worker.settings import Settings
from herald_worker.webhooks import run_deliveries

CONSUMER_NAME = "worker"
HEALTH_PORT = 9101
app = typer.Typer(add_completion=False)


async def run(settings: Settings) -> None:
    async with create_deps(settings) as deps:
        # Handlers emit post.enriched and the delivery loop webhook.disabled through the outbox;
        # this process publishes them itself, woken after each commit that wrote one.
        relay = OutboxRelay(deps.db.primary, settings.amqp, settings.relay, name="herald-worker")
        consumer = Consumer(
            CONSUMER_NAME,
            handler_table(),
            db=deps.db,
            amqp=settings.amqp,
            settings=settings.consumer,
            after_commit=relay.wake,
        )
        background: list[Job] = [relay.run]
        background.append(
            lambda stop: run_deliveries(deps, settings.webhooks, stop, events_committed=relay.wake)
        )
        if settings.worker.jobs_enabled:
            jobs = cleanup_jobs(
                every=timedelta(seconds=settings.worker.cleanup_every_seconds),
                outbox_retention=timedelta(hours=settings.worker.outbox_retention_hours),
                inbox_retention=timedelta(hours=settings.worker.inbox_retention_hours),
                delivery_retention=timedelta(days=settings.worker.delivery_retention_days),
            )
            tick = settings.worker.jobs_tick_seconds
            background.append(
                lambda stop: run_periodic_jobs(deps.db.primary, jobs, stop, tick=tick)
            )
        await serve(consumer, background, health=health_address(settings.consumer, HEALTH_PORT))


@app.command()
def main(concurrency: Concurrency = None, prefetch: Prefetch = None, grace: Grace = None) -> None:
    """Run a worker process. Start more processes (or replicas) to consume faster."""
    start_service(
        "herald-worker", Settings(), run, concurrency=concurrency, prefetch=prefetch, grace=grace
    )
