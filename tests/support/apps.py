"""The API in-process, its lifespan running, behind an HTTP client, with per-request state.

``asgi_lifespan.LifespanManager`` hands every request the *same* lifespan ``state`` dict, where
a real ASGI server (uvicorn) gives each request a shallow copy. The app keeps per-request values
(the request id, the account) in ``scope["state"]``, so concurrent in-process requests would
overwrite each other's. ``running_api`` copies the state per request, as uvicorn does, and keeps
the app's own ``AppState`` in reach for tests that observe it from outside.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import httpx
from asgi_lifespan import LifespanManager
from starlette.types import ASGIApp, Receive, Scope, Send

from herald_api.app import create_app
from herald_api.lifespan import AppState
from herald_api.settings import Settings


class CopyStatePerRequest:
    """Gives each HTTP request its own shallow copy of ``scope["state"]``.

    Wrap the app in it *before* handing it to ``LifespanManager``. Wrapping
    ``LifespanManager(app).app`` from outside does not work: the manager sets the shared
    state dict on the scope after this wrapper would have copied it.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and "state" in scope:
            scope = {**scope, "state": dict(scope["state"])}
        await self.app(scope, receive, send)


class _CaptureLifespanState:
    """Keeps a reference to the lifespan's state dict, which the app fills at start-up."""

    def __init__(self, app: ASGIApp, into: dict[str, Any]) -> None:
        self.app = app
        self.into = into

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            self.into["state"] = scope["state"]
        await self.app(scope, receive, send)


def http_client(app: ASGIApp, client_ip: str) -> httpx.AsyncClient:
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False, client=(client_ip, 50_000))
    return httpx.AsyncClient(transport=transport, base_url="http://herald.test")


@dataclass(frozen=True, slots=True)
class RunningApi:
    http: httpx.AsyncClient
    #: The app's own clients (pool, Redis breaker, ...), for observing it from outside.
    state: AppState
    app: ASGIApp

    def client_from(self, client_ip: str) -> httpx.AsyncClient:
        """Another client of the same app, connecting from ``client_ip``."""
        return http_client(self.app, client_ip)


@asynccontextmanager
async def running_api(
    settings: Settings, *, client_ip: str = "127.0.0.1"
) -> AsyncIterator[RunningApi]:
    """The API in-process (per-request state, as uvicorn gives), seen from ``client_ip``.

    Each request gets its own copy of the lifespan state outside every middleware of the app, as
    a real server gives it (the 500 handler reads the request id from it too).
    """
    captured: dict[str, Any] = {}
    app = _CaptureLifespanState(CopyStatePerRequest(create_app(settings)), captured)
    async with LifespanManager(app) as manager, http_client(manager.app, client_ip) as http:
        yield RunningApi(http, captured["state"]["herald"], manager.app)


@asynccontextmanager
async def in_process_client(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    """Just the HTTP client of ``running_api``."""
    async with running_api(settings) as api:
        yield api.http
