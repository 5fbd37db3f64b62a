"""A clock for unit tests of time-dependent logic: it moves only when the test moves it."""

from __future__ import annotations


class FakeClock:
    """Callable like ``time.monotonic`` (or ``time.time``); reads ``now``."""

    def __init__(self, now: float = 1_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds
