"""Request body size limit that answers 413 in problem+json without reading the body whole.

Starlette's own limiter answers in plain text from outside the app's exception handling, so
this one raises an ``HTTPException`` from ``receive`` instead: FastAPI lets it through its body
parsing, and the problem handlers render it like every other error. A declared
``Content-Length`` over the limit is refused before any byte of the body is read. (The server
itself rejects a malformed Content-Length.)
"""

from __future__ import annotations

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from herald_api.http.problems import Problem, problem_response


class BodyLimitMiddleware:
    def __init__(self, app: ASGIApp, max_body_bytes: int) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes

    def _too_large(self) -> HTTPException:
        return HTTPException(413, f"The request body is larger than {self.max_body_bytes} bytes.")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        for name, value in scope.get("headers", ()):
            if name == b"content-length":
                if value.isdigit() and int(value) > self.max_body_bytes:
                    too_large = self._too_large()
                    response = problem_response(
                        Request(scope), Problem(too_large.status_code, too_large.detail)
                    )
                    await response(scope, receive, send)
                    return
                break
        received = 0

        async def receive_within_limit() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_body_bytes:
                    raise self._too_large()
            return message

        await self.app(scope, receive_within_limit, send)
