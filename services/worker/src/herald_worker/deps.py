"""The worker's composition root: every client its handlers and jobs use, created once."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

from herald_shared.db import Database, create_database
from herald_worker.settings import Settings


@dataclass(frozen=True, slots=True)
class Deps:
    settings: Settings
    db: Database


@asynccontextmanager
async def create_deps(settings: Settings) -> AsyncIterator[Deps]:
    # Each handler in flight holds a connection for its inbox transaction; leave headroom for
    # the periodic jobs and handlers that need a second connection.
    pool_size = max(
        settings.db.pool_max_size,
        2 * settings.consumer.concurrency + settings.webhooks.concurrency + 4,
    )
    db_settings = settings.db.model_copy(update={"pool_max_size": pool_size})
    async with create_database(db_settings, application_name="herald-worker") as db:
        yield Deps(settings=settings, db=db)
