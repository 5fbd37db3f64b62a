"""The sliding-window-counter script itself, on the real Redis, driven by a fake clock.

The limiter keeps two counters per subject (this fixed window and the previous one) and
estimates the requests of the last ``W`` seconds as ``prev * (W - elapsed) / W + curr``, i.e.
it assumes the previous window's requests were spread evenly. The error bound these tests pin
down:

- no traffic in the previous window: exact (exactly ``L`` requests per window);
- evenly spread traffic: within one request of the true sliding count;
- otherwise the estimate is off by at most ``prev`` times the unevenness. Worst cases: a burst
  at the very end of a window still counts fully in the true sliding window but only
  ``(W - e)/W`` of it in the estimate, so up to ``L · e/W`` extra requests pass and a true
  sliding window can hold up to ``2L - 1``; a burst at the very start of a window has truly slid
  out, yet keeps refusing ``L · (W - e)/W`` requests.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import pytest
import redis.asyncio as redis

from herald_api.access.ratelimit import LimitResult, RateLimiter
from herald_shared.cache import CacheKeys
from herald_shared.resilience import Breaker
from tests.support.cache import REDIS_URL
from tests.support.clock import FakeClock

W = 10
L = 100
#: A window start far from zero, so "window i - 1" is a real window too.
T0 = 1_800_000_000.0


@pytest.fixture
async def client() -> AsyncIterator[redis.Redis]:
    client = redis.Redis.from_url(REDIS_URL)
    try:
        yield client
    finally:
        await client.aclose()


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(T0)


@pytest.fixture
def limiter(client: redis.Redis, clock: FakeClock, redis_prefix: str) -> RateLimiter:
    keys = CacheKeys(f"{redis_prefix}sw-{uuid.uuid4().hex[:8]}:")
    breaker = Breaker("test.redis", fail_max=3, reset_timeout=1)
    return RateLimiter(client, keys, breaker, window_seconds=W, fail_closed=False, clock=clock)


async def hit(limiter: RateLimiter, clock: FakeClock, at: float, subject: str = "s") -> LimitResult:
    clock.now = at
    return await limiter.hit(subject, L)


async def burst(limiter: RateLimiter, clock: FakeClock, at: float, count: int) -> int:
    """``count`` requests at one instant; returns how many were allowed."""
    return sum([(await hit(limiter, clock, at)).allowed for _ in range(count)])


@pytest.mark.parametrize("offset", [0.0, 0.001, W / 2, W - 0.001])
async def test_a_fresh_subject_gets_exactly_the_limit_in_a_window(
    limiter: RateLimiter, clock: FakeClock, offset: float
) -> None:
    results = [await hit(limiter, clock, T0 + offset) for _ in range(L + 5)]
    assert [r.allowed for r in results] == [True] * L + [False] * 5
    assert [r.remaining for r in results[:L]] == list(range(L - 1, -1, -1))
    assert {r.reset_seconds for r in results} == {max(1, -(-(W - offset) // 1))}
    assert all(r.retry_after_seconds is None for r in results[:L])
    assert all(r.retry_after_seconds and r.retry_after_seconds > 0 for r in results[L:])


async def test_evenly_spread_traffic_is_limited_to_within_one_request(
    limiter: RateLimiter, clock: FakeClock
) -> None:
    """Offered at three times the limit, evenly, for five windows. The first window admits
    its L at once (a fresh subject is exact); from then on admissions are spread evenly, and
    every trailing window of length W holds L requests, give or take one."""
    step = W / (3 * L)
    allowed: list[float] = []
    for n in range(5 * 3 * L):
        at = T0 + n * step
        if (await hit(limiter, clock, at)).allowed:
            allowed.append(at)
    ends = [T0 + 2 * W + k * 7 * step for k in range(int(3 * W / (7 * step)))]
    counts = [sum(1 for at in allowed if end - W < at <= end) for end in ends]
    assert min(counts) >= L - 1
    assert max(counts) <= L + 1


async def test_evenly_spread_traffic_under_the_limit_is_never_refused(
    limiter: RateLimiter, clock: FakeClock
) -> None:
    step = W / (0.9 * L)
    results = [await hit(limiter, clock, T0 + n * step) for n in range(int(4.5 * L))]
    assert all(result.allowed for result in results)


async def test_a_burst_at_the_end_of_a_window_lets_up_to_twice_the_limit_through(
    limiter: RateLimiter, clock: FakeClock
) -> None:
    end_of_first = T0 + W - 0.001
    assert await burst(limiter, clock, end_of_first, L) == L
    # Halfway through the next window the estimate weighs the burst by one half...
    assert await burst(limiter, clock, T0 + W + W / 2, L) == L // 2
    # ...so the true count of the last W seconds is 1.5 L; just before the burst slides out it
    # approaches (never reaches) 2 L.
    assert await burst(limiter, clock, T0 + 2 * W - 0.002, L) == L // 2 - 1
    true_count = L + L // 2 + L // 2 - 1
    assert true_count == 2 * L - 1


async def test_a_burst_at_the_start_of_a_window_keeps_refusing_after_it_slid_out(
    limiter: RateLimiter, clock: FakeClock
) -> None:
    assert await burst(limiter, clock, T0, L) == L
    # At T0 + 1.5 W the burst is 1.5 W old: truly nothing in the last W seconds, yet the
    # estimate still counts half of it.
    assert await burst(limiter, clock, T0 + W + W / 2, L) == L // 2


async def test_retry_after_is_the_first_whole_second_a_request_fits(
    limiter: RateLimiter, clock: FakeClock
) -> None:
    cases = [
        (T0 + 2.5, T0 + 2.5),  # both bursts in one window: wait for the next one
        (T0 + 1.0, T0 + W + 3.7),  # previous window fading: later in this window
        (T0 + W - 0.4, T0 + W + 0.2),  # burst at the end of the previous window
    ]
    for n, (first, second) in enumerate(cases):
        subject = f"case-{n}"
        clock.now = first
        for _ in range(L // 2):
            assert (await limiter.hit(subject, L)).allowed
        clock.now = second
        while (result := await limiter.hit(subject, L)).allowed:
            pass
        assert result.retry_after_seconds is not None
        refused_at = clock.now
        clock.now = refused_at + result.retry_after_seconds - 1
        assert not (await limiter.hit(subject, L)).allowed, f"case {n}: fits a second earlier"
        clock.now = refused_at + result.retry_after_seconds
        assert (await limiter.hit(subject, L)).allowed, f"case {n}: does not fit at Retry-After"
