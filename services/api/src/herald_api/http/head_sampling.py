"""Head sampling at the edge: which requests are traced is decided before any instrumentation
runs, so a request that will not be recorded does not pay for the instrumentation either.

With the OpenTelemetry instrumentations installed, an unsampled request still walks the routes
to name its span, collects its attributes, and wraps every Redis and SQL call in a
non-recording span — as much CPU as a cached read itself. ``HeadSampling`` sits outside all of
that and, for a request without a ``traceparent``:

- admitted (probability ``ratio``): sets ``EDGE_ADMITTED``; the instrumentation runs and the
  root sampler (``herald_shared.telemetry.EdgeRatioSampler``) records the trace;
- not admitted: the request runs under a fresh, valid, *unsampled* span context with the
  instrumentations suppressed, through the middleware stack as Starlette builds it (without the
  instrumentation's own middleware layers, which would only find themselves suppressed). Its ids
  still reach the logs, the ``traceparent`` response header and the outbox, flagged unsampled,
  so the services downstream do not record it either.

A request that carries a ``traceparent`` goes through the instrumentation: its parent decides.

A traced request's server span is named after its route template (``GET /v1/posts/{post_id}``).
The instrumentation finds the template by matching the request against every route before it
runs (tens of microseconds with Herald's routes, on top of the routing itself); here the span
starts named after the method only and takes the template from the route the router chose,
when the response starts.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Any

from opentelemetry.context import attach, detach
from opentelemetry.instrumentation.asgi import OpenTelemetryMiddleware
from opentelemetry.instrumentation.utils import suppress_instrumentation
from opentelemetry.trace import (
    NonRecordingSpan,
    SpanContext,
    TraceFlags,
    get_current_span,
    set_span_in_context,
)
from starlette.applications import Starlette
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from herald_shared.telemetry import EDGE_ADMITTED


def _has_traceparent(scope: Scope) -> bool:
    return any(name == b"traceparent" for name, _ in scope["headers"])


def _unsampled_context_span() -> NonRecordingSpan:
    return NonRecordingSpan(
        SpanContext(
            trace_id=random.getrandbits(128) or 1,
            span_id=random.getrandbits(64) or 1,
            is_remote=False,
            trace_flags=TraceFlags(TraceFlags.RANDOM_TRACE_ID),  # not sampled
        )
    )


def _method_only(scope: Scope) -> tuple[str, dict[str, Any]]:
    """The server span's first name; ``_named_after_route`` completes it."""
    return str(scope.get("method") or "HTTP"), {}


def _named_after_route(scope: Scope, send: Send) -> Send:
    """``send``, naming the current (server) span after the matched route's template when the
    response starts; the router has chosen the route by then."""

    async def send_named(message: Message) -> None:
        if message["type"] == "http.response.start":
            template = getattr(scope.get("route"), "path", None)
            span = get_current_span()
            if template is not None and span.is_recording():
                span.update_name(f"{scope['method']} {template}")
                span.set_attribute("http.route", template)
        await send(message)

    return send_named


def _name_spans_after_routes(stack: ASGIApp) -> None:
    """Have the instrumentation's middleware in ``stack`` (a few layers down at most) start
    its span with the method only, instead of matching every route to find the template."""
    app: Any = stack
    for _ in range(3):
        if isinstance(app, OpenTelemetryMiddleware):
            app.default_span_details = _method_only
            return
        app = getattr(app, "app", None)


class HeadSampling:
    """ASGI middleware for outside the OpenTelemetry instrumentation (``sample_at_the_edge``)."""

    def __init__(
        self,
        app: ASGIApp,
        ratio: float,
        *,
        plain: ASGIApp | None = None,
        chance: Callable[[], float] = random.random,
    ) -> None:
        """``app`` is the instrumented stack; ``plain`` the same without the instrumentation's
        middleware, for the requests not admitted (``app`` when not given)."""
        self.app = app
        self._plain = plain or app
        self._ratio = ratio
        self._chance = chance

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
        elif _has_traceparent(scope):
            await self.app(scope, receive, _named_after_route(scope, send))
        elif self._chance() < self._ratio:
            admitted = EDGE_ADMITTED.set(True)
            try:
                await self.app(scope, receive, _named_after_route(scope, send))
            finally:
                EDGE_ADMITTED.reset(admitted)
        else:
            with suppress_instrumentation():
                token = attach(set_span_in_context(_unsampled_context_span()))
                try:
                    await self._plain(scope, receive, send)
                finally:
                    detach(token)


def sample_at_the_edge(
    app: Starlette, ratio: float, *, plain_build: Callable[[], ASGIApp] | None = None
) -> None:
    """Wrap ``app``'s whole middleware stack, as built, in ``HeadSampling`` (the way the
    FastAPI instrumentation wraps it in its own middleware). ``plain_build`` is the app's
    ``build_middleware_stack`` from before it was instrumented: the requests not admitted run
    through the stack it builds (the same middleware and routes, built a second time)."""
    build = app.build_middleware_stack

    def build_middleware_stack() -> ASGIApp:
        stack = build()
        _name_spans_after_routes(stack)
        return HeadSampling(stack, ratio, plain=plain_build() if plain_build else None)

    app.build_middleware_stack = build_middleware_stack  # type: ignore[method-assign]
