"""The data the scenarios read: accounts and keys, posts seeded with ``generate_series``, the
pool of post ids the GET scenarios pick from, the baseline B2's Redis values and a deep cursor.

Seeding drops the secondary indexes of ``posts``, inserts, and recreates them from their own
definitions (``pg_indexes``), which is much faster than inserting into five indexes and leaves
the schema exactly as the migrations made it.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import asyncpg
import redis.asyncio as redis

from bench.env import CURSOR_SECRET, HIGH_LIMIT, BenchEnv
from bench.seams import (
    POST_COLUMNS,
    CursorCodec,
    Position,
    Role,
    accounts,
    etag_for,
    filter_fingerprint,
    is_enriched,
    post_json,
)

_SEED = """
INSERT INTO posts (id, author_id, title, body, tags, status, version, created_at, updated_at,
                   published_at)
SELECT gen_random_uuid(), $1, 'Seeded post ' || i,
       repeat('Benchmark body text, a few words long. ', 8),
       ARRAY['bench', 't' || (i % 50)],
       CASE WHEN i % 10 = 0 THEN 'draft' ELSE 'published' END, 1, ts, ts,
       CASE WHEN i % 10 = 0 THEN NULL ELSE ts END
FROM generate_series(1, $2) AS i,
     LATERAL (SELECT now() - interval '1 year' + i * interval '10 ms' AS ts) AS t
"""


#: Authors the pipeline's posts come from. With one author every worker transaction updates the
#: same ``account_stats`` row, and they queue on its lock: a load no real service sees.
WRITER_ACCOUNTS = 32


@dataclass(frozen=True, slots=True)
class BenchData:
    """What the scenarios need to address the seeded data."""

    author_id: uuid.UUID
    reader_token: str
    limited_token: str
    #: Keys of ``WRITER_ACCOUNTS`` accounts the pipeline's writers spread their posts over.
    writer_tokens: list[str]
    #: Post ids the GET scenarios spread over, with their current ETags.
    pool: list[tuple[uuid.UUID, str]]
    posts: int
    seed_seconds: float
    deep_cursor: str
    deep_offset: int

    def write_pool(self, path: Path) -> Path:
        """One ``id etag`` line per pooled post, for the wrk scripts."""
        path.write_text("".join(f"{post_id} {etag}\n" for post_id, etag in self.pool))
        return path


async def _key(conn: asyncpg.Connection, account: str, *, unlimited: bool) -> str:
    key = await accounts.create_key(conn, account, Role.MEMBER)
    if unlimited:
        await accounts.set_limits(conn, account, HIGH_LIMIT, HIGH_LIMIT)
    return key.token


async def seed_posts(conn: asyncpg.Connection, author: uuid.UUID, count: int) -> float:
    """Insert ``count`` posts (10 % drafts) 10 ms apart; returns the seconds it took."""
    started = time.perf_counter()
    indexes = await conn.fetch(
        """
        SELECT i.indexname, i.indexdef FROM pg_indexes i
        WHERE i.tablename = 'posts' AND i.schemaname = current_schema()
          AND NOT EXISTS (SELECT 1 FROM pg_constraint c WHERE c.conname = i.indexname)
        """
    )
    await conn.execute("SET maintenance_work_mem = '256MB'")
    async with conn.transaction():
        await conn.execute("SET LOCAL synchronous_commit = off")
        for row in indexes:
            await conn.execute(f'DROP INDEX "{row["indexname"]}"')
        await conn.execute(_SEED, author, count)
        for row in indexes:
            await conn.execute(row["indexdef"])
    await conn.execute("VACUUM ANALYZE posts")
    return time.perf_counter() - started


async def prepare(env: BenchEnv, *, posts: int, pool_size: int) -> BenchData:
    """Accounts, keys, seeded posts, the GET pool and B2's values (in the run's Redis prefix)."""
    conn = await asyncpg.connect(env.dsn)
    try:
        author = await accounts.ensure_account(conn, "bench-author")
        reader = await _key(conn, "bench-reader", unlimited=True)
        limited = await _key(conn, "bench-limited", unlimited=False)
        writers = [
            await _key(conn, f"bench-writer-{i}", unlimited=True) for i in range(WRITER_ACCOUNTS)
        ]
        seconds = await seed_posts(conn, author, posts)
        rows = await conn.fetch(
            f"SELECT {POST_COLUMNS} FROM posts WHERE status = 'published' "  # noqa: S608
            "ORDER BY random() LIMIT $1",
            pool_size,
        )
        published = await conn.fetchval("SELECT count(*) FROM posts WHERE status = 'published'")
        offset = max(int(published * 0.9) - 1, 0)
        deep = await conn.fetchrow(
            "SELECT created_at, id FROM posts WHERE status = 'published' "
            "ORDER BY created_at DESC, id DESC OFFSET $1 LIMIT 1",
            offset,
        )
    finally:
        await conn.close()
    assert deep is not None
    client = redis.Redis.from_url(env.redis_url)
    try:
        async with client.pipeline(transaction=False) as pipe:
            for row in rows:
                pipe.set(f"{env.prefix}b2:{row['id']}", post_json(row))
            await pipe.execute()
    finally:
        await client.aclose()
    cursor = CursorCodec(CURSOR_SECRET).encode(
        Position(deep["created_at"], deep["id"]), filter_fingerprint(None, None, "published")
    )
    return BenchData(
        author_id=author,
        reader_token=reader,
        limited_token=limited,
        writer_tokens=writers,
        pool=[(row["id"], etag_for(row["version"], is_enriched(row))) for row in rows],
        posts=posts,
        seed_seconds=seconds,
        deep_cursor=cursor,
        deep_offset=offset,
    )
