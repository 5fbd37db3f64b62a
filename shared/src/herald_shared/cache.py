"""The post cache: its keys, its entries, and the atomic fill and invalidation scripts.

Both the API (fills) and the cache-invalidator (invalidations) use this module, so their keys
can never disagree. Per post there are two keys, in one hash slot (``{post:<id>}``):

- ``{post:<id>}``: the entry — a small header (revision, status, author) and the JSON bytes of
  the post exactly as the API sends them, so a hit is served without re-serialising;
- ``{post:<id>}:inv``: the newest revision an invalidation has been applied for. A fill carrying
  an older revision is refused atomically, so a slow reader can never resurrect data that an
  invalidation already removed. (A revision orders edits and enrichments: see ``revision``.)

First list pages that look the same to every viewer (published posts, any author/tag filter)
are cached too, under ``{lists}:page:<query>``, each stored with the list generation
``{lists}:gen`` it was read under. A page is served only while the generation is unchanged, so
retiring every page is one write (``retire_lists``, done by the cache-invalidator once per post
event); a retired page is overwritten by the next fill or expires. A reader reads the
generation in the same round trip as the page, before querying PostgreSQL, and its fill is
refused when the generation has moved since (see docs/decisions/0039-list-page-generations.md).

Every script and multi-key command touches keys of one hash slot, so the cache runs on Redis
Cluster as on one node (see docs/decisions/0040-redis-cluster.md).
"""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import dataclass

from herald_shared.redis_client import RedisClient, is_cluster

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

# KEYS[1] entry, KEYS[2] invalidated version; ARGV: version, tombstone ttl ms.
_DROP_POST = """
local invalidated = tonumber(redis.call('GET', KEYS[2]) or '0')
if tonumber(ARGV[1]) > invalidated then
  redis.call('SET', KEYS[2], ARGV[1], 'PX', ARGV[2])
else
  redis.call('PEXPIRE', KEYS[2], ARGV[2])
end
redis.call('DEL', KEYS[1])
"""

# KEYS[#KEYS] list generation. The new generation is the server's clock in microseconds (or
# one more than the current one, if that is not larger): it never repeats a value even when
# the key was lost (a restart, an eviction, a failover to a replica that missed the last
# bumps), so a page retired before the loss can never match again. Returns the generation.
_NEXT_GENERATION = """
local now = redis.call('TIME')
local generation = tonumber(now[1]) * 1000000 + tonumber(now[2])
local current = tonumber(redis.call('GET', KEYS[#KEYS]) or '0')
if generation <= current then generation = current + 1 end
local text = string.format('%d', generation)
redis.call('SET', KEYS[#KEYS], text)
return text
"""

_INVALIDATE_POST = _DROP_POST + "return 1\n"
_RETIRE_LISTS = _NEXT_GENERATION
#: Both at once, for one node only: the post's keys and the generation are in two slots.
_INVALIDATE_WITH_LISTS = _DROP_POST + _NEXT_GENERATION

# KEYS[1] page, KEYS[2] list generation; ARGV: generation the page was read under,
# ``generation|page bytes``, ttl ms.
_FILL_LIST = """
if (redis.call('GET', KEYS[2]) or '0') ~= ARGV[1] then return 0 end
redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
return 1
"""

#: The generation before any post changed (its key absent).
INITIAL_GENERATION = b"0"


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
    """Every key Herald writes. The part in braces is the hash tag: keys that a script or a
    multi-key command touches together share it, so they live in one Redis Cluster slot."""

    prefix: str

    def post(self, post_id: uuid.UUID) -> str:
        return f"{self.prefix}{{post:{post_id}}}"

    def post_invalidated(self, post_id: uuid.UUID) -> str:
        return f"{self.prefix}{{post:{post_id}}}:inv"

    def list_generation(self) -> str:
        return f"{self.prefix}{{lists}}:gen"

    def list_page(self, query: str) -> str:
        """The first page of the list query ``query`` (a fingerprint of filters and limit)."""
        return f"{self.prefix}{{lists}}:page:{query}"

    def rate_limit(self, subject: str, window: int) -> str:
        """The request counter of ``subject`` in fixed window number ``window``."""
        return f"{self.prefix}{{rl:{subject}}}:{window}"

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


def encode_list_page(generation: bytes, body: bytes) -> bytes:
    return generation + _SEPARATOR + body


def current_list_page(raw_page: bytes | None, raw_generation: bytes | None) -> bytes | None:
    """The page's body when it was stored under the current generation, else None (a miss).

    ``raw_page`` and ``raw_generation`` are the values of ``list_page`` and ``list_generation``
    read in one round trip (``PostCache.list_keys``).
    """
    if raw_page is None:
        return None
    generation, separator, body = raw_page.partition(_SEPARATOR)
    if not separator or generation != (raw_generation or INITIAL_GENERATION):
        return None
    return body


class PostCache:
    """Fill and invalidate post entries and list pages. Callers wrap calls in the Redis
    breaker."""

    def __init__(
        self,
        client: RedisClient,
        keys: CacheKeys,
        *,
        ttl_seconds: int,
        tombstone_ttl_seconds: int,
        list_ttl_seconds: int = 30,
        cluster: bool | None = None,
    ) -> None:
        """``cluster``: whether keys of different slots may be on different nodes (by default,
        whether ``client`` is a cluster client)."""
        self.client = client
        self.keys = keys
        self._ttl_ms = ttl_seconds * 1000
        self._list_ttl_ms = list_ttl_seconds * 1000
        self._tombstone_ms = tombstone_ttl_seconds * 1000
        self._cluster = is_cluster(client) if cluster is None else cluster
        self._fill = client.register_script(_FILL)
        self._invalidate_post = client.register_script(_INVALIDATE_POST)
        self._retire_lists = client.register_script(_RETIRE_LISTS)
        self._fill_list = client.register_script(_FILL_LIST)
        self._invalidate_with_lists = client.register_script(_INVALIDATE_WITH_LISTS)

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

    async def invalidate(self, post_id: uuid.UUID, version: int) -> None:
        """Drop the entry and refuse fills older than ``version``. List pages are untouched:
        see ``invalidate_with_lists``."""
        await self._invalidate_post(
            keys=[self.keys.post(post_id), self.keys.post_invalidated(post_id)],
            args=[version, self._tombstone_ms],
        )

    async def retire_lists(self) -> bytes:
        """Make every cached list page a miss: one write, whatever the number of pages.
        Returns the new generation."""
        generation: bytes = await self._retire_lists(keys=[self.keys.list_generation()])
        return generation

    async def invalidate_with_lists(self, post_id: uuid.UUID, version: int) -> bytes:
        """``invalidate`` and ``retire_lists`` in one round trip: one script on one node; in a
        cluster, where the two are in different slots, both commands sent at once. Returns the
        new generation."""
        if self._cluster:
            _, retired = await asyncio.gather(
                self.invalidate(post_id, version), self.retire_lists()
            )
            return retired
        generation: bytes = await self._invalidate_with_lists(
            keys=[
                self.keys.post(post_id),
                self.keys.post_invalidated(post_id),
                self.keys.list_generation(),
            ],
            args=[version, self._tombstone_ms],
        )
        return generation

    def list_keys(self, query: str) -> tuple[str, str]:
        """The keys a list read fetches in one round trip (one slot): the page, then the
        generation. Give their values to ``current_list_page``."""
        return (self.keys.list_page(query), self.keys.list_generation())

    async def list_generation(self) -> bytes:
        """Read before the database: a fill carrying an older generation is refused."""
        generation = await self.client.get(self.keys.list_generation())
        return generation if isinstance(generation, bytes) else INITIAL_GENERATION

    async def fill_list(self, page_key: str, generation: bytes, body: bytes) -> bool:
        """Store a first page unless a post changed since ``generation`` was read."""
        stored = await self._fill_list(
            keys=[page_key, self.keys.list_generation()],
            args=[generation, encode_list_page(generation, body), self._list_ttl_ms],
        )
        return bool(stored)
