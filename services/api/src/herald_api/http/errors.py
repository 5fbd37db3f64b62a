"""Unexpected errors answered inside the middleware stack.

Starlette hands an exception no handler claims to its outermost middleware, which answers 500
from outside every other middleware: that response would miss the headers they add (the
request id's companions, ``traceparent``, the RateLimit headers). ``UnexpectedErrors`` sits
just outside the routes and answers such an error with a 500 problem there, so the response
goes out through the same middleware as any other.
"""

from __future__ import annotations

import structlog
from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from herald_api.http.problems import Problem, problem_response

_log = structlog.get_logger(__name__)


class UnexpectedErrors:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def send_tracked(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, receive, send_tracked)
        except Exception as exc:
            if started:
                raise
            _log.error("unhandled error", exc_info=exc, path=scope.get("path"))
            response = problem_response(
                Request(scope), Problem(500, "An unexpected error occurred.")
            )
            await response(scope, receive, send)
