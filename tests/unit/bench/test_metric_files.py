"""The harness reads the Prometheus multi-process files of running servers, including a file a
server process has just created and not yet sized."""

from __future__ import annotations

import json
from pathlib import Path

from prometheus_client.mmap_dict import MmapedDict, mmap_key

from bench.servers import read_counters


def _write_counter(path: Path, sample: str, labels: dict[str, str], value: float) -> None:
    values = MmapedDict(str(path))  # type: ignore[no-untyped-call]
    try:
        key = mmap_key(sample, sample, list(labels), list(labels.values()), "help")
        values.write_value(key, value, 0.0)  # type: ignore[no-untyped-call]
    finally:
        values.close()  # type: ignore[no-untyped-call]


def test_a_file_created_but_not_yet_sized_holds_no_values(tmp_path: Path) -> None:
    _write_counter(tmp_path / "counter_101.db", "requests_total", {"route": "/a"}, 7.0)
    (tmp_path / "counter_102.db").touch()  # what a process leaves between open and truncate

    counters = read_counters(tmp_path, "requests_total")

    assert counters == {101: {json.dumps({"route": "/a"}): 7.0}}
