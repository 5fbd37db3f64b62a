"""Per-request context: the request id (``X-Request-ID``) and the access log line.

A pure ASGI middleware, so it adds no task or copy on the hot path. A client may send its
own ``X-Request-ID`` (validated); otherwise one is generated.
"""

from __future__ import annotations

import re
import time
import uuid
from typing import Any

import structlog
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from herald_shared.metrics import HTTP_REQUESTS, HTTP_SECONDS
from herald_shared.telemetry import traceparent

_REQUEST_ID_RE = re.compile(r"[A-Za-z0-9._:-]{1,128}")
_STATE_KEY = "request_id"
_EXTRA_HEADERS_KEY = "response_headers"
_access_log = structlog.get_logger("herald.access")


def request_id_of(scope: Scope) -> str | None:
    state: dict[str, Any] = scope.get("state") or {}
    value = state.get(_STATE_KEY)
    return value if isinstance(value, str) else None


def set_account_of(scope: Scope, account_id: str) -> None:
    """Record the authenticated account for the access log line."""
    scope.setdefault("state", {})["account_id"] = account_id


def add_response_headers(scope: Scope, headers: list[tuple[bytes, bytes]]) -> None:
    """Headers to add to whatever response this request ends with (errors included)."""
    scope.setdefault("state", {}).setdefault(_EXTRA_HEADERS_KEY, []).extend(headers)


def _incoming_request_id(scope: Scope) -> str:
    for name, value in scope.get("headers", ()):
        if name == b"x-request-id":
            candidate: str = value.decode("latin-1")
            if _REQUEST_ID_RE.fullmatch(candidate):
                return candidate
            break
    return uuid.uuid4().hex


class RequestContextMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = _incoming_request_id(scope)
        state = scope.setdefault("state", {})
        state[_STATE_KEY] = request_id
        header = (b"x-request-id", request_id.encode("latin-1"))
        started = time.perf_counter()
        status = 500

        async def send_with_request_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                headers = [h for h in message.get("headers", ()) if h[0] != b"x-request-id"]
                headers.append(header)
                headers.extend(state.get(_EXTRA_HEADERS_KEY, ()))
                if (parent := traceparent()) is not None:
                    headers.append((b"traceparent", parent.encode("ascii")))
                message["headers"] = headers
            await send(message)

        structlog.contextvars.bind_contextvars(request_id=request_id)
        try:
            await self.app(scope, receive, send_with_request_id)
        finally:
            route = getattr(scope.get("route"), "path", None) or "unmatched"
            seconds = time.perf_counter() - started
            HTTP_REQUESTS.labels(scope["method"], route, str(status)).inc()
            HTTP_SECONDS.labels(scope["method"], route).observe(seconds)
            _access_log.info(
                "request",
                method=scope["method"],
                route=route,
                status=status,
                duration_ms=round(seconds * 1000, 3),
                account_id=state.get("account_id"),
                client=client[0] if (client := scope.get("client")) else None,
            )
            structlog.contextvars.unbind_contextvars("request_id")
