"""Which server a read goes to when a streaming replica is configured (decision 0036).

A replica may lag. A read goes to it only when it provably holds what the read must see, and to
the primary otherwise; positions are WAL positions (LSNs, as bytes since ``0/0``):

- **a client reads its own writes:** after each write the API records the primary's WAL insert
  position, taken after the commit, as the account's *write fence* in Redis (kept for
  ``HERALD_DB_REPLICA_FENCE_SECONDS``; only ever raised). That account's reads use the replica
  only once it has replayed up to the fence. A fence that cannot be read (Redis down) sends the
  read to the primary;
- **a cached page is never filled from a replica older than its generation:** a list page read
  for the cache reads the list generation, then the primary's position, and is filled only if
  the replica had replayed that far before the query ran (``Reading.current``);
- **a post older than a completed invalidation is never served:** ``herald_api.posts.reads``
  compares versions (the fill's version fence) and falls back to the primary.

The check runs on the replica connection in the read's own transaction, before the query: the
query's snapshot is taken after it, and both reach the same server even behind PgBouncer.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass

import asyncpg
import structlog

from herald_api.lifespan import AppState
from herald_shared.db import UNAVAILABLE_ERRORS, Connection
from herald_shared.metrics import REPLICA_ROUTING
from herald_shared.redis_client import REDIS_UNAVAILABLE

_log = structlog.get_logger(__name__)
_RECORDING_FAILURES: tuple[type[BaseException], ...] = (
    *REDIS_UNAVAILABLE,
    *UNAVAILABLE_ERRORS,
    asyncpg.PostgresError,
)

#: The primary's WAL insert position, as a number: at or past the end of every commit so far.
_PRIMARY_POSITION = "SELECT pg_wal_lsn_diff(pg_current_wal_insert_lsn(), '0/0')::bigint"
#: How far this server has replayed; NULL on a primary, which holds everything.
_REPLAYED = (
    "SELECT CASE WHEN pg_is_in_recovery() "
    "THEN pg_wal_lsn_diff(pg_last_wal_replay_lsn(), '0/0')::bigint END"
)

# KEYS[1] the account's write fence; ARGV: position, ttl ms. Only ever raised.
_RAISE_FENCE = """
local current = redis.call('GET', KEYS[1])
if not current or tonumber(ARGV[1]) > tonumber(current) then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
else
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 1
"""


class _Unknown:
    """A fence that could not be read: only the primary is known to be current."""


UNKNOWN = _Unknown()
Fence = int | None | _Unknown


def has_replica(state: AppState) -> bool:
    return state.db.replica is not state.db.primary


def fence_key(state: AppState, account_id: uuid.UUID) -> str | None:
    """The account's write fence: in the list pages' slot, so that a list read fetches it in the
    same round trip as the page (a writer is not served a page cached before its write)."""
    if state.cache is None:
        return None
    return f"{state.cache.keys.prefix}{{lists}}:rw:{account_id}"


def fence_of(raw: bytes | str | None) -> int | None:
    """The fence's position from its stored value (0 without a replica); None when absent."""
    return None if raw is None else int(raw)


async def primary_position(state: AppState) -> int:
    async with state.db.writer() as conn:
        position: int = await conn.fetchval(_PRIMARY_POSITION)
    return position


async def commit_position(state: AppState, conn: Connection) -> int | None:
    """On the primary connection that has just committed a write (no second borrow): the
    position the writer's reads must see; None without a replica or when it cannot be had."""
    if not has_replica(state):
        return None
    try:
        position: int = await conn.fetchval(_PRIMARY_POSITION)
    except _RECORDING_FAILURES as exc:
        _log.warning("commit position not read", error=repr(exc))
        return None
    return position


async def remember_write(
    state: AppState, account_id: uuid.UUID, position: int | None = None
) -> None:
    """After a commit by ``account_id``: its later reads must see what it wrote (``position``,
    from ``commit_position``, or read now; 0 without a replica, where the fence only marks a
    recent writer for the list cache). Best effort (a failure is logged): the write itself has
    committed."""
    key = fence_key(state, account_id)
    if state.cache is None or key is None:
        return
    if state.redis_breaker.is_open:
        _log.warning("write fence not recorded", account=str(account_id), error="breaker open")
        return
    ttl_ms = round(state.settings.db.replica_fence_seconds * 1000)
    raise_fence = state.cache.client.register_script(_RAISE_FENCE)
    try:
        if position is None:
            position = await primary_position(state) if has_replica(state) else 0
        async with state.redis_breaker.guard():
            await raise_fence(keys=[key], args=[position, ttl_ms])
    except _RECORDING_FAILURES as exc:
        _log.warning("write fence not recorded", account=str(account_id), error=repr(exc))


async def write_fence(state: AppState, account_id: uuid.UUID) -> Fence:
    """The position ``account_id``'s reads must see: None when it wrote nothing lately (or no
    replica is configured), ``UNKNOWN`` when the fence cannot be read."""
    if not has_replica(state):
        return None
    key = fence_key(state, account_id)
    if state.cache is None or key is None or state.redis_breaker.is_open:
        return UNKNOWN
    try:
        async with state.redis_breaker.guard():
            raw = await state.cache.client.get(key)
    except REDIS_UNAVAILABLE:
        return UNKNOWN
    return fence_of(raw)


@dataclass(frozen=True, slots=True)
class Reading:
    conn: Connection
    #: The read sees everything up to the position asked for (``current_at``).
    current: bool
    #: The read goes to the replica.
    replica: bool


@contextlib.asynccontextmanager
async def reading(
    state: AppState, *, fence: Fence = None, current_at: int | None = None
) -> AsyncIterator[Reading]:
    """A connection for a read that must see everything up to ``fence``: the replica's when it
    has replayed that far, the primary's otherwise. ``current_at`` is a position the read would
    like to see, as for filling a cache, without requiring it: ``Reading.current`` says whether
    it does."""
    if not has_replica(state):
        async with state.db.reader() as conn:
            yield Reading(conn, current=True, replica=False)
        return
    if isinstance(fence, _Unknown):
        REPLICA_ROUTING.labels("primary", "fence-unknown").inc()
        async with state.db.writer() as conn:
            yield Reading(conn, current=True, replica=False)
        return
    if fence is None and current_at is None:
        REPLICA_ROUTING.labels("replica", "unfenced").inc()
        async with state.db.reader() as conn:
            yield Reading(conn, current=True, replica=True)
        return
    async with contextlib.AsyncExitStack() as stack:
        conn = await stack.enter_async_context(state.db.reader())
        await stack.enter_async_context(conn.transaction(readonly=True))
        replayed: int | None = await conn.fetchval(_REPLAYED)
        if replayed is None or fence is None or replayed >= fence:
            current = replayed is None or current_at is None or replayed >= current_at
            REPLICA_ROUTING.labels("replica", "caught-up" if current else "behind-page").inc()
            yield Reading(conn, current=current, replica=True)
            return
    REPLICA_ROUTING.labels("primary", "behind-fence").inc()
    async with state.db.writer() as conn:
        yield Reading(conn, current=True, replica=False)


@contextlib.asynccontextmanager
async def reader_for(state: AppState, account_id: uuid.UUID) -> AsyncIterator[Connection]:
    """A connection for a read by ``account_id`` that sees the account's own writes."""
    async with reading(state, fence=await write_fence(state, account_id)) as read:
        yield read.conn
