"""Spans as JSON lines on local disk: the default exporter, so tracing works with nothing else
installed, and the reader ``herald trace`` uses to show one trace across every service."""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import structlog
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult
from opentelemetry.trace import StatusCode

_log = structlog.get_logger(__name__)


def span_record(span: ReadableSpan) -> dict[str, Any]:
    context = span.context
    parent = span.parent
    return {
        "trace_id": f"{context.trace_id:032x}" if context else None,
        "span_id": f"{context.span_id:016x}" if context else None,
        "parent_span_id": f"{parent.span_id:016x}" if parent else None,
        "name": span.name,
        "kind": span.kind.name,
        "service": span.resource.attributes.get("service.name"),
        "start_ns": span.start_time,
        "end_ns": span.end_time,
        "status": span.status.status_code.name,
        "status_description": span.status.description,
        "attributes": {
            k: v if isinstance(v, str | int | float | bool) else str(v)
            for k, v in (span.attributes or {}).items()
        },
        "events": [
            {"name": e.name, "attributes": {k: str(v) for k, v in (e.attributes or {}).items()}}
            for e in span.events
            if e.name == "exception"
        ],
    }


class JsonLinesSpanExporter(SpanExporter):
    """Appends each finished span as one JSON object per line to ``<dir>/<service>-<pid>.jsonl``.

    A directory that cannot be created (a read-only file system, another owner) costs the spans,
    not the service: it is reported once, and each export fails until the directory is usable.
    """

    def __init__(self, directory: str | Path, service: str) -> None:
        self._dir = Path(directory)
        try:
            self._dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            _log.error(
                "trace directory is not writable; spans are not recorded "
                "(set HERALD_TRACE_DIR to a writable directory or OTEL_EXPORTER_OTLP_ENDPOINT)",
                directory=str(self._dir),
                error=repr(exc),
            )
        self._path = self._dir / f"{service}-{os.getpid()}.jsonl"
        self._lock = threading.Lock()

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        lines = "".join(json.dumps(span_record(s), separators=(",", ":")) + "\n" for s in spans)
        try:
            with self._lock, self._path.open("a", encoding="utf-8") as out:
                out.write(lines)
        except OSError:
            return SpanExportResult.FAILURE
        return SpanExportResult.SUCCESS

    def shutdown(self) -> None:
        return None


def read_spans(directory: str | Path) -> Iterator[dict[str, Any]]:
    """Every span recorded under ``directory`` (lines cut short by a crash are skipped)."""
    for path in sorted(Path(directory).glob("*.jsonl")):
        with path.open(encoding="utf-8") as lines:
            for line in lines:
                try:
                    yield json.loads(line)
                except json.JSONDecodeError:
                    continue


def is_error(record: dict[str, Any]) -> bool:
    return bool(record.get("status") == StatusCode.ERROR.name)
