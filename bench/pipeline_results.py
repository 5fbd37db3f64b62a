"""What one rate of the event pipeline measured, and what follows from a set of rates.

Per-event stages (``Stage``: published, handled, and the two auxiliary ones), the invalidator's
histogram for the rate (``BucketStage``), the rate's verdict (``RateResult.sustained``), and the
search for the highest sustained rate (``next_probe``, ``highest_sustained``). How the times are
taken is described in ``bench.pipeline``.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg

from bench.openloop import WriterResult
from bench.servers import read_histogram
from bench.stats import Latencies, percentile

QUANTILES = [*range(1, 100), 99.5, 99.9, 100]
LAG_METRIC = "herald_cache_invalidation_lag_seconds"
#: Invalidations each created post causes: its post.created and its post.enriched.
INVALIDATIONS_PER_POST = 2


@dataclass(slots=True)
class Stage:
    """One stage's per-event latencies (ms from commit), losses and duplicates for one rate."""

    latencies: Latencies
    lost: int
    duplicated: int
    #: The latency at each of ``QUANTILES`` (for the distribution plots).
    quantiles: list[float]

    @classmethod
    def of(cls, values: list[float], lost: int, duplicated: int) -> Stage:
        ordered = sorted(values)
        return cls(
            Latencies.of(ordered), lost, duplicated, [percentile(ordered, q) for q in QUANTILES]
        )

    def as_dict(self) -> dict[str, Any]:
        return {
            **self.latencies.as_dict(),
            "lost": self.lost,
            "duplicated": self.duplicated,
            "quantiles": [round(q, 3) for q in self.quantiles],
        }


@dataclass(slots=True)
class BucketStage:
    """A stage known from a histogram: how many observations fell at or under each bound."""

    #: Upper bound (ms) → observations at or under it (cumulative), this rate only.
    cumulative: dict[float, float]
    expected: int

    @property
    def count(self) -> int:
        return round(max(self.cumulative.values(), default=0))

    def bound(self, pct: float) -> float:
        """The smallest bucket bound (ms) that holds ``pct`` % of the observations."""
        need = pct / 100 * self.count
        for upper, seen in sorted(self.cumulative.items()):
            if seen >= need and self.count:
                return upper
        return math.nan

    def share_within(self, limit_ms: float) -> float:
        return self.cumulative.get(limit_ms, math.nan) / self.count if self.count else math.nan

    def as_dict(self) -> dict[str, Any]:
        return {
            "count": self.count,
            "expected": self.expected,
            "lost": max(0, self.expected - self.count),
            "p50_at_most": self.bound(50),
            "p95_at_most": self.bound(95),
            "p99_at_most": self.bound(99),
            "cumulative": {str(k): v for k, v in sorted(self.cumulative.items())},
        }


@dataclass(slots=True)
class RateResult:
    rate: int
    purpose: str  # "fixed" or "search"
    writer: WriterResult
    drained_seconds: float
    stages: dict[str, Stage] = field(default_factory=dict)
    invalidated: BucketStage | None = None
    #: CPU seconds per second of writing (cores): each service, the load generators, the
    #: servers (this run's PostgreSQL backends; all of RabbitMQ and Redis) and the machine.
    cpu_share: dict[str, float] = field(default_factory=dict)
    #: Median commit → handled latency of the first and the last fifth of the events (ms).
    trend: tuple[float, float] = (0.0, 0.0)

    @property
    def backlog_grew(self) -> bool:
        """The pipeline fell behind: the last events waited much longer than the first."""
        first, last = self.trend
        return last > 2 * first + 10

    @property
    def kept_pace(self) -> bool:
        http_errors = sum(1 for r in self.writer.responses if r[2] != 201)
        return (
            self.writer.achieved_rate >= 0.95 * self.rate
            and self.writer.errors + http_errors + self.writer.abandoned == 0
        )

    @property
    def lossless(self) -> bool:
        handled = all(s.lost == 0 for s in self.stages.values())
        invalidated = self.invalidated is not None and self.invalidated.as_dict()["lost"] == 0
        return handled and invalidated

    @property
    def sustained(self) -> bool:
        """The writes kept pace (≥ 95 % of the offered rate, nothing failed or abandoned), every
        event was handled and invalidated before the drain deadline, and no backlog grew."""
        return self.kept_pace and self.lossless and not self.backlog_grew

    def as_dict(self) -> dict[str, Any]:
        http = Latencies.of([r[1] * 1000 for r in self.writer.responses])
        return {
            "rate": self.rate,
            "purpose": self.purpose,
            "sent": self.writer.sent,
            "abandoned": self.writer.abandoned,
            "created": len(self.writer.created_ids),
            "achieved_rate": round(self.writer.achieved_rate, 1),
            "http_errors": self.writer.errors
            + sum(1 for r in self.writer.responses if r[2] != 201),
            "http_latency_ms": http.as_dict(),
            "drained_seconds": round(self.drained_seconds, 2),
            "sustained": self.sustained,
            "kept_pace": self.kept_pace,
            "lossless": self.lossless,
            "backlog_grew": self.backlog_grew,
            "handled_ms_first_vs_last_fifth": [round(v, 1) for v in self.trend],
            "cpu_share": {k: round(v, 3) for k, v in self.cpu_share.items()},
            "stages": {name: stage.as_dict() for name, stage in self.stages.items()},
            "invalidated": self.invalidated.as_dict() if self.invalidated else None,
        }


def lag_buckets(directory: Path) -> dict[float, float]:
    """Cumulative invalidations at or under each bound (ms), since the invalidator started."""
    running = 0.0
    cumulative: dict[float, float] = {}
    for upper, count in sorted(read_histogram(directory, LAG_METRIC).items()):
        running += count
        cumulative[round(upper * 1000, 6) if math.isfinite(upper) else math.inf] = running
    return cumulative


def minus(after: dict[float, float], before: dict[float, float]) -> dict[float, float]:
    return {k: v - before.get(k, 0.0) for k, v in after.items()}


def stages_of(
    ids: list[str], rows: list[asyncpg.Record]
) -> tuple[dict[str, Stage], tuple[float, float]]:
    """Per-event stages of the created posts (``STAGE_TIMES`` rows, in commit order), and the
    median commit → handled latency of the first and the last fifth of them."""
    published, handled, enriched_claimed, after_claim = [], [], [], []
    duplicated = 0
    for row in rows:
        occurred = row["occurred"]
        if row["published"] is not None:
            published.append((row["published"] - occurred) * 1000)
        if row["handled"]:
            duplicated += len(row["handled"]) - 1
            first = min(row["handled"])
            handled.append((first - occurred) * 1000)
            if row["published"] is not None:
                after_claim.append((first - row["published"]) * 1000)
        if row["enriched_claimed"] is not None:
            enriched_claimed.append((row["enriched_claimed"] - occurred) * 1000)
    fifth = max(1, len(handled) // 5)
    trend = (
        (statistics.median(handled[:fifth]), statistics.median(handled[-fifth:]))
        if handled
        else (0.0, 0.0)
    )
    stages = {
        "published": Stage.of(published, len(ids) - len(published), 0),
        "handled": Stage.of(handled, len(ids) - len(handled), duplicated),
        # Not stages of their own: the relay's claim of the post.enriched event the worker
        # emitted (certainly after the worker's commit: an upper bound of "handled"), and from
        # the relay's claim of post.created to the handled time.
        "enriched_claimed": Stage.of(enriched_claimed, 0, 0),
        "claimed_to_handled": Stage.of(after_claim, 0, 0),
    }
    return stages, trend


def next_probe(results: list[RateResult], low: int, high: int, resolution: float) -> int | None:
    """The next rate to try: bisect between the highest sustained and the lowest failed rate
    (geometric mean); None when they are within ``resolution`` of each other."""
    sustained = [r.rate for r in results if r.sustained]
    failed = [r.rate for r in results if not r.sustained]
    best = max(sustained, default=None)
    if best is None:
        lowest_failed = min(failed, default=high)
        return low if lowest_failed > low else None
    worst = min((f for f in failed if f > best), default=None)
    if worst is None:
        return high if best < high else None
    if worst / best <= 1 + resolution:
        return None
    return round(math.sqrt(best * worst))


def highest_sustained(results: list[dict[str, Any]]) -> int | None:
    """The highest rate that was sustained (from the JSON rows), as the search took it."""
    return max((r["rate"] for r in results if r["sustained"]), default=None)
