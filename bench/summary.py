"""From raw runs to what the report shows: per-cell medians and spreads of the HTTP runs, and
paired (same repetition) ratios between two cells."""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import asdict, dataclass
from typing import Any

from bench.http_load import SCENARIOS
from bench.stats import Spread


@dataclass(frozen=True, slots=True)
class CellSummary:
    """One (server configuration, scenario) cell over its kept runs."""

    cell: str
    title: str
    rps: Spread
    p50_ms: Spread
    p99_ms: Spread
    cpu_us_per_request: float
    kept: int
    discarded: int
    errors: int
    #: Share of the cache lookups that hit (None where nothing was looked up).
    cache_hit_ratio: float | None
    #: The smallest share of requests one server process answered in a kept run.
    min_process_share: float
    #: The most any kept run found the machine busy before it started, and CPU time stolen.
    max_busy_before: float
    max_stolen: float
    #: Median CPU of the load generators in the kept runs (cores): wrk, the writer (if any).
    wrk_cores: float = math.nan
    writer_cores: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        for name in ("rps", "p50_ms", "p99_ms"):
            data[name] = getattr(self, name).as_dict()
        return data


def _title(cell: str) -> str:
    config, _, scenario = cell.partition("/")
    base = SCENARIOS[scenario].title if scenario in SCENARIOS else scenario
    suffix = {
        "herald-nocache": "" if scenario == "get_uncached" else " (cache off)",
        "herald-1proc": " (1 API process)",
        "herald-trace10": " (tracing 10 %)",
        "herald-trace100": " (tracing 100 %)",
    }.get(config, "")
    return base + suffix


def summarize_http(runs: list[dict[str, Any]]) -> dict[str, CellSummary]:
    by_cell: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for run in runs:
        by_cell[run["cell"]].append(run)
    summaries: dict[str, CellSummary] = {}
    for cell, cell_runs in by_cell.items():
        kept = [r for r in cell_runs if r["spread_ok"]]
        hits = sum(r["cache"].get("hit", 0) for r in kept)
        misses = sum(r["cache"].get("miss", 0) for r in kept)
        cpu = Spread.of([r["server_cpu_us_per_request"] for r in kept]).median
        summaries[cell] = CellSummary(
            cell=cell,
            title=_title(cell),
            rps=Spread.of([r["rps"] for r in kept]),
            p50_ms=Spread.of([r["result"]["p50_ms"] for r in kept]),
            p99_ms=Spread.of([r["result"]["p99_ms"] for r in kept]),
            cpu_us_per_request=cpu,
            kept=len(kept),
            discarded=len(cell_runs) - len(kept),
            errors=sum(r["result"]["status_errors"] + r["result"]["socket_errors"] for r in kept),
            cache_hit_ratio=hits / (hits + misses) if hits + misses else None,
            min_process_share=min((min(r["process_shares"]) for r in kept), default=math.nan),
            max_busy_before=max((r["busy_before"] for r in kept), default=math.nan),
            max_stolen=max((r.get("stolen", 0.0) for r in kept), default=math.nan),
            wrk_cores=Spread.of([r.get("wrk_cores", math.nan) for r in kept]).median,
            writer_cores=Spread.of([r.get("writer_cores", 0.0) for r in kept]).median,
        )
    return summaries


@dataclass(frozen=True, slots=True)
class Ratio:
    """numerator ÷ denominator: the ratio of the medians, and the paired ratios' range."""

    value: float
    low: float
    high: float

    def as_dict(self) -> dict[str, float]:
        return asdict(self)


def paired_ratio(
    runs: list[dict[str, Any]], numerator: str, denominator: str, metric: str = "rps"
) -> Ratio | None:
    """``metric`` of ``numerator`` over ``denominator``; None when either was not measured."""

    def values(cell: str) -> dict[int, float]:
        kept = [r for r in runs if r["cell"] == cell and r["spread_ok"]]
        if metric == "rps":
            return {r["rep"]: r["rps"] for r in kept}
        return {r["rep"]: r["result"][metric] for r in kept}

    top, bottom = values(numerator), values(denominator)
    if not top or not bottom:
        return None
    medians = Spread.of(list(top.values())).median / Spread.of(list(bottom.values())).median
    paired = [top[rep] / bottom[rep] for rep in top.keys() & bottom.keys() if bottom[rep]]
    spread = Spread.of(paired) if paired else Spread.of([medians])
    return Ratio(medians, spread.low, spread.high)
