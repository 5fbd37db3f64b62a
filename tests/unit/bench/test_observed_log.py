"""The pipeline reads the observer's output while the observer is still writing it."""

from __future__ import annotations

from pathlib import Path

from bench.observer import ObservedLog


def test_a_line_still_being_written_is_read_once_it_is_complete(tmp_path: Path) -> None:
    out = tmp_path / "observed.txt"
    out.write_text("ready\npost-a 1.0 2.0\npost-b 1.5 2.")
    log = ObservedLog(out)

    assert log.refresh() == {"post-a": [(1.0, 2.0)]}

    with out.open("a") as more:
        more.write("5\npost-a 3.0 4.0\n")

    assert log.refresh() == {"post-a": [(1.0, 2.0), (3.0, 4.0)], "post-b": [(1.5, 2.5)]}
