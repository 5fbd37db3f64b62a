"""The benchmark harness keeps working: ``python -m bench`` at a tiny scale, end to end — its own
database, servers and consumers in their own process groups, wrk, the report, the JSON and the
plots — leaving nothing behind, with every kind of case it has: a fair baseline, the peer stacks
P1 and P2, Herald's cached read and its list page under steady writes; the pipeline with
Herald's real worker and cache-invalidator, a fixed rate and a search probe; Herald's consumer
runtime (its idempotent task) against Dramatiq and FastStream. And the in-process CPU measure
(``python -m bench.inprocess``) on a few requests."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
TINY = ["--scale", "0.05", "--reps", "1", "--posts", "300", "--connections", "8"]
#: One server process per HTTP stack: starting fewer processes keeps the smoke run short.
TINY += ["--api-processes", "1"]


def _run(module: str, *args: str) -> tuple[str, str]:
    """Run ``python -m module args`` from the repository; (stdout, the end of both streams)."""
    completed = subprocess.run(
        [sys.executable, "-m", module, *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=110,
        check=False,
    )
    output = completed.stdout[-4000:] + completed.stderr[-4000:]
    assert completed.returncode == 0, output
    return completed.stdout, output


def _bench(out: Path, only: str, *extra: str) -> tuple[dict[str, Any], str]:
    _, output = _run("bench", *TINY, "--only", only, *extra, "--out", str(out))
    results = json.loads((out / "latest.json").read_text())
    assert results["leftover_processes"] == [], output
    assert results["leftover_resources"] == [], output
    return results, output


def test_bench_harness_runs_the_http_cases(tmp_path: Path) -> None:
    if shutil.which("wrk") is None:
        pytest.skip("wrk is not installed (make tools installs it)")
    results, output = _bench(
        tmp_path,
        "http:baselines/b3,http:peers,http:herald/list_under_writes",
    )

    runs = results["http_runs"]
    assert {r["cell"] for r in runs} == {
        "baselines/b3",
        "peers/p1_get_cached",
        "peers/p1_list_first",
        "peers/p2_post",
        "herald/list_under_writes",
    }, output
    for run in runs:
        assert run["result"]["requests"] > 0, output
        assert run["result"]["status_errors"] + run["result"]["socket_errors"] == 0, output
        assert run["wrk_cores"] > 0, output
    peer_cached = [r for r in runs if r["cell"] == "peers/p1_get_cached"]
    assert all(r["server_cpu_us_per_request"] > 0 for r in peer_cached), output
    under_writes = [r for r in runs if r["cell"] == "herald/list_under_writes"]
    assert all(r["writes"] > 0 and r["writer_cores"] > 0 for r in under_writes), output
    assert all(sum(r["cache"].values()) > 0 for r in under_writes), output
    verdicts = {v["target"]: v["status"] for v in results["targets"]}
    assert verdicts["list-page cache hit rate >= 80 % at 10 writes/s"] in {"hit", "miss"}
    assert verdicts["POST >= 1.0 x P2"] == "not measured"  # Herald's POST was not selected
    page = (tmp_path / "benchmarks.md").read_text()
    assert "peers/p1_get_cached" in page
    assert (tmp_path / "benchmarks" / "throughput.png").stat().st_size > 0


def test_bench_harness_runs_the_pipeline_and_the_consumers(tmp_path: Path) -> None:
    results, output = _bench(
        tmp_path,
        "pipeline,workers:herald-idempotent,workers:dramatiq,workers:faststream",
        "--pipeline-rates",
        "40",
        "--search",
        "40:80",
        "--search-probes",
        "1",
    )

    rates = results["pipeline"]
    assert [(r["rate"], r["purpose"]) for r in rates] in (
        [(40, "fixed"), (80, "search")],  # 40/s sustained: the search tries the top
        [(40, "fixed")],  # not sustained, and 40/s is already the bottom
    ), output
    fixed = rates[0]
    assert fixed["created"] > 0, output
    assert fixed["stages"]["handled"]["lost"] == 0, output
    assert fixed["stages"]["handled"]["count"] == fixed["created"], output
    assert fixed["stages"]["handled"]["duplicated"] == 0, output
    assert fixed["invalidated"]["count"] == fixed["invalidated"]["expected"], output
    assert {"api", "worker", "invalidator", "writer", "postgres", "rabbitmq"} <= set(
        fixed["cpu_share"]
    ), output
    cases = results["workers"]["cases"]
    assert set(cases) == {"herald-idempotent", "dramatiq", "faststream"}, output
    assert all(case["median"] > 0 for case in cases.values()), output
    verdicts = {v["target"]: v["status"] for v in results["targets"]}
    assert verdicts["worker, idempotent task >= 1.2 x Dramatiq"] in {"hit", "miss"}, output
    assert verdicts["highest sustained end-to-end rate >= 900 writes/s"] in {"hit", "miss"}
    assert (tmp_path / "benchmarks" / "pipeline_latency.png").stat().st_size > 0
    assert (tmp_path / "benchmarks" / "workers.png").stat().st_size > 0


@pytest.mark.parametrize("case", ["herald/get_cached", "herald/post"])
def test_the_in_process_measure_runs(case: str) -> None:
    stdout, output = _run("bench.inprocess", case, "--requests", "20", "--rounds", "1")
    assert f"{case}: " in stdout, output
    assert "us CPU per request" in stdout, output
    assert "LEFT BEHIND" not in output
