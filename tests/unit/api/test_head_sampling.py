"""Head sampling at the edge: what the app behind ``HeadSampling`` runs under, and the root
sampler that honours the edge's decision."""

from __future__ import annotations

from typing import Any

import httpx
from fastapi import FastAPI
from fastapi.routing import APIRoute
from opentelemetry import trace
from opentelemetry.context import get_current
from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor
from opentelemetry.instrumentation.utils import is_instrumentation_enabled
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.sampling import Decision, ParentBased
from opentelemetry.trace import SpanContext
from starlette.routing import Match

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


class CountingRoute(APIRoute):
    """Counts how often requests are matched against it."""

    matched = 0

    def matches(self, scope: Any) -> tuple[Match, Any]:
        CountingRoute.matched += 1
        return super().matches(scope)


def _traced_app(provider: TracerProvider, ratio: float) -> tuple[FastAPI, list[str]]:
    """An instrumented app behind the edge; the list names the stack each request ran in."""
    app = FastAPI()
    app.router.route_class = CountingRoute
    ran: list[str] = []

    @app.get("/items/{item_id}")
    async def item(item_id: int) -> dict[str, int]:
        return {"item": item_id}

    class Mark:
        def __init__(self, app: Any, name: str) -> None:
            self.app, self.name = app, name

        async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
            if scope["type"] == "http":
                ran.append(self.name)
            await self.app(scope, receive, send)

    plain_build = app.build_middleware_stack
    FastAPIInstrumentor.instrument_app(
        app, tracer_provider=provider, exclude_spans=["receive", "send"]
    )
    instrumented_build = app.build_middleware_stack
    app.build_middleware_stack = lambda: Mark(instrumented_build(), "instrumented")  # type: ignore[method-assign]
    sample_at_the_edge(app, ratio, plain_build=lambda: Mark(plain_build(), "plain"))
    return app, ran


async def test_a_traced_span_is_named_after_its_route_template() -> None:
    exporter = InMemorySpanExporter()
    provider = TracerProvider(sampler=ParentBased(EdgeRatioSampler(0.0)))
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    app, _ = _traced_app(provider, 1.0)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        CountingRoute.matched = 0
        assert (await client.get("/items/42")).status_code == 200
        assert CountingRoute.matched == 1, "the route was matched again to name the span"
        assert (await client.get("/nowhere")).status_code == 404
    found, missing = exporter.get_finished_spans()
    assert found.name == "GET /items/{item_id}"
    assert found.attributes is not None
    assert found.attributes["http.route"] == "/items/{item_id}"
    assert missing.name == "GET"


async def test_requests_not_admitted_run_in_the_stack_without_the_instrumentation() -> None:
    exporter = InMemorySpanExporter()
    provider = TracerProvider(sampler=ParentBased(EdgeRatioSampler(0.0)))
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    app, ran = _traced_app(provider, 0.0)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        response = await client.get("/items/7")
        parent = f"00-{TRACE_ID:032x}-00f067aa0ba902b7-01"
        traced = await client.get("/items/8", headers={"traceparent": parent})
    assert response.json() == {"item": 7}
    assert traced.json() == {"item": 8}
    assert ran == ["plain", "instrumented"]
    assert [span.name for span in exporter.get_finished_spans()] == ["GET /items/{item_id}"]
