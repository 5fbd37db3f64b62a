"""The post cache: its keys, its entries, and the atomic fill and invalidation scripts.

Both the API (fills) and the cache-invalidator (invalidations) use this module, so their keys
can never disagree. Per post there are two keys:

- ``post:{id}``: the entry — a small header (revision, status, author) and the JSON bytes of the
  post exactly as the API sends them, so a hit is served without re-serialising;
- ``post:{id}:inv``: the newest revision an invalidation has been applied for. A fill carrying an
  older revision is refused atomically, so a slow reader can never resurrect data that an
  invalidation already removed. (A revision orders edits and enrichments: see ``revision``.)

First list pages that look the same to every viewer (published posts, any author/tag filter)
are cached too, under ``lists:page:{query}``. Every post change bumps the list generation
``lists:gen`` and deletes the pages recorded in ``lists:index``; a page read before that bump is
refused when it tries to fill. (The scripts assume one Redis node: they touch keys in several
hash slots, so Redis Cluster is not supported.)
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass

import redis.asyncio as redis

_SEPARATOR = b"|"

# KEYS[1] entry, KEYS[2] invalidated version; ARGV: version, entry, ttl ms, tombstone ttl ms.
_FILL = """
local invalidated = tonumber(redis.call('GET', KEYS[2]) or '0')
local version = tonumber(ARGV[1])
if version < invalidated then return 0 end
local current = redis.call('GET', KEYS[1])
if current then
  local current_version = tonumber(string.match(current, '^(%d+)|'))
  if current_version and current_version > version then return 0 end
end
redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
return 1
"""

# KEYS[1] entry, KEYS[2] invalidated version, KEYS[3] list generation, KEYS[4] list page index;
# ARGV: version, tombstone ttl ms. Returns the list generation after the bump.
_INVALIDATE = """
local invalidated = tonumber(redis.call('GET', KEYS[2]) or '0')
if tonumber(ARGV[1]) > invalidated then
  redis.call('SET', KEYS[2], ARGV[1], 'PX', ARGV[2])
else
  redis.call('PEXPIRE', KEYS[2], ARGV[2])
end
redis.call('DEL', KEYS[1])
local pages = redis.call('SMEMBERS', KEYS[4])
for i = 1, #pages, 500 do
  redis.call('DEL', unpack(pages, i, math.min(i + 499, #pages)))
end
redis.call('DEL', KEYS[4])
return redis.call('INCR', KEYS[3])
"""

# KEYS[1] page, KEYS[2] list generation, KEYS[3] list page index;
# ARGV: generation when the page was read, page bytes, ttl ms.
_FILL_LIST = """
if (redis.call('GET', KEYS[2]) or '0') ~= ARGV[1] then return 0 end
redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
redis.call('SADD', KEYS[3], KEYS[1])
redis.call('PEXPIRE', KEYS[3], ARGV[3])
return 1
"""


def revision(version: int, enriched: bool) -> int:
    """The representation's revision: every edit and every enrichment makes it grow.

    Entries and tombstones are ordered by revision rather than by version, because enrichment
    changes what a post looks like without changing its version.
    """
    return version * 2 + (1 if enriched else 0)


def version_of(revision_: int) -> tuple[int, bool]:
    """(version, enriched) of a revision."""
    return revision_ // 2, bool(revision_ % 2)


def revision_for_event(event_type: str, aggregate_version: int) -> int:
    """The revision an event's invalidation must refuse older fills below."""
    return revision(aggregate_version, event_type == "post.enriched")


@dataclass(frozen=True, slots=True)
class CacheKeys:
    prefix: str

    def post(self, post_id: uuid.UUID) -> str:
        return f"{self.prefix}post:{post_id}"

    def post_invalidated(self, post_id: uuid.UUID) -> str:
        return f"{self.prefix}post:{post_id}:inv"

    def list_generation(self) -> str:
        return f"{self.prefix}{{lists}}:gen"

    def list_index(self) -> str:
        return f"{self.prefix}{{lists}}:index"

    def list_page(self, query: str) -> str:
        """The first page of the list query ``query`` (a fingerprint of filters and limit)."""
        return f"{self.prefix}{{lists}}:page:{query}"

    def rate_limit(self, subject: str) -> str:
        return f"{self.prefix}rl:{subject}"

    def unknown_api_key(self, digest: str) -> str:
        """A bearer token found not to be valid, named by a digest of it (never the token)."""
        return f"{self.prefix}authx:{digest}"


@dataclass(frozen=True, slots=True)
class CachedPost:
    #: See ``revision``: ordered by edits and enrichment.
    version: int
    status: str
    author_id: uuid.UUID
    body: bytes


def encode_entry(version: int, status: str, author_id: uuid.UUID, body: bytes) -> bytes:
    return b"%d|%s|%s|" % (version, status.encode(), str(author_id).encode()) + body


def decode_entry(raw: bytes) -> CachedPost | None:
    """The entry, or None when it is not in the expected shape (treated as a miss)."""
    parts = raw.split(_SEPARATOR, 3)
    if len(parts) != 4:
        return None
    try:
        return CachedPost(int(parts[0]), parts[1].decode(), uuid.UUID(parts[2].decode()), parts[3])
    except ValueError:
        return None


class PostCache:
    """Fill and invalidate post entries. Callers wrap calls in the Redis breaker."""

    def __init__(
        self,
        client: redis.Redis,
        keys: CacheKeys,
        *,
        ttl_seconds: int,
        tombstone_ttl_seconds: int,
        list_ttl_seconds: int = 30,
    ) -> None:
        self.client = client
        self.keys = keys
        self._ttl_ms = ttl_seconds * 1000
        self._list_ttl_ms = list_ttl_seconds * 1000
        self._tombstone_ms = tombstone_ttl_seconds * 1000
        self._fill = client.register_script(_FILL)
        self._invalidate = client.register_script(_INVALIDATE)
        self._fill_list = client.register_script(_FILL_LIST)

    async def fill(self, post_id: uuid.UUID, entry: CachedPost) -> bool:
        """Store the entry unless an invalidation or a newer entry makes it stale."""
        stored = await self._fill(
            keys=[self.keys.post(post_id), self.keys.post_invalidated(post_id)],
            args=[
                entry.version,
                encode_entry(entry.version, entry.status, entry.author_id, entry.body),
                self._ttl_ms,
                self._tombstone_ms,
            ],
        )
        return bool(stored)

    async def invalidate(self, post_id: uuid.UUID, version: int) -> int:
        """Drop the entry, refuse fills older than ``version``, and retire cached list pages."""
        namespace: int = await self._invalidate(
            keys=[
                self.keys.post(post_id),
                self.keys.post_invalidated(post_id),
                self.keys.list_generation(),
                self.keys.list_index(),
            ],
            args=[version, self._tombstone_ms],
        )
        return namespace

    async def list_generation(self) -> bytes:
        """Read before the database: a fill carrying an older generation is refused."""
        generation = await self.client.get(self.keys.list_generation())
        return generation if isinstance(generation, bytes) else b"0"

    async def fill_list(self, page_key: str, generation: bytes, body: bytes) -> bool:
        """Store a first page unless a post changed since ``generation`` was read."""
        stored = await self._fill_list(
            keys=[page_key, self.keys.list_generation(), self.keys.list_index()],
            args=[generation, body, self._list_ttl_ms],
        )
        return bool(stored)
