"""Figures tests measure along the way (e.g. invalidation lag), printed and repeated in the
terminal summary of every run (see tests/integration/cache/conftest.py), not only with ``-s``."""

from __future__ import annotations

import math

MEASUREMENTS: list[str] = []


def report(line: str) -> None:
    """Print a measurement (seen with ``-s``) and keep it for the terminal summary."""
    print(line)
    MEASUREMENTS.append(line)


def percentile(values: list[float], fraction: float) -> float:
    """Nearest-rank percentile of ``values`` (not empty)."""
    ordered = sorted(values)
    return ordered[max(1, math.ceil(fraction * len(ordered))) - 1]
