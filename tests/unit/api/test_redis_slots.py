"""Every script and every multi-key command Herald sends touches keys of one hash slot, so it
runs on Redis Cluster: the cache (fills, invalidations, list pages) and the rate limiter, as a
cluster client drives them. (On one node the limiter also fetches cache keys in its script, and
the invalidator retires list pages with the post's invalidation: both cross slots there, by
design, and are split on a cluster.)"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import Any

import pytest
from redis.crc import key_slot

from herald_api.access.ratelimit import RateLimiter
from herald_shared.cache import CachedPost, CacheKeys, PostCache
from herald_shared.resilience import Breaker

PREFIX = "herald:"


@dataclass
class _RecordingClient:
    """Records the keys of every script call and multi-key command."""

    calls: list[tuple[str, list[str]]] = field(default_factory=list)

    def register_script(self, script: str) -> _Script:
        return _Script(self, script)

    async def mget(self, keys: Any, *more: str) -> list[bytes | None]:
        names = [keys, *more] if isinstance(keys, str) else list(keys)
        self.calls.append(("MGET", names))
        return [None] * len(names)

    async def get(self, key: str) -> bytes | None:
        self.calls.append(("GET", [key]))
        return None


@dataclass
class _Script:
    client: _RecordingClient
    script: str

    async def __call__(
        self, keys: list[str], args: list[Any] | None = None, client: Any = None
    ) -> Any:
        self.client.calls.append((self.script, list(keys)))
        if "INCR" in self.script:  # the rate limit
            return [1, 9, 1000, 0, []]
        return b"1"


def slots(calls: list[tuple[str, list[str]]]) -> list[set[int]]:
    return [{key_slot(key.encode()) for key in keys} for _, keys in calls]


@pytest.fixture
def client() -> _RecordingClient:
    return _RecordingClient()


async def test_every_cache_script_touches_one_slot(client: _RecordingClient) -> None:
    keys = CacheKeys(PREFIX)
    cache = PostCache(
        client,  # type: ignore[arg-type]
        keys,
        ttl_seconds=60,
        tombstone_ttl_seconds=120,
        cluster=True,
    )
    post_id = uuid.uuid4()
    await cache.fill(post_id, CachedPost(2, "published", uuid.uuid4(), b"{}"))
    await cache.invalidate(post_id, 3)
    await cache.invalidate_with_lists(post_id, 4)
    await cache.retire_lists()
    generation = await cache.list_generation()
    await cache.fill_list(keys.list_page("q:20"), generation, b"[]")
    await client.mget(cache.list_keys("q:20"))

    assert len(client.calls) == 8
    assert all(len(keys) >= 1 for _, keys in client.calls)
    assert [len(s) for s in slots(client.calls)] == [1] * len(client.calls), client.calls
    # The post's entry and its fence share the post's slot; pages share the generation's.
    assert key_slot(keys.post(post_id).encode()) == key_slot(
        keys.post_invalidated(post_id).encode()
    )
    assert key_slot(keys.list_page("a").encode()) == key_slot(keys.list_generation().encode())


async def test_posts_spread_over_the_slots(client: _RecordingClient) -> None:
    """The tag is the post, not a constant: posts do not all land on one node."""
    keys = CacheKeys(PREFIX)
    assert len({key_slot(keys.post(uuid.uuid4()).encode()) for _ in range(50)}) > 40


@pytest.mark.parametrize(
    "also_get", [(), ("herald:{post:x}",), ("herald:{lists}:page:q", "herald:{lists}:gen")]
)
async def test_the_rate_limit_touches_one_slot_per_command_on_a_cluster(
    client: _RecordingClient, also_get: tuple[str, ...]
) -> None:
    limiter = RateLimiter(
        client,  # type: ignore[arg-type]
        CacheKeys(PREFIX),
        Breaker("test.redis", fail_max=3, reset_timeout=1),
        window_seconds=60,
        fail_closed=False,
        clock=lambda: 1_800_000_059.9,  # the last instant of a window: two windows' counters
        cluster=True,
    )
    await limiter.hit("key:abc:r", 10, also_get=also_get)
    assert [len(s) for s in slots(client.calls)] == [1] * len(client.calls), client.calls
    script_calls = [keys for name, keys in client.calls if name != "MGET"]
    assert len(script_calls) == 1
    assert len(script_calls[0]) == 2, "the counters of this window and the previous one"
    assert [keys for name, keys in client.calls if name == "MGET"] == (
        [list(also_get)] if also_get else []
    )
