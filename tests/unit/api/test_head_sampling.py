"""Head sampling at the edge: what the app behind ``HeadSampling`` runs under, and the root
sampler that honours the edge's decision."""

from __future__ import annotations

from typing import Any

import httpx
from fastapi import FastAPI
from opentelemetry import trace
from opentelemetry.context import get_current
from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor
from opentelemetry.instrumentation.utils import is_instrumentation_enabled
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.sampling import Decision, ParentBased
from opentelemetry.trace import SpanContext

from herald_api.http.head_sampling import HeadSampling, sample_at_the_edge
from herald_shared.telemetry import EDGE_ADMITTED, EdgeRatioSampler

TRACE_ID = 0x4BF92F3577B34DA6A3CE929D0E0E4736


class Seen:
    """An ASGI app that records the tracing context each request ran under."""

    def __init__(self) -> None:
        self.contexts: list[tuple[bool, bool, SpanContext]] = []

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        self.contexts.append(
            (
                EDGE_ADMITTED.get(),
                is_instrumentation_enabled(),
                trace.get_current_span().get_span_context(),
            )
        )


def _scope(*headers: tuple[bytes, bytes]) -> dict[str, Any]:
    return {"type": "http", "headers": list(headers)}


async def _call(middleware: HeadSampling, scope: dict[str, Any]) -> None:
    async def receive() -> dict[str, Any]:
        return {"type": "http.request"}

    async def send(message: Any) -> None:
        return None

    await middleware(scope, receive, send)


async def test_an_admitted_request_is_marked_and_instrumented() -> None:
    seen = Seen()
    await _call(HeadSampling(seen, 0.1, chance=lambda: 0.05), _scope())
    [(marked, instrumented, span)] = seen.contexts
    assert marked
    assert instrumented
    assert not span.is_valid  # the instrumentation starts the trace


async def test_a_request_not_admitted_runs_unsampled_without_instrumentation() -> None:
    seen = Seen()
    middleware = HeadSampling(seen, 0.1, chance=lambda: 0.5)
    await _call(middleware, _scope())
    await _call(middleware, _scope())
    first, second = seen.contexts
    for marked, instrumented, span in (first, second):
        assert not marked
        assert not instrumented
        assert span.is_valid
        assert not span.trace_flags.sampled
    assert first[2].trace_id != second[2].trace_id


async def test_a_request_with_a_parent_is_left_to_the_parent() -> None:
    seen = Seen()
    parent = f"00-{TRACE_ID:032x}-00f067aa0ba902b7-00".encode()
    await _call(HeadSampling(seen, 0.1, chance=lambda: 0.5), _scope((b"traceparent", parent)))
    assert seen.contexts == [(False, True, trace.INVALID_SPAN_CONTEXT)]


async def test_the_context_is_restored_after_the_request() -> None:
    before = get_current()
    for chance in (0.0, 0.9):
        await _call(HeadSampling(Seen(), 0.5, chance=lambda: chance), _scope())  # noqa: B023
        assert get_current() == before
        assert is_instrumentation_enabled()
        assert not EDGE_ADMITTED.get()


async def test_ratio_zero_admits_nothing_and_one_admits_everything() -> None:
    seen = Seen()
    await _call(HeadSampling(seen, 0.0, chance=lambda: 0.0), _scope())
    await _call(HeadSampling(seen, 1.0, chance=lambda: 0.999999), _scope())
    assert [marked for marked, _, _ in seen.contexts] == [False, True]


def test_the_root_sampler_records_what_the_edge_admitted() -> None:
    sampler = EdgeRatioSampler(0.0)
    admitted = EDGE_ADMITTED.set(True)
    try:
        assert sampler.should_sample(None, TRACE_ID, "GET").decision is Decision.RECORD_AND_SAMPLE
    finally:
        EDGE_ADMITTED.reset(admitted)
    assert sampler.should_sample(None, TRACE_ID, "GET").decision is Decision.DROP
    kept = EdgeRatioSampler(1.0).should_sample(None, TRACE_ID, "GET")
    assert kept.decision is Decision.RECORD_AND_SAMPLE


async def test_the_instrumented_app_records_every_admitted_request_whatever_the_ratio() -> None:
    """Through the real FastAPI instrumentation, which replaces the OpenTelemetry context with
    the one it extracts from the headers: the edge's decision must still reach the sampler."""
    exporter = InMemorySpanExporter()
    provider = TracerProvider(sampler=ParentBased(EdgeRatioSampler(0.0)))
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    app = FastAPI()

    @app.get("/ping")
    async def ping() -> dict[str, str]:
        return {"pong": "yes"}

    FastAPIInstrumentor.instrument_app(
        app, tracer_provider=provider, exclude_spans=["receive", "send"]
    )
    sample_at_the_edge(app, 1.0)  # the edge admits everything; the sampler alone would not
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        response = await client.get("/ping")
    assert response.status_code == 200
    assert [span.name for span in exporter.get_finished_spans()] == ["GET /ping"]
