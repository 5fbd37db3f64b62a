"""OpenTelemetry for every service, configured once per process.

- Resource: service.name (herald-api, herald-worker, herald-cache-invalidator), service.version,
  service.instance.id.
- Sampling: parent-based, with ``HERALD_TRACE_SAMPLE_RATIO`` for traces that start here. An edge
  that decides before its instrumentation runs (the API's ``HeadSampling``) marks the requests
  it admitted in ``EDGE_ADMITTED``, and the root sampler records exactly those.
- Export: OTLP over HTTP when ``OTEL_EXPORTER_OTLP_ENDPOINT`` is set (Jaeger in docker-compose),
  otherwise JSON lines under ``HERALD_TRACE_DIR`` for ``herald trace``.
- Instrumentation, only while tracing is enabled: the official asyncpg, redis, aio-pika and httpx
  instrumentations (the API adds FastAPI's). aio-pika's carries the context in message
  headers; the outbox carries the request's context to the relay, which publishes under it.
"""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import Sequence
from contextvars import ContextVar
from importlib.metadata import PackageNotFoundError, version

from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.instrumentation.aio_pika import AioPikaInstrumentor
from opentelemetry.instrumentation.asyncpg import AsyncPGInstrumentor
from opentelemetry.instrumentation.httpx import HTTPXClientInstrumentor
from opentelemetry.instrumentation.redis import RedisInstrumentor
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter
from opentelemetry.sdk.trace.sampling import (
    ALWAYS_OFF,
    Decision,
    ParentBased,
    Sampler,
    SamplingResult,
    TraceIdRatioBased,
)
from opentelemetry.trace import Link, SpanKind
from opentelemetry.trace.span import TraceState
from opentelemetry.util.types import Attributes

from herald_shared.settings import TelemetrySettings
from herald_shared.trace_files import JsonLinesSpanExporter

_configured: TracerProvider | None = None
_enabled = False

#: True while the edge runs a request it decided to trace (see ``EdgeRatioSampler``). A plain
#: context variable, not an OpenTelemetry context key: the server instrumentation replaces the
#: OpenTelemetry context with the one it extracts from the request's headers.
EDGE_ADMITTED: ContextVar[bool] = ContextVar("herald_edge_admitted", default=False)


class EdgeRatioSampler(Sampler):
    """The root sampler: records a trace the edge admitted (``EDGE_ADMITTED``), and otherwise
    keeps traces by their id at the ratio (``TraceIdRatioBased``)."""

    def __init__(self, ratio: float) -> None:
        self._ratio = TraceIdRatioBased(ratio)

    def should_sample(
        self,
        parent_context: Context | None,
        trace_id: int,
        name: str,
        kind: SpanKind | None = None,
        attributes: Attributes = None,
        links: Sequence[Link] | None = None,
        trace_state: TraceState | None = None,
    ) -> SamplingResult:
        if EDGE_ADMITTED.get():
            return SamplingResult(Decision.RECORD_AND_SAMPLE, attributes, trace_state)
        return self._ratio.should_sample(
            parent_context, trace_id, name, kind, attributes, links, trace_state
        )

    def get_description(self) -> str:
        return f"EdgeRatioSampler{{{self._ratio.rate}}}"


def _version() -> str:
    try:
        return version("herald-shared")
    except PackageNotFoundError:  # pragma: no cover - running from a source tree
        return "0.0.0"


def _exporter(service: str, settings: TelemetrySettings) -> SpanExporter:
    if os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT") or os.environ.get(
        "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"
    ):
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        return OTLPSpanExporter()
    return JsonLinesSpanExporter(settings.dir, service)


def tracing_enabled() -> bool:
    """Whether this process records spans (``configure_tracing`` ran with tracing on)."""
    return _enabled


def configure_tracing(service: str, settings: TelemetrySettings) -> TracerProvider:
    """Install the process's tracer provider and the library instrumentations (once)."""
    global _configured
    if _configured is not None:
        return _configured
    resource = Resource.create(
        {
            "service.name": service,
            "service.version": _version(),
            "service.instance.id": f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}",
        }
    )
    # Off means off: not even a sampled parent from another service records spans here.
    sampler = (
        ParentBased(EdgeRatioSampler(settings.sample_ratio)) if settings.enabled else ALWAYS_OFF
    )
    provider = TracerProvider(resource=resource, sampler=sampler)
    if settings.enabled:
        provider.add_span_processor(
            BatchSpanProcessor(_exporter(service, settings), schedule_delay_millis=500)
        )
    trace.set_tracer_provider(provider)
    global _enabled
    _enabled = settings.enabled
    if settings.enabled:
        # Off, they would wrap every query, command and publish to make spans nobody records.
        AsyncPGInstrumentor().instrument(tracer_provider=provider)  # type: ignore[no-untyped-call]
        RedisInstrumentor().instrument(tracer_provider=provider)
        AioPikaInstrumentor().instrument(tracer_provider=provider)
        HTTPXClientInstrumentor().instrument(tracer_provider=provider)
    _configured = provider
    return provider


def shutdown_tracing() -> None:
    """Flush buffered spans (call on the way out)."""
    if _configured is not None:
        _configured.shutdown()


def traceparent() -> str | None:
    """The W3C ``traceparent`` of the current span."""
    context = trace.get_current_span().get_span_context()
    if not context.is_valid:
        return None
    return f"00-{context.trace_id:032x}-{context.span_id:016x}-{int(context.trace_flags):02x}"
