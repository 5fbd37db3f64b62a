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
    async with create_database(settings.db, application_name="herald-worker") as db:
        yield Deps(settings=settings, db=db)
