"""The composition root: every I/O client the API uses is created here and passed down.

The lifespan yields a typed ``AppState``; routes receive it through the ``StateDep`` alias.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass
from typing import Annotated, TypedDict

from fastapi import Depends, FastAPI, Request

from herald_api.auth import KeyCache
from herald_api.cursors import CursorCodec
from herald_api.settings import Settings
from herald_shared.db import Database, create_database
from herald_shared.migrate import head_revision


@dataclass(frozen=True, slots=True)
class AppState:
    settings: Settings
    db: Database
    keys: KeyCache
    cursors: CursorCodec
    schema_head: str


class _LifespanState(TypedDict):
    herald: AppState


def create_lifespan(
    settings: Settings,
) -> Callable[[FastAPI], AbstractAsyncContextManager[_LifespanState]]:
    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[_LifespanState]:
        async with create_database(settings.db, application_name="herald-api") as db:
            yield {
                "herald": AppState(
                    settings=settings,
                    db=db,
                    keys=KeyCache(ttl_seconds=settings.server.auth_cache_ttl_seconds),
                    cursors=CursorCodec(settings.security.cursor_secret.get_secret_value()),
                    schema_head=head_revision(),
                )
            }

    return lifespan


def get_state(request: Request) -> AppState:
    state: AppState = request.state.herald
    return state


StateDep = Annotated[AppState, Depends(get_state)]
