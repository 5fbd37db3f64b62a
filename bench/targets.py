"""The targets of the benchmark issue, each evaluated from one run's results: hit, miss, or
not measured (phase not selected) — never the hoped-for number."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

from bench.summary import paired_ratio


@dataclass(frozen=True, slots=True)
class Verdict:
    target: str
    measured: str
    status: str  # "hit", "miss", "not implemented", "not measured"
    value: float | None = None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _ratio_target(
    name: str, numerator: str, denominator: str, at_least: float, metric: str = "rps"
) -> Callable[[dict[str, Any]], Verdict]:
    def evaluate(results: dict[str, Any]) -> Verdict:
        ratio = paired_ratio(results.get("http_runs", []), numerator, denominator, metric)
        if ratio is None:
            return Verdict(name, "-", "not measured")
        status = "hit" if ratio.value >= at_least else "miss"
        measured = f"{ratio.value:.2f}x (paired {ratio.low:.2f}-{ratio.high:.2f})"
        return Verdict(name, measured, status, ratio.value)

    return evaluate


def _latency_ratio(results: dict[str, Any]) -> Verdict:
    name = "deep keyset page <= 1.5 x first page (p50 latency, both uncached)"
    ratio = paired_ratio(
        results.get("http_runs", []),
        "herald-nocache/list_deep",
        "herald-nocache/list_first",
        "p50_ms",
    )
    if ratio is None:
        return Verdict(name, "-", "not measured")
    measured = f"{ratio.value:.2f}x (paired {ratio.low:.2f}-{ratio.high:.2f})"
    return Verdict(name, measured, "hit" if ratio.value <= 1.5 else "miss", ratio.value)


def _list_cache(results: dict[str, Any]) -> Verdict:
    name = "cached / uncached first list page >= 1.3 (2 API processes)"
    verdict = _ratio_target(name, "herald/list_first", "herald-nocache/list_first", 1.3)(results)
    if verdict.status == "not measured" or results.get("list_cache_implemented", False):
        return verdict
    measured = f"the API caches no list page; cache on / off {verdict.measured}"
    return Verdict(name, measured, "not implemented", verdict.value)


def _tracing(results: dict[str, Any]) -> Verdict:
    name = "tracing at 10 % costs <= 10 % of cached-GET throughput"
    ratio = paired_ratio(
        results.get("http_runs", []), "herald-trace10/get_cached", "herald/get_cached"
    )
    if ratio is None:
        return Verdict(name, "-", "not measured")
    cost = 1 - ratio.value
    measured = f"costs {cost:.1%} (paired {1 - ratio.high:.1%}-{1 - ratio.low:.1%})"
    return Verdict(name, measured, "hit" if cost <= 0.10 else "miss", cost)


def _pipeline(stage: str, rate: int, limit_ms: float) -> Callable[[dict[str, Any]], Verdict]:
    name = f"commit -> {stage} p99 <= {limit_ms:g} ms at {rate}/s"

    def evaluate(results: dict[str, Any]) -> Verdict:
        found = [r for r in results.get("pipeline", []) if r["rate"] == rate]
        if not found:
            return Verdict(name, "-", "not measured")
        row = found[0]
        p99 = row["stages"][stage]["p99"]
        note = "" if row["sustained"] else f", rate not sustained ({row['achieved_rate']:.0f}/s)"
        status = "hit" if p99 <= limit_ms and row["sustained"] else "miss"
        return Verdict(name, f"p99 {p99:.1f} ms{note}", status, p99)

    return evaluate


def _publish(results: dict[str, Any]) -> Verdict:
    name = "pipelined relay publishing >= 4 x one-at-a-time"
    publish = results.get("publish")
    if not publish:
        return Verdict(name, "-", "not measured")
    ratio = publish["pipelined"]["median"] / publish["one_at_a_time"]["median"]
    return Verdict(name, f"{ratio:.2f}x", "hit" if ratio >= 4 else "miss", ratio)


def _workers(name: str, top: str, bottom: str, at_least: float) -> Callable[..., Verdict]:
    def evaluate(results: dict[str, Any]) -> Verdict:
        cases = results.get("workers", {}).get("cases", {})
        if top not in cases or bottom not in cases:
            return Verdict(name, "-", "not measured")
        ratio = cases[top]["median"] / cases[bottom]["median"]
        return Verdict(name, f"{ratio:.2f}x", "hit" if ratio >= at_least else "miss", ratio)

    return evaluate


TARGETS: list[Callable[[dict[str, Any]], Verdict]] = [
    _ratio_target("cached GET >= 0.85 x B2", "herald/get_cached", "baselines/b2", 0.85),
    _list_cache,
    _ratio_target("uncached GET >= 0.80 x B3", "herald-nocache/get_uncached", "baselines/b3", 0.8),
    _ratio_target("POST >= 0.50 x B4", "herald/post", "baselines/b4", 0.5),
    _latency_ratio,
    _pipeline("handled", 200, 10),
    _pipeline("handled", 1000, 75),
    _pipeline("invalidated", 500, 50),
    _publish,
    _workers("worker >= 2 x Celery solo", "herald-1", "celery-solo", 2),
    _workers("worker >= 3 x Celery prefork-2", "herald-1", "celery-prefork2", 3),
    _workers("2 worker processes >= 1.2 x 1", "herald-2", "herald-1", 1.2),
    _ratio_target(
        "cached GET, 2 API processes >= 1.4 x 1",
        "herald/get_cached",
        "herald-1proc/get_cached",
        1.4,
    ),
    _tracing,
]


def evaluate(results: dict[str, Any]) -> list[Verdict]:
    return [target(results) for target in TARGETS]
