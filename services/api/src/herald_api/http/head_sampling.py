"""Head sampling at the edge: which requests are traced is decided before any instrumentation
runs, so a request that will not be recorded does not pay for the instrumentation either.

With the OpenTelemetry instrumentations installed, an unsampled request still walks the routes
to name its span, collects its attributes, and wraps every Redis and SQL call in a
non-recording span — as much CPU as a cached read itself. ``HeadSampling`` sits outside all of
that and, for a request without a ``traceparent``:

- admitted (probability ``ratio``): sets ``EDGE_ADMITTED``; the instrumentation runs and the
  root sampler (``herald_shared.telemetry.EdgeRatioSampler``) records the trace;
- not admitted: the request runs under a fresh, valid, *unsampled* span context with the
  instrumentations suppressed. Its ids still reach the logs, the ``traceparent`` response header
  and the outbox, flagged unsampled, so the services downstream do not record it either.

A request that carries a ``traceparent`` goes through the instrumentation: its parent decides.
"""

from __future__ import annotations

import random
from collections.abc import Callable

from opentelemetry.context import attach, detach
from opentelemetry.instrumentation.utils import suppress_instrumentation
from opentelemetry.trace import NonRecordingSpan, SpanContext, TraceFlags, set_span_in_context
from starlette.applications import Starlette
from starlette.types import ASGIApp, Receive, Scope, Send

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


class HeadSampling:
    """ASGI middleware for outside the OpenTelemetry instrumentation (``sample_at_the_edge``)."""

    def __init__(
        self, app: ASGIApp, ratio: float, *, chance: Callable[[], float] = random.random
    ) -> None:
        self.app = app
        self._ratio = ratio
        self._chance = chance

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or _has_traceparent(scope):
            await self.app(scope, receive, send)
        elif self._chance() < self._ratio:
            admitted = EDGE_ADMITTED.set(True)
            try:
                await self.app(scope, receive, send)
            finally:
                EDGE_ADMITTED.reset(admitted)
        else:
            with suppress_instrumentation():
                token = attach(set_span_in_context(_unsampled_context_span()))
                try:
                    await self.app(scope, receive, send)
                finally:
                    detach(token)


def sample_at_the_edge(app: Starlette, ratio: float) -> None:
    """Wrap ``app``'s whole middleware stack, as built, in ``HeadSampling`` (the way the
    FastAPI instrumentation wraps it in its own middleware)."""
    build = app.build_middleware_stack

    def build_middleware_stack() -> ASGIApp:
        return HeadSampling(build(), ratio)

    app.build_middleware_stack = build_middleware_stack  # type: ignore[method-assign]
