"""The targets of the benchmark issue, each evaluated from one run's results: hit, miss, or
not measured (phase not selected) — never the hoped-for number."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

from bench.pipeline_results import highest_sustained
from bench.summary import paired_ratio


@dataclass(frozen=True, slots=True)
class Verdict:
    target: str
    measured: str
    status: str  # "hit", "miss", "reported" (no target), "not measured"
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


def _reported_ratio(name: str, numerator: str, denominator: str) -> Callable[..., Verdict]:
    """A ratio with no target, reported alongside the targets."""

    def evaluate(results: dict[str, Any]) -> Verdict:
        ratio = paired_ratio(results.get("http_runs", []), numerator, denominator)
        if ratio is None:
            return Verdict(name, "-", "not measured")
        measured = f"{ratio.value:.2f}x (paired {ratio.low:.2f}-{ratio.high:.2f})"
        return Verdict(name, measured, "reported", ratio.value)

    return evaluate


def _list_hit_rate(results: dict[str, Any]) -> Verdict:
    name = "list-page cache hit rate >= 80 % at 10 writes/s"
    runs = [
        r
        for r in results.get("http_runs", [])
        if r["cell"] == "herald/list_under_writes" and r["spread_ok"]
    ]
    hits = sum(r["cache"].get("hit", 0) for r in runs)
    lookups = hits + sum(r["cache"].get("miss", 0) for r in runs)
    if not runs or not lookups:
        return Verdict(name, "-", "not measured")
    rate = hits / lookups
    seconds = sum(r["result"]["seconds"] for r in runs)
    writes = sum(r.get("writes", 0) for r in runs) / seconds if seconds else 0.0
    measured = f"{rate:.1%} of {lookups:,.0f} lookups ({writes:.1f} writes/s achieved)"
    return Verdict(name, measured, "hit" if rate >= 0.8 else "miss", rate)


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


def _fixed_rate(results: dict[str, Any], rate: int) -> dict[str, Any] | None:
    return next(
        (r for r in results.get("pipeline", []) if r["rate"] == rate and r["purpose"] == "fixed"),
        None,
    )


def _handled(rate: int, limit_ms: float) -> Callable[[dict[str, Any]], Verdict]:
    name = f"commit -> handled p99 <= {limit_ms:g} ms at {rate}/s"

    def evaluate(results: dict[str, Any]) -> Verdict:
        row = _fixed_rate(results, rate)
        if row is None:
            return Verdict(name, "-", "not measured")
        p99 = row["stages"]["handled"]["p99"]
        note = "" if row["sustained"] else f", rate not sustained ({row['achieved_rate']:.0f}/s)"
        status = "hit" if p99 <= limit_ms and row["sustained"] else "miss"
        return Verdict(name, f"p99 {p99:.1f} ms{note}", status, p99)

    return evaluate


def _invalidated(rate: int, limit_ms: float) -> Callable[[dict[str, Any]], Verdict]:
    name = f"commit -> invalidated p99 <= {limit_ms:g} ms at {rate}/s"

    def evaluate(results: dict[str, Any]) -> Verdict:
        row = _fixed_rate(results, rate)
        if row is None or not row.get("invalidated"):
            return Verdict(name, "-", "not measured")
        inv = row["invalidated"]
        count = inv["count"]
        within = inv["cumulative"].get(str(float(limit_ms)), 0.0)
        share = within / count if count else 0.0
        note = "" if row["sustained"] else f", rate not sustained ({row['achieved_rate']:.0f}/s)"
        measured = (
            f"{share:.2%} within {limit_ms:g} ms (p99 <= {inv['p99_at_most']:g} ms bucket){note}"
        )
        status = "hit" if share >= 0.99 and row["sustained"] else "miss"
        return Verdict(name, measured, status, share)

    return evaluate


def _highest_rate(at_least: int) -> Callable[[dict[str, Any]], Verdict]:
    name = f"highest sustained end-to-end rate >= {at_least} writes/s"

    def evaluate(results: dict[str, Any]) -> Verdict:
        rows = results.get("pipeline", [])
        if not rows:
            return Verdict(name, "-", "not measured")
        best = highest_sustained(rows)
        tried = ", ".join(
            f"{r['rate']}{'' if r['sustained'] else ' (not)'}"
            for r in sorted(rows, key=lambda r: r["rate"])
        )
        if best is None:
            return Verdict(name, f"none sustained (tried {tried})", "miss", 0.0)
        status = "hit" if best >= at_least else "miss"
        return Verdict(name, f"{best} writes/s (tried {tried})", status, float(best))

    return evaluate


def _workers(name: str, top: str, bottom: str, at_least: float | None) -> Callable[..., Verdict]:
    """``top`` over ``bottom`` messages per second; ``at_least`` None: reported, no target."""

    def evaluate(results: dict[str, Any]) -> Verdict:
        cases = results.get("workers", {}).get("cases", {})
        if top not in cases or bottom not in cases:
            return Verdict(name, "-", "not measured")
        ratio = cases[top]["median"] / cases[bottom]["median"]
        if at_least is None:
            return Verdict(name, f"{ratio:.2f}x", "reported", ratio)
        return Verdict(name, f"{ratio:.2f}x", "hit" if ratio >= at_least else "miss", ratio)

    return evaluate


TARGETS: list[Callable[[dict[str, Any]], Verdict]] = [
    _ratio_target(
        "cached GET >= 1.5 x P1 cached GET", "herald/get_cached", "peers/p1_get_cached", 1.5
    ),
    _ratio_target("POST >= 1.0 x P2", "herald/post", "peers/p2_post", 1.0),
    _ratio_target("cached GET >= 0.6 x fair B2", "herald/get_cached", "baselines/b2", 0.6),
    _ratio_target("POST >= 0.5 x fair B4", "herald/post", "baselines/b4", 0.5),
    _workers(
        "worker, idempotent task >= 1.5 x Celery solo", "herald-idempotent", "celery-solo", 1.5
    ),
    _workers("worker, idempotent task >= 1.2 x FastStream", "herald-idempotent", "faststream", 1.2),
    _workers("worker, idempotent task >= 1.2 x Dramatiq", "herald-idempotent", "dramatiq", 1.2),
    _workers("worker, inbox task >= 1.0 x Celery solo", "herald-inbox", "celery-solo", 1.0),
    _highest_rate(900),
    _handled(200, 10),
    _invalidated(500, 50),
    _list_hit_rate,
    _tracing,
    _reported_ratio(
        "cached first list page / P1 cached first list page",
        "herald/list_first",
        "peers/p1_list_first",
    ),
    _reported_ratio("uncached GET / fair B3", "herald-nocache/get_uncached", "baselines/b3"),
    _reported_ratio(
        "cached GET, 2 API processes / 1", "herald/get_cached", "herald-1proc/get_cached"
    ),
    _workers(
        "worker, idempotent task on a classic queue / Dramatiq (classic)",
        "herald-idempotent-classic",
        "dramatiq",
        None,
    ),
]


def evaluate(results: dict[str, Any]) -> list[Verdict]:
    return [target(results) for target in TARGETS]
