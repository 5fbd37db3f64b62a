"""Per-destination breakers and room, with an injectable clock (no waiting)."""

from __future__ import annotations

import uuid

import pytest
from prometheus_client import REGISTRY

from herald_shared.resilience import BreakerOpenError
from herald_worker.webhooks.destinations import Destinations, HostFailureError
from herald_worker.webhooks.sender import AttemptResult
from tests.support.clock import FakeClock

TIMED_OUT = AttemptResult("failed", None, "timed out after 7 s", 7000, host_failure=True)


async def _fail(destinations: Destinations, origin: str) -> None:
    with pytest.raises(HostFailureError):
        async with destinations.get(origin).breaker.guard():
            raise HostFailureError(TIMED_OUT)


async def test_a_destination_breaker_opens_and_later_lets_one_probe_through() -> None:
    clock = FakeClock()
    destinations = Destinations(failures=2, reset_seconds=30, clock=clock)
    origin = "https://hooks.example.com:443"
    await _fail(destinations, origin)
    await _fail(destinations, origin)
    breaker = destinations.get(origin).breaker
    assert destinations.get(origin).breaker.is_open
    ran = False
    with pytest.raises(BreakerOpenError) as refused:
        async with breaker.guard():
            ran = True
    assert not ran, "an open breaker ran the call"
    assert refused.value.retry_after == pytest.approx(30)

    clock.now += 31
    assert not destinations.get(origin).breaker.is_open
    async with breaker.guard():
        pass  # the probe succeeds
    assert breaker.state == "closed"


async def test_destinations_are_origins_with_their_own_breakers() -> None:
    destinations = Destinations(failures=1, reset_seconds=30, clock=FakeClock())
    await _fail(destinations, "http://127.0.0.1:8001")
    assert destinations.get("http://127.0.0.1:8001").breaker.is_open
    assert not destinations.get("http://127.0.0.1:8002").breaker.is_open


async def test_room_counts_what_is_in_flight_at_each_webhooks_destination() -> None:
    destinations = Destinations(failures=5, reset_seconds=30)
    a, b, c = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    shared = destinations.get("https://one.example:443")
    shared.webhooks |= {a, b}
    shared.active = 3
    other = destinations.get("https://two.example:443")
    other.webhooks.add(c)
    other.active = 5
    assert destinations.room(4) == {a: 1, b: 1, c: 0}


def _sample(name: str, labels: dict[str, str] | None = None) -> float | None:
    return REGISTRY.get_sample_value(name, labels or {})


async def test_open_destinations_are_counted_in_one_gauge_not_one_label_each() -> None:
    """A customer's dead endpoint is not Herald's dependency: it must not appear in
    ``herald_breaker_open`` (which pages), only in the bounded count of open destinations."""
    clock = FakeClock()
    destinations = Destinations(failures=1, reset_seconds=30, clock=clock)
    origins = [f"http://127.0.0.1:{port}" for port in range(9001, 9006)]
    before = _sample("herald_webhook_destinations_open") or 0.0
    for origin in origins:
        await _fail(destinations, origin)
    assert _sample("herald_webhook_destinations_open") == before + len(origins)
    for origin in origins:
        breaker_label = {"breaker": f"webhook:{origin}"}
        assert _sample("herald_breaker_open", breaker_label) is None, origin

    clock.advance(31)
    async with destinations.get(origins[0]).breaker.guard():
        pass  # a probe succeeds: that destination is healthy again
    assert _sample("herald_webhook_destinations_open") == before + len(origins) - 1
    # Half-open still counts as not healthy; a failed probe does not count it twice.
    await _fail(destinations, origins[1])
    assert _sample("herald_webhook_destinations_open") == before + len(origins) - 1
