"""The span-file exporter costs spans, never the service, when its directory is unusable."""

from __future__ import annotations

from pathlib import Path

from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExportResult
from structlog.testing import capture_logs

from herald_shared.trace_files import JsonLinesSpanExporter, read_spans


def test_an_unusable_directory_is_reported_and_spans_are_dropped(tmp_path: Path) -> None:
    # A regular file where a directory should be: unusable even for root.
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("")
    with capture_logs() as logs:
        exporter = JsonLinesSpanExporter(blocker / "traces", "herald-test")
    assert any("not writable" in entry["event"] for entry in logs)
    assert exporter.export([]) is SpanExportResult.FAILURE


def test_spans_are_written_once_the_directory_is_usable(tmp_path: Path) -> None:
    exporter = JsonLinesSpanExporter(tmp_path / "traces", "herald-test")
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    with provider.get_tracer("test").start_as_current_span("work"):
        pass
    provider.shutdown()
    assert [span["name"] for span in read_spans(tmp_path / "traces")] == ["work"]
