"""``herald trace``: one trace across every service, as a waterfall in the terminal.

Reads the span files the services write under ``HERALD_TRACE_DIR`` (the default exporter when no
OTLP endpoint is configured). One line per span, indented under its parent: service, span name,
start offset, a bar for its duration, its status and key attributes. Errors are marked ``!!``.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from typing import Annotated, Any
from urllib.parse import urlsplit

import typer

from herald_shared.settings import TelemetrySettings
from herald_shared.trace_files import is_error, read_spans

BAR_WIDTH = 24
_KEY_ATTRIBUTES = (
    ("http.route", "route"),
    ("http.response.status_code", "status"),
    ("http.status_code", "status"),
    ("db.operation", "sql"),
    ("db.operation.name", "sql"),
    ("messaging.destination.name", "queue"),
    ("herald.event_type", "event"),
    ("herald.outcome", "outcome"),
    ("herald.attempt", "attempt"),
    ("db.redis.database_index", "redis db"),
)


@dataclass(frozen=True, slots=True)
class Trace:
    trace_id: str
    spans: list[dict[str, Any]]

    @property
    def start(self) -> int:
        return min(int(s["start_ns"]) for s in self.spans)

    @property
    def end(self) -> int:
        return max(int(s["end_ns"]) for s in self.spans)

    @property
    def services(self) -> list[str]:
        return sorted({str(s["service"]) for s in self.spans})


def load_traces(directory: str) -> dict[str, Trace]:
    grouped: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for span in read_spans(directory):
        if span.get("trace_id") and span.get("start_ns") and span.get("end_ns"):
            grouped[span["trace_id"]].append(span)
    return {trace_id: Trace(trace_id, spans) for trace_id, spans in grouped.items()}


def latest(traces: dict[str, Trace]) -> Trace | None:
    return max(traces.values(), key=lambda t: t.start, default=None)


def _details(span: dict[str, Any]) -> str:
    attributes = span.get("attributes", {})
    shown: dict[str, str] = {}
    for key, label in _KEY_ATTRIBUTES:
        if key in attributes and label not in shown:
            shown[label] = str(attributes[key])
    url = attributes.get("url.full") or attributes.get("http.url")
    if url and span.get("kind") == "CLIENT":
        shown["host"] = urlsplit(str(url)).netloc
    statement = attributes.get("db.statement") or attributes.get("db.query.text")
    if statement and "sql" not in shown:
        shown["sql"] = str(statement).split(maxsplit=1)[0].upper()
    return "  ".join(f"{k}={v}" for k, v in shown.items())


def render(trace: Trace) -> str:
    """The waterfall as text."""
    by_id = {s["span_id"]: s for s in trace.spans}
    children: dict[str | None, list[dict[str, Any]]] = defaultdict(list)
    for span in trace.spans:
        parent = span.get("parent_span_id")
        children[parent if parent in by_id else None].append(span)
    for group in children.values():
        group.sort(key=lambda s: s["start_ns"])
    total = max(trace.end - trace.start, 1)
    errors = sum(1 for s in trace.spans if is_error(s))
    lines = [
        f"trace {trace.trace_id}  {len(trace.spans)} spans  {len(trace.services)} services "
        f"({', '.join(trace.services)})  {total / 1e6:.1f} ms"
        + (f"  {errors} error(s)" if errors else "")
    ]
    name_width = 48

    def walk(span: dict[str, Any], depth: int) -> None:
        offset = span["start_ns"] - trace.start
        duration = span["end_ns"] - span["start_ns"]
        first = int(offset / total * BAR_WIDTH)
        width = max(1, round(duration / total * BAR_WIDTH))
        bar = (" " * first + "█" * width)[:BAR_WIDTH].ljust(BAR_WIDTH)
        label = f"{'  ' * depth}{span['name']}"[:name_width].ljust(name_width)
        mark = "!!" if is_error(span) else "  "
        lines.append(
            f"{mark}{offset / 1e6:8.1f} ms {str(span['service'])[:24]:<24} {label} "
            f"|{bar}| {duration / 1e6:7.1f} ms  {_details(span)}".rstrip()
        )
        for child in children.get(span["span_id"], []):
            walk(child, depth + 1)

    for root in children[None]:
        walk(root, 0)
    return "\n".join(lines)


def trace_command(
    trace_id: Annotated[str | None, typer.Argument(help="The trace id (32 hex digits).")] = None,
    last: Annotated[bool, typer.Option("--last", help="Show the most recent trace.")] = False,
    directory: Annotated[
        str | None, typer.Option("--dir", help="Span files directory (HERALD_TRACE_DIR).")
    ] = None,
) -> None:
    """Print a trace across every service as a waterfall."""
    if (trace_id is None) == (not last):
        raise typer.BadParameter("give a TRACE_ID or --last")
    traces = load_traces(directory or TelemetrySettings().dir)
    chosen = latest(traces) if last else traces.get((trace_id or "").lower())
    if chosen is None:
        typer.echo("no such trace in the span files", err=True)
        raise typer.Exit(1)
    typer.echo(render(chosen))
