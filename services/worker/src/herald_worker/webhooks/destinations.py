"""Per-destination state of one worker: a circuit breaker and the deliveries in flight.

A destination is an origin (scheme, host, port): two services on one machine are two
destinations. Its breaker opens after ``breaker_failures`` consecutive host failures
(unreachable, timed out, 5xx, 429); while open, its deliveries are put back without an attempt,
so a dead or slow receiver holds at most ``per_host_concurrency`` delivery slots, and only
until its breaker opens.

A destination's health is the customer's business, not an outage of Herald: its breaker is not
exported under ``herald_breaker_open`` (which pages); ``herald_webhook_destinations_open``
counts the destinations whose breakers are open or half-open.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass, field

from herald_shared.metrics import WEBHOOK_DESTINATIONS_OPEN
from herald_shared.resilience import Breaker, Clock
from herald_worker.webhooks.sender import AttemptResult

#: Forget idle destinations with closed breakers beyond this many (bounds memory).
MAX_REMEMBERED = 10_000


class HostFailureError(Exception):
    """Raised inside a breaker's guard so that the failed attempt counts against the host."""

    def __init__(self, result: AttemptResult) -> None:
        super().__init__(result.error or "the destination failed")
        self.result = result


@dataclass(slots=True)
class Destination:
    origin: str
    breaker: Breaker
    active: int = 0
    #: Webhooks seen delivering here: claims take no more of their rows than there is room for.
    webhooks: set[uuid.UUID] = field(default_factory=set)


class Destinations:
    def __init__(
        self, *, failures: int, reset_seconds: float, clock: Clock = time.monotonic
    ) -> None:
        self._failures = failures
        self._reset = reset_seconds
        self._clock = clock
        self._known: dict[str, Destination] = {}
        #: Origins whose breaker is open or half-open.
        self._unhealthy: set[str] = set()

    def get(self, origin: str) -> Destination:
        destination = self._known.get(origin)
        if destination is None:
            self._forget_idle()
            destination = Destination(
                origin,
                Breaker(
                    f"webhook:{origin}",
                    fail_max=self._failures,
                    reset_timeout=self._reset,
                    counts=(HostFailureError,),
                    clock=self._clock,
                    on_change=lambda _, state: self._breaker_changed(origin, state),
                    exported=False,
                ),
            )
            self._known[origin] = destination
        return destination

    def _breaker_changed(self, origin: str, state: str) -> None:
        if state == "closed":
            if origin in self._unhealthy:
                self._unhealthy.discard(origin)
                WEBHOOK_DESTINATIONS_OPEN.dec()
        elif origin not in self._unhealthy:
            self._unhealthy.add(origin)
            WEBHOOK_DESTINATIONS_OPEN.inc()

    def room(self, per_destination: int) -> dict[uuid.UUID, int]:
        """How many more deliveries each known webhook's destination can take now (0: full)."""
        return {
            webhook: max(per_destination - destination.active, 0)
            for destination in self._known.values()
            for webhook in destination.webhooks
        }

    def _forget_idle(self) -> None:
        if len(self._known) < MAX_REMEMBERED:
            return
        for origin, destination in list(self._known.items()):
            if destination.active == 0 and destination.breaker.state == "closed":
                del self._known[origin]
