"""Sliding-window rate limits in Redis, one atomic script per request.

Algorithm: the sliding window counter (two fixed windows, the previous one weighted by how much
of it still overlaps the sliding window). It keeps two integers per subject instead of a log of
every request, and assumes requests in the previous window were evenly spread: the count it
estimates can be off by at most the previous window's count times the unevenness of its spread
— exact for a fresh subject, and within a few percent for steady traffic. See
docs/decisions/0004-rate-limit-algorithm.md.

The same script can also GET one more key (the cached post): a cached read costs one Redis
round trip in total, rate limit included.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass

import redis.asyncio as redis
import structlog

from herald_shared.cache import CacheKeys
from herald_shared.redis_client import REDIS_ERRORS
from herald_shared.resilience import Breaker, BreakerOpenError

_log = structlog.get_logger(__name__)
_UNAVAILABLE: tuple[type[BaseException], ...] = (BreakerOpenError, *REDIS_ERRORS)

# KEYS[1] current window counter, KEYS[2] previous window counter, KEYS[3] (optional) key to GET.
# ARGV: now ms, window ms, limit. Returns {allowed, remaining, reset ms, retry-after ms, value}.
_HIT = """
local now = tonumber(ARGV[1])
local window = tonumber(ARGV[2])
local limit = tonumber(ARGV[3])
local elapsed = now % window
local prev = tonumber(redis.call('GET', KEYS[2]) or '0')
local curr = tonumber(redis.call('GET', KEYS[1]) or '0')
local count = prev * (window - elapsed) / window + curr
local allowed = 0
local retry_after = 0
if count + 1 <= limit then
  allowed = 1
  if redis.call('INCR', KEYS[1]) == 1 then redis.call('PEXPIRE', KEYS[1], window * 2) end
  count = count + 1
elseif curr + 1 <= limit and prev > 0 then
  -- later in this window, once enough of the previous window has slid out
  retry_after = math.ceil(window * (1 - (limit - 1 - curr) / prev)) - elapsed
else
  -- in the next window, where this window's count is the one that fades
  local into_next = 0
  if curr > 0 then into_next = window * math.max(0, 1 - (limit - 1) / curr) end
  retry_after = window - elapsed + math.ceil(into_next)
end
local value = false
if allowed == 1 and #KEYS > 2 then value = redis.call('GET', KEYS[3]) end
return {allowed, math.max(0, math.floor(limit - count)), window - elapsed, retry_after, value}
"""


@dataclass(frozen=True, slots=True)
class LimitResult:
    allowed: bool
    limit: int
    window_seconds: int
    #: None when Redis could not be asked (the limit failed open).
    remaining: int | None = None
    reset_seconds: int | None = None
    retry_after_seconds: int | None = None
    #: The extra key's value, when one was asked for and the request was allowed.
    value: bytes | None = None
    #: The counter the request was counted in, when it was (for ``RateLimiter.refund``).
    counted_in: str | None = None

    def headers(self) -> list[tuple[bytes, bytes]]:
        headers = [
            (b"ratelimit-limit", str(self.limit).encode()),
            (b"ratelimit-policy", f"{self.limit};w={self.window_seconds}".encode()),
        ]
        if self.remaining is not None and self.reset_seconds is not None:
            headers.append((b"ratelimit-remaining", str(self.remaining).encode()))
            headers.append((b"ratelimit-reset", str(self.reset_seconds).encode()))
        return headers


# KEYS[1] a window counter: take back one request counted in it, if it still holds any.
_REFUND = """
local count = tonumber(redis.call('GET', KEYS[1]) or '0')
if count > 0 then return redis.call('DECR', KEYS[1]) end
return 0
"""


class RateLimitUnavailableError(Exception):
    """Redis cannot be asked and the limiter is configured to fail closed."""


class RateLimiter:
    def __init__(
        self,
        client: redis.Redis,
        keys: CacheKeys,
        breaker: Breaker,
        *,
        window_seconds: int,
        fail_closed: bool,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._script = client.register_script(_HIT)
        self._refund = client.register_script(_REFUND)
        self._keys = keys
        self._breaker = breaker
        self._window_ms = window_seconds * 1000
        self.window_seconds = window_seconds
        self._fail_closed = fail_closed
        self._clock = clock

    async def hit(self, subject: str, limit: int, *, also_get: str | None = None) -> LimitResult:
        """Count one request of ``subject`` against ``limit``; optionally GET ``also_get``."""
        now_ms = int(self._clock() * 1000)
        index = now_ms // self._window_ms
        base = self._keys.rate_limit(subject)
        keys = [f"{base}:{index}", f"{base}:{index - 1}"]
        if also_get is not None:
            keys.append(also_get)
        try:
            async with self._breaker.guard():
                allowed, remaining, reset_ms, retry_ms, value = await self._script(
                    keys=keys, args=[now_ms, self._window_ms, limit]
                )
        except _UNAVAILABLE as exc:
            if self._fail_closed:
                raise RateLimitUnavailableError from exc
            _log.debug("rate limit failed open", subject=subject, error=repr(exc))
            return LimitResult(True, limit, self.window_seconds)
        return LimitResult(
            allowed=bool(allowed),
            limit=limit,
            window_seconds=self.window_seconds,
            remaining=int(remaining),
            reset_seconds=math.ceil(int(reset_ms) / 1000),
            retry_after_seconds=max(1, math.ceil(int(retry_ms) / 1000)) if not allowed else None,
            value=value if isinstance(value, bytes) else None,
            counted_in=keys[0] if allowed else None,
        )

    async def refund(self, result: LimitResult) -> None:
        """Take back the request ``result`` counted (best effort: Redis failing keeps it)."""
        if result.counted_in is None:
            return
        try:
            async with self._breaker.guard():
                await self._refund(keys=[result.counted_in])
        except _UNAVAILABLE as exc:
            _log.debug("rate limit refund failed", error=repr(exc))
