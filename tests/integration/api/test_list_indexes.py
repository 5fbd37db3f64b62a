"""Every list query shape the API can issue is served by an index, never a seq scan of posts.

A database of its own is seeded with 100 000 posts over 50 accounts, analysed, and each shape
from ``build_list_sql`` is EXPLAINed with real parameter values, on the first page and deep in
the ordering (a cursor near row 90 000).
"""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from typing import Any

import asyncpg
import pytest

from herald_api.paging.cursors import Position
from herald_api.posts.repository import ListQuery, build_list_sql
from herald_shared.migrate import upgrade
from herald_shared.settings import DatabaseSettings
from tests.support.databases import create_database, drop_database, dsn_for

pytestmark = pytest.mark.slow

POSTS = 100_000
ACCOUNTS = 50
DEEP_ROW = 90_000
TAGS = 20
RARE_TAG = "rare"  # on 100 posts only

_SEED = f"""
INSERT INTO accounts (id, name)
SELECT gen_random_uuid(), 'seed-' || lpad(g::text, 3, '0') FROM generate_series(1, {ACCOUNTS}) g;

INSERT INTO posts (id, author_id, title, body, tags, status, version, created_at, updated_at,
                   published_at)
SELECT gen_random_uuid(),
       authors.ids[1 + (hashint4(g) & 2147483647) % {ACCOUNTS}],
       'Post ' || g,
       'Body of post ' || g,
       CASE g % 4
           WHEN 0 THEN '{{}}'::text[]
           WHEN 1 THEN ARRAY['tag-' || (g * 7) % {TAGS}]
           ELSE ARRAY['tag-' || (g * 7) % {TAGS}, 'tag-' || ((g * 7) % {TAGS} + 1) % {TAGS} + 100]
       END,
       CASE WHEN (hashint4(g + 1) & 2147483647) % 10 < 7 THEN 'published' ELSE 'draft' END,
       1,
       at, at, NULL
FROM generate_series(1, {POSTS}) g,
     LATERAL (SELECT timestamptz '2026-01-01 00:00:00+00' - g * interval '5 minutes'
              + (hashint4(g + 2) % 60) * interval '1 second' AS at) ts,
     (SELECT array_agg(id ORDER BY name) AS ids FROM accounts WHERE name LIKE 'seed-%') authors;

UPDATE posts SET published_at = created_at WHERE status = 'published';

UPDATE posts SET tags = tags || ARRAY['rare']
WHERE id IN (SELECT id FROM posts ORDER BY id LIMIT 100);
"""


@dataclass(frozen=True)
class Seeded:
    pool: asyncpg.Pool
    author: uuid.UUID
    viewer: uuid.UUID
    tag: str
    deep: Position


@pytest.fixture(scope="module")
async def seeded() -> AsyncIterator[Seeded]:
    admin_dsn = os.environ.get("HERALD_DB_DSN", DatabaseSettings().dsn)
    name = f"herald_test_indexes_{os.getpid()}_{uuid.uuid4().hex[:8]}"
    await create_database(admin_dsn, name)
    try:
        dsn = dsn_for(admin_dsn, name)
        await upgrade(dsn)
        pool = await asyncpg.create_pool(dsn, min_size=1, max_size=2)
        try:
            async with pool.acquire() as conn:
                for statement in _SEED.split(";"):
                    if statement.strip():
                        await conn.execute(statement)
                await conn.execute("ANALYZE posts")
                assert await conn.fetchval("SELECT count(*) FROM posts") == POSTS
                accounts = await conn.fetch("SELECT id FROM accounts ORDER BY name LIMIT 2")
                deep = await conn.fetchrow(
                    "SELECT created_at, id FROM posts ORDER BY created_at DESC, id DESC "
                    "OFFSET $1 LIMIT 1",
                    DEEP_ROW,
                )
                assert deep is not None
            yield Seeded(
                pool,
                author=accounts[0]["id"],
                viewer=accounts[1]["id"],
                tag="tag-3",
                deep=Position(deep["created_at"], deep["id"]),
            )
        finally:
            await pool.close()
    finally:
        await drop_database(admin_dsn, name)


def shapes(seeded: Seeded) -> Iterator[tuple[str, ListQuery]]:
    """Every reduced query ``_visible_query`` in routes/posts.py can produce."""
    author, viewer, tag = seeded.author, seeded.viewer, seeded.tag
    first_page: list[tuple[str, dict[str, Any]]] = [
        ("member no filter (visible_to)", {"visible_to": viewer}),
        ("member tag (visible_to)", {"visible_to": viewer, "tag": tag}),
        ("admin no filter", {}),
        ("author", {"author_id": author}),
        ("author+tag", {"author_id": author, "tag": tag}),
        ("author+status=published", {"author_id": author, "status": "published"}),
        ("author+status=draft", {"author_id": author, "status": "draft"}),
        ("author+status+tag", {"author_id": author, "status": "published", "tag": tag}),
        ("status=published", {"status": "published"}),
        ("status=draft (admin)", {"status": "draft"}),
        ("tag", {"tag": tag}),
        ("tag+status=published", {"tag": tag, "status": "published"}),
        ("tag+status=draft (admin)", {"tag": tag, "status": "draft"}),
        ("rare tag", {"tag": RARE_TAG}),
        ("member rare tag (visible_to)", {"visible_to": viewer, "tag": RARE_TAG}),
        ("rare tag+status=published", {"tag": RARE_TAG, "status": "published"}),
    ]
    for name, filters in first_page:
        yield name, ListQuery(limit=20, **filters)
        yield f"{name}, deep cursor", ListQuery(limit=20, after=seeded.deep, **filters)


def plan_nodes(node: dict[str, Any]) -> Iterator[dict[str, Any]]:
    yield node
    for child in node.get("Plans", ()):
        yield from plan_nodes(child)


def describe(plan: dict[str, Any]) -> str:
    """The node types from the top down to the first leaf, and every index the plan uses."""
    chain = []
    node: dict[str, Any] | None = plan
    while node is not None:
        chain.append(node["Node Type"])
        node = node.get("Plans", [None])[0]
    indexes = sorted({n["Index Name"] for n in plan_nodes(plan) if "Index Name" in n})
    return f"{' > '.join(chain):40} {', '.join(indexes) or 'NO INDEX'}"


async def test_every_list_shape_uses_an_index(
    seeded: Seeded, capsys: pytest.CaptureFixture[str]
) -> None:
    seq_scans: list[str] = []
    report: list[str] = []
    async with seeded.pool.acquire() as conn:
        for name, query in shapes(seeded):
            sql, args = build_list_sql(query)
            [explained] = json.loads(await conn.fetchval(f"EXPLAIN (FORMAT JSON) {sql}", *args))
            plan = explained["Plan"]
            report.append(f"{name:45} {describe(plan)}")
            if any(
                n["Node Type"] == "Seq Scan" and n.get("Relation Name") == "posts"
                for n in plan_nodes(plan)
            ):
                seq_scans.append(f"{name}: {sql} {args}")
    with capsys.disabled():
        print("\n" + "\n".join(report))
    assert not seq_scans, "sequential scans of posts:\n" + "\n".join(seq_scans)


async def test_the_deep_cursor_is_deep(seeded: Seeded) -> None:
    older = await seeded.pool.fetchval(
        "SELECT count(*) FROM posts WHERE (created_at, id) < ($1, $2)",
        seeded.deep.created_at,
        seeded.deep.id,
    )
    assert older == POSTS - DEEP_ROW - 1


async def test_the_seed_mixes_statuses_tags_and_authors(seeded: Seeded) -> None:
    row = await seeded.pool.fetchrow(
        """
        SELECT count(DISTINCT author_id) AS authors,
               count(*) FILTER (WHERE status = 'draft') AS drafts,
               count(*) FILTER (WHERE tags @> ARRAY[$1]::text[]) AS tagged,
               count(*) FILTER (WHERE author_id = $2 AND status = 'draft') AS author_drafts
        FROM posts
        """,
        seeded.tag,
        seeded.author,
    )
    assert row is not None
    assert row["authors"] == ACCOUNTS
    assert 20_000 < row["drafts"] < 40_000
    assert 2_000 < row["tagged"] < 20_000
    assert row["author_drafts"] > 100
