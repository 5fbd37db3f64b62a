"""The API in-process with per-request state, for concurrent requests and custom settings.

``asgi_lifespan.LifespanManager`` hands every request the *same* lifespan ``state`` dict, where
a real ASGI server (uvicorn) gives each request a shallow copy. The app keeps per-request values
(the request id, the account) in ``scope["state"]``, so concurrent in-process requests would
overwrite each other's. This client copies the state per request, as uvicorn does.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx
from asgi_lifespan import LifespanManager
from starlette.types import ASGIApp, Receive, Scope, Send

from herald_api.app import create_app
from herald_api.settings import Settings


class CopyStatePerRequest:
    """Gives each HTTP request its own shallow copy of ``scope["state"]``.

    Add it to the app (``app.add_middleware``) *before* the lifespan starts. Wrapping
    ``LifespanManager(app).app`` from outside does not work: the manager sets the shared
    state dict on the scope after this middleware would have copied it.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and "state" in scope:
            scope = {**scope, "state": dict(scope["state"])}
        await self.app(scope, receive, send)


@asynccontextmanager
async def in_process_client(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    """The API app from ``settings``, its lifespan running, behind an HTTP client.

    Each request gets its own copy of the lifespan state outside every middleware of the app, as
    a real server gives it (the 500 handler reads the request id from it too).
    """
    app = CopyStatePerRequest(create_app(settings))
    async with LifespanManager(app) as manager:
        transport = httpx.ASGITransport(app=manager.app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://herald.test") as http:
            yield http
