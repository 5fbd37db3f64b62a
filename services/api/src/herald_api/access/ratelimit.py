"""Sliding-window rate limits in Redis, one atomic script per request.

Algorithm: the sliding window counter (two fixed windows, the previous one weighted by how much
of it still overlaps the sliding window). It keeps two integers per subject instead of a log of
every request, and assumes requests in the previous window were evenly spread: the count it
estimates can be off by at most the previous window's count times the unevenness of its spread
— exact for a fresh subject, and within a few percent for steady traffic. See
docs/decisions/0004-rate-limit-algorithm.md.

The same script can also fetch the keys of a cached read (the post's entry; a list page and
its generation): a cached read costs one Redis round trip in total, rate limit included. On a
Redis Cluster those keys are in another slot than the counters, so the two commands are sent at
once instead (one round trip of waiting, two requests; docs/decisions/0040-redis-cluster.md).
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Callable
from dataclasses import dataclass

import structlog

from herald_shared.cache import CacheKeys
from herald_shared.redis_client import REDIS_ERRORS, RedisClient, is_cluster
from herald_shared.resilience import Breaker, BreakerOpenError

_log = structlog.get_logger(__name__)
_UNAVAILABLE: tuple[type[BaseException], ...] = (BreakerOpenError, *REDIS_ERRORS)

# KEYS[1] current window counter, KEYS[2] previous window counter (one slot: the subject's tag),
# KEYS[3...] (optional, one node only) keys to fetch when allowed. ARGV: now ms, window ms, limit.
# Returns {allowed, remaining, reset ms, retry-after ms, values}.
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
local values = {}
if allowed == 1 and #KEYS > 2 then values = redis.call('MGET', unpack(KEYS, 3)) end
return {allowed, math.max(0, math.floor(limit - count)), window - elapsed, retry_after, values}
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
    #: The values of the keys asked for with the hit (None for each absent one), when the
    #: request was allowed; empty otherwise.
    values: tuple[bytes | None, ...] = ()
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
        client: RedisClient,
        keys: CacheKeys,
        breaker: Breaker,
        *,
        window_seconds: int,
        fail_closed: bool,
        clock: Callable[[], float] = time.time,
        cluster: bool | None = None,
    ) -> None:
        """``cluster``: whether keys of different slots may be on different nodes (by default,
        whether ``client`` is a cluster client)."""
        self._client = client
        self._script = client.register_script(_HIT)
        self._cluster = is_cluster(client) if cluster is None else cluster
        self._refund = client.register_script(_REFUND)
        self._keys = keys
        self._breaker = breaker
        self._window_ms = window_seconds * 1000
        self.window_seconds = window_seconds
        self._fail_closed = fail_closed
        self._clock = clock

    async def hit(self, subject: str, limit: int, *, also_get: tuple[str, ...] = ()) -> LimitResult:
        """Count one request of ``subject`` against ``limit``; fetch the keys ``also_get``
        (all of one hash slot) in the same round trip."""
        now_ms = int(self._clock() * 1000)
        index = now_ms // self._window_ms
        keys = [self._keys.rate_limit(subject, index), self._keys.rate_limit(subject, index - 1)]
        args = [now_ms, self._window_ms, limit]
        try:
            async with self._breaker.guard():
                if self._cluster and also_get:
                    hit, fetched = await asyncio.gather(
                        self._script(keys=keys, args=args), self._client.mget(also_get)
                    )
                    allowed, remaining, reset_ms, retry_ms, _ = hit
                    values = fetched if allowed else []
                else:
                    allowed, remaining, reset_ms, retry_ms, values = await self._script(
                        keys=[*keys, *also_get], args=args
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
            values=tuple(v if isinstance(v, bytes) else None for v in values),
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
