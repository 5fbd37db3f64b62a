"""W3C trace context carried with events, so work caused by a request joins its trace."""

from __future__ import annotations

from opentelemetry import propagate


def current_trace_headers() -> dict[str, str]:
    """``traceparent``/``tracestate`` of the current span; empty when nothing is being traced."""
    carrier: dict[str, str] = {}
    propagate.inject(carrier)
    return carrier
