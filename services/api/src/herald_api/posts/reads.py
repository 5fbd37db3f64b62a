"""The cached read path of posts: one post cache-aside over Redis with coalesced misses, the
first list pages every viewer sees alike, and the invalidation a writer applies right after its
commit.

A hit costs one Redis round trip (``read_through_cache`` fetches the entry, or a list page and
the list generation, with the read budget). A miss reads PostgreSQL (the replica when
configured) once per process however many requests are waiting, and fills the cache unless
an invalidation for a newer version got there first; a replica's row the cache refuses is read
again from the primary, never served. Any Redis failure degrades to reading PostgreSQL (the
primary, with a replica); it never fails the request.

The writer invalidates its post's entry after its commit; list pages are retired by the
cache-invalidator alone, once per post event (docs/decisions/0039-list-page-generations.md), so
until then a viewer that wrote lately (its write fence, fetched with the page) is not served a
cached page: it reads PostgreSQL as the replica routing allows (decision 0036).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass

import asyncpg
import structlog
from fastapi import Request

from herald_api.lifespan import AppState, get_state
from herald_api.posts.repository import ListQuery, fetch_post, is_enriched
from herald_api.posts.schemas import PostOut
from herald_api.replica import UNKNOWN, Fence, fence_key, fence_of, has_replica
from herald_shared.cache import INITIAL_GENERATION, CachedPost, current_list_page, revision
from herald_shared.metrics import REPLICA_ROUTING
from herald_shared.redis_client import REDIS_UNAVAILABLE

_log = structlog.get_logger(__name__)


def post_json(row: asyncpg.Record) -> bytes:
    return PostOut.model_validate(dict(row)).model_dump_json().encode()


def entry_of(row: asyncpg.Record) -> CachedPost:
    return CachedPost(
        revision(row["version"], is_enriched(row)), row["status"], row["author_id"], post_json(row)
    )


@dataclass(frozen=True, slots=True)
class PostLookup:
    """A read of one post: the key its cached entry is fetched under (none when the cache is
    off or Redis is down), fetched by ``read_through_cache`` with the read budget."""

    post_id: uuid.UUID
    cache_keys: tuple[str, ...]


async def post_lookup(post_id: uuid.UUID, request: Request) -> PostLookup:
    state = await get_state(request)
    if state.cache is None or state.redis_breaker.is_open:
        return PostLookup(post_id, ())
    return PostLookup(post_id, (state.cache.keys.post(post_id),))


@dataclass(frozen=True, slots=True)
class _LoadedPost(CachedPost):
    #: The cache took it: it was still current after every caller of the load had arrived.
    confirmed: bool = False


async def load_post(state: AppState, post_id: uuid.UUID) -> CachedPost | None:
    """Read the post from PostgreSQL (one read per process for concurrent misses) and fill.

    A caller that joined a load someone else started may have arrived after an invalidation
    that the load's read predates. Unless the load's fill was accepted (which proves the row
    was current when every joined caller had arrived), a joined caller reads again, in a load
    that starts after it arrived. At most two loads per caller, still shared.
    """
    for _ in range(2):
        started_here = False

        async def load() -> CachedPost | None:
            nonlocal started_here
            started_here = True
            return await _read_and_fill(state, post_id)

        entry = await state.post_reads.run(post_id, load)
        if started_here or (isinstance(entry, _LoadedPost) and entry.confirmed):
            break
    return entry


async def _read_and_fill(state: AppState, post_id: uuid.UUID) -> _LoadedPost | None:
    """The post as the cache accepts it. With a replica, a row the replica serves must prove
    itself current: its fill is accepted (no newer version was invalidated or cached). A row
    refused as stale, a fill that could not be tried, and a post the replica does not have
    (it may be new) are read again from the primary (decision 0036)."""
    cache_usable = state.cache is not None and not state.redis_breaker.is_open
    replica = has_replica(state)
    if replica and not cache_usable:
        REPLICA_ROUTING.labels("primary", "unchecked").inc()
    elif replica:
        async with state.db.reader() as conn:
            row = await fetch_post(conn, post_id)
        if row is None:
            REPLICA_ROUTING.labels("primary", "missing").inc()
        else:
            entry = entry_of(row)
            stored = await fill(state, post_id, entry)
            if stored is True:
                REPLICA_ROUTING.labels("replica", "version-checked").inc()
                return _LoadedPost(entry.version, entry.status, entry.author_id, entry.body, True)
            REPLICA_ROUTING.labels("primary", "stale" if stored is False else "unchecked").inc()
    async with state.db.writer() if replica else state.db.reader() as conn:
        row = await fetch_post(conn, post_id)
    if row is None:
        return None
    entry = entry_of(row)
    stored = await fill(state, post_id, entry)
    return _LoadedPost(
        entry.version, entry.status, entry.author_id, entry.body, confirmed=stored is True
    )


async def fill(state: AppState, post_id: uuid.UUID, entry: CachedPost) -> bool | None:
    """Whether the entry was stored (False: refused as stale); None when not attempted."""
    if state.cache is None or state.redis_breaker.is_open:
        return None
    try:
        async with state.redis_breaker.guard():
            return await state.cache.fill(post_id, entry)
    except REDIS_UNAVAILABLE as exc:
        _log.debug("cache fill skipped", post_id=str(post_id), error=repr(exc))
        return None


async def invalidate_after_write(state: AppState, post_id: uuid.UUID, version: int) -> None:
    """Best effort, right after commit: the writer reads its own write at once. The
    cache-invalidator applies the same invalidation from the event, which is the guarantee.

    ``version`` is the post's version after the write (its deletion counts as one more).
    """
    if (
        state.cache is None
        or not state.settings.cache.invalidate_on_write
        or state.redis_breaker.is_open
    ):
        return
    try:
        async with state.redis_breaker.guard():
            await state.cache.invalidate(post_id, revision(version, enriched=False))
    except REDIS_UNAVAILABLE as exc:
        _log.debug("invalidation after write skipped", post_id=str(post_id), error=repr(exc))


def list_page_keys(
    state: AppState, query: ListQuery | None, fingerprint: str, account_id: uuid.UUID
) -> tuple[str, ...]:
    """The keys of a first page every viewer sees alike (the page, the list generation: see
    ``list_page``; then the viewer's write fence), or none when not cacheable.

    Only published posts qualify (any author or tag filter): a page that may hold drafts
    depends on who asks.
    """
    if (
        state.cache is None
        or query is None
        or query.after is not None
        or query.status != "published"
        or query.visible_to is not None
        or state.redis_breaker.is_open
    ):
        return ()
    fence = fence_key(state, account_id)
    assert fence is not None
    return (*state.cache.list_keys(f"{fingerprint}:{query.limit}"), fence)


@dataclass(frozen=True, slots=True)
class ListLookup:
    #: The cached page, None on a miss, or when the viewer wrote lately (decision 0036): pages
    #: are retired by the cache-invalidator, after the writer's answer.
    page: bytes | None
    #: The generation to fill a miss under; None when Redis could not be asked.
    generation: bytes | None
    #: The viewer's write fence, as fetched with the page: None when it wrote nothing lately,
    #: ``UNKNOWN`` when it could not be fetched.
    fence: Fence


def list_page(values: tuple[bytes | None, ...]) -> ListLookup:
    """The lookup from the values of ``list_page_keys``. The generation was read before the
    database is, so a page read from data older than a later change is refused."""
    if len(values) != 3:
        return ListLookup(None, None, UNKNOWN)
    page, generation, fence = values
    current = current_list_page(page, generation) if fence is None else None
    return ListLookup(current, generation or INITIAL_GENERATION, fence_of(fence))


async def fill_list_page(state: AppState, key: str, generation: bytes, body: bytes) -> None:
    if state.cache is None:
        return
    try:
        async with state.redis_breaker.guard():
            await state.cache.fill_list(key, generation, body)
    except REDIS_UNAVAILABLE as exc:
        _log.debug("list page fill skipped", error=repr(exc))
