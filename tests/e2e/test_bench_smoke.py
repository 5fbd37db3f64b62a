"""The benchmark harness keeps working: ``python -m bench`` at a tiny scale, on two scenarios
(a bare baseline and Herald's cached GET), end to end — its own database, servers in their own
process groups, wrk, the report, the JSON and the plot — and leaves nothing behind; and the
in-process CPU measure (``python -m bench.inprocess``) on a few requests."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]


def _run(module: str, *args: str) -> tuple[str, str]:
    """Run ``python -m module args`` from the repository; (stdout, the end of both streams)."""
    completed = subprocess.run(
        [sys.executable, "-m", module, *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=100,
        check=False,
    )
    output = completed.stdout[-4000:] + completed.stderr[-4000:]
    assert completed.returncode == 0, output
    return completed.stdout, output


def test_bench_harness_runs_a_tiny_benchmark(tmp_path: Path) -> None:
    if shutil.which("wrk") is None:
        pytest.skip("wrk is not installed (make tools installs it)")
    _, output = _run(
        "bench",
        "--scale",
        "0.05",
        "--reps",
        "1",
        "--posts",
        "300",
        "--connections",
        "8",
        "--only",
        "http:baselines/b1,http:herald/get_cached",
        "--out",
        str(tmp_path),
    )

    results = json.loads((tmp_path / "latest.json").read_text())
    runs = results["http_runs"]
    assert {r["cell"] for r in runs} == {"baselines/b1", "herald/get_cached"}, output
    for run in runs:
        assert run["result"]["requests"] > 0, output
        assert run["result"]["status_errors"] + run["result"]["socket_errors"] == 0, output
    cached = [r for r in runs if r["cell"] == "herald/get_cached"]
    assert all(r["cache"].get("hit", 0) > 0 for r in cached), f"no cache hit: {output}"
    assert results["leftover_processes"] == [], output
    assert results["leftover_resources"] == [], output
    verdicts = {v["target"]: v["status"] for v in results["targets"]}
    assert verdicts["cached GET >= 0.85 x B2"] == "not measured"  # B2 was not selected
    assert "herald/get_cached" in (tmp_path / "benchmarks.md").read_text()
    assert (tmp_path / "benchmarks" / "throughput.png").stat().st_size > 0


@pytest.mark.parametrize("case", ["herald/get_cached", "herald/post", "baselines/b2"])
def test_the_in_process_measure_runs(case: str) -> None:
    stdout, output = _run("bench.inprocess", case, "--requests", "20", "--rounds", "1")
    assert f"{case}: " in stdout, output
    assert "us CPU per request" in stdout, output
    assert "LEFT BEHIND" not in output
