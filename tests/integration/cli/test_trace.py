"""``herald trace`` run as the operator runs it, over span files the real exporter wrote.

Two services' spans go through OpenTelemetry's SDK into ``JsonLinesSpanExporter`` (one file
per service, as the services write them), with fixed start and end times so the waterfall's
offsets and durations are known: an older trace that succeeded and a newer one with a failed
span.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.trace import SpanKind, Status, StatusCode

from herald_shared.trace_files import JsonLinesSpanExporter
from tests.support.cli import run_herald

MS = 1_000_000
#: When the older trace starts (ns since the epoch); the newer one starts a second later.
T0 = 1_700_000_000_000_000_000


def provider(directory: Path, service: str) -> TracerProvider:
    """A tracer provider exporting ``service``'s spans to ``directory`` as the services do."""
    tracer_provider = TracerProvider(resource=Resource.create({"service.name": service}))
    tracer_provider.add_span_processor(
        SimpleSpanProcessor(JsonLinesSpanExporter(directory, service))
    )
    return tracer_provider


def write_trace(directory: Path, start: int, *, fail_delivery: bool) -> str:
    """A request to the API and the worker's handling of its event; returns the trace id.

    The server span takes 10 ms; 4 ms in, the worker's handler runs for 5 ms, and under it a
    webhook delivery that fails when ``fail_delivery``.
    """
    api = provider(directory, "herald-api").get_tracer("test")
    worker = provider(directory, "herald-worker").get_tracer("test")
    server = api.start_span(
        "POST /v1/posts",
        kind=SpanKind.SERVER,
        start_time=start,
        attributes={"http.route": "/v1/posts", "http.status_code": 201},
    )
    in_request = trace.set_span_in_context(server)
    handler = worker.start_span(
        "handle post.created",
        context=in_request,
        kind=SpanKind.CONSUMER,
        start_time=start + 4 * MS,
        attributes={"herald.event_type": "post.created"},
    )
    delivery = worker.start_span(
        "webhook.deliver",
        context=trace.set_span_in_context(handler),
        start_time=start + 5 * MS,
        attributes={"herald.outcome": "failed" if fail_delivery else "succeeded"},
    )
    if fail_delivery:
        delivery.set_status(Status(StatusCode.ERROR, "HTTP 500"))
    delivery.end(end_time=start + 8 * MS)
    handler.end(end_time=start + 9 * MS)
    server.end(end_time=start + 10 * MS)
    return f"{server.get_span_context().trace_id:032x}"


#: One span line: its error mark, offset, service (24 columns), indented name, bar, duration and
#: details.
SPAN_LINE = re.compile(
    r"^(?P<mark>!!|  ) *(?P<offset>[\d.]+) ms (?P<service>.{24}) (?P<indent> *)"
    r"(?P<name>\S.*?) +\|(?P<bar>.{24})\| +(?P<duration>[\d.]+) ms(?:  (?P<details>.*))?$"
)


@dataclass(frozen=True)
class SpanLine:
    error: bool
    offset_ms: float
    service: str
    depth: int
    bar: str
    duration_ms: float
    details: str


def span_lines(output: str) -> dict[str, SpanLine]:
    """The waterfall's span lines (every line after the header), by span name."""
    found: dict[str, SpanLine] = {}
    for line in output.splitlines()[1:]:
        match = SPAN_LINE.match(line)
        assert match, f"not a span line: {line!r}"
        found[match["name"]] = SpanLine(
            error=match["mark"] == "!!",
            offset_ms=float(match["offset"]),
            service=match["service"].rstrip(),
            depth=len(match["indent"]) // 2,
            bar=match["bar"],
            duration_ms=float(match["duration"]),
            details=match["details"] or "",
        )
    return found


async def test_a_trace_by_id_is_printed_as_a_waterfall_across_services(tmp_path: Path) -> None:
    older = write_trace(tmp_path, T0, fail_delivery=False)
    write_trace(tmp_path, T0 + 1_000 * MS, fail_delivery=True)

    code, out, err = await run_herald(["trace", older.upper(), "--dir", str(tmp_path)])

    assert code == 0, err
    header, *_ = out.splitlines()
    assert header.startswith(f"trace {older}  3 spans  2 services (herald-api, herald-worker)")
    assert header.endswith("10.0 ms"), header  # no errors counted
    lines = span_lines(out)
    assert list(lines) == ["POST /v1/posts", "handle post.created", "webhook.deliver"]
    server, handler, delivery = lines.values()
    # Each span under its parent, from its own service, at its offset, for its duration.
    assert [(s.service, s.depth, s.offset_ms, s.duration_ms) for s in lines.values()] == [
        ("herald-api", 0, 0.0, 10.0),
        ("herald-worker", 1, 4.0, 5.0),
        ("herald-worker", 2, 5.0, 3.0),
    ]
    assert server.bar == "█" * 24
    assert handler.bar == " " * 9 + "█" * 12 + " " * 3  # 4 to 9 ms of 10, in 24 cells
    assert server.details == "route=/v1/posts  status=201"
    assert delivery.details == "outcome=succeeded"
    assert not any(s.error for s in lines.values()), out


async def test_last_shows_the_newest_trace_and_marks_its_failed_span(tmp_path: Path) -> None:
    write_trace(tmp_path, T0, fail_delivery=False)
    newer = write_trace(tmp_path, T0 + 1_000 * MS, fail_delivery=True)

    # The directory from the environment, as the services are configured.
    code, out, err = await run_herald(["trace", "--last"], {"HERALD_TRACE_DIR": str(tmp_path)})

    assert code == 0, err
    header = out.splitlines()[0]
    assert header.startswith(f"trace {newer}  3 spans"), out
    assert header.endswith("10.0 ms  1 error(s)"), header
    lines = span_lines(out)
    assert {name: s.error for name, s in lines.items()} == {
        "POST /v1/posts": False,
        "handle post.created": False,
        "webhook.deliver": True,
    }
    assert lines["webhook.deliver"].details == "outcome=failed"


async def test_an_unknown_trace_or_no_choice_is_an_error(tmp_path: Path) -> None:
    write_trace(tmp_path, T0, fail_delivery=False)

    code, out, err = await run_herald(["trace", "0" * 32, "--dir", str(tmp_path)])
    assert (code, out) == (1, "")
    assert "no such trace in the span files" in err

    code, _, err = await run_herald(["trace", "--dir", str(tmp_path)])
    assert code == 2
    assert "give a TRACE_ID or --last" in err
