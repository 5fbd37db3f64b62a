"""Bearer tokens found not to be valid, remembered in Redis so a stranger's guess costs the
database at most one lookup per token per ``HERALD_API_UNKNOWN_KEY_CACHE_TTL_SECONDS``, across
every API process.

An entry is named by a digest of the token under a label of its own — never the token, nor the
SHA-256 stored for a real key — and holds why the token was refused (invalid or revoked).
Redis being unavailable makes every token unknown to this cache: the lookup happens, as it
would without it.
"""

from __future__ import annotations

import hashlib

import structlog

from herald_api.access.keys import INVALID, REVOKED
from herald_shared.cache import CacheKeys
from herald_shared.redis_client import REDIS_UNAVAILABLE, RedisClient
from herald_shared.resilience import Breaker

_log = structlog.get_logger(__name__)
_LABEL = b"herald unknown api key\x00"
_REASONS = {INVALID: b"invalid", REVOKED: b"revoked"}
_BY_VALUE = {value: reason for reason, value in _REASONS.items()}


class UnknownKeys:
    def __init__(
        self, client: RedisClient, keys: CacheKeys, breaker: Breaker, *, ttl_seconds: float
    ) -> None:
        self._client = client
        self._keys = keys
        self._breaker = breaker
        self._ttl_ms = max(1, int(ttl_seconds * 1000))

    def key_for(self, token: str) -> str:
        digest = hashlib.sha256(_LABEL + token.encode("ascii")).hexdigest()
        return self._keys.unknown_api_key(digest)

    @staticmethod
    def reason_of(value: bytes | None) -> str | None:
        """Why a remembered token was refused (None when it is not remembered)."""
        if value is None:
            return None
        return _BY_VALUE.get(value, INVALID)

    async def reason(self, token: str) -> str | None:
        """A plain GET, for when the rate limiter's script (which fetches it) is not in use."""
        try:
            async with self._breaker.guard():
                value = await self._client.get(self.key_for(token))
        except REDIS_UNAVAILABLE:
            return None
        return self.reason_of(value if isinstance(value, bytes) else None)

    async def remember(self, token: str, reason: str) -> None:
        try:
            async with self._breaker.guard():
                await self._client.set(
                    self.key_for(token), _REASONS.get(reason, b"invalid"), px=self._ttl_ms
                )
        except REDIS_UNAVAILABLE as exc:
            _log.debug("unknown key not remembered", error=repr(exc))
