"""SQL for posts. Plain, parameterised SQL; every list shape has an index (see migration 0001)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

import asyncpg

from herald_api.paging.cursors import Position
from herald_shared.db import Connection

POST_COLUMNS = (
    "id, author_id, title, body, tags, status, version, created_at, updated_at, published_at, "
    "excerpt, word_count, reading_time_seconds, enriched_at, enriched_version"
)


def is_enriched(row: asyncpg.Record) -> bool:
    """Whether the enriched fields describe the post's current version."""
    return bool(row["enriched_version"] == row["version"])


@dataclass(frozen=True, slots=True)
class ListQuery:
    """A page request, already reduced to what the viewer may see."""

    limit: int
    after: Position | None = None
    author_id: uuid.UUID | None = None
    tag: str | None = None
    status: str | None = None
    #: Restrict to published posts or this account's own (a member's view with no narrower filter).
    visible_to: uuid.UUID | None = None


async def fetch_post(conn: Connection, post_id: uuid.UUID) -> asyncpg.Record | None:
    return await conn.fetchrow(f"SELECT {POST_COLUMNS} FROM posts WHERE id = $1", post_id)  # noqa: S608


async def lock_post(conn: Connection, post_id: uuid.UUID) -> asyncpg.Record | None:
    return await conn.fetchrow(
        f"SELECT {POST_COLUMNS} FROM posts WHERE id = $1 FOR UPDATE",  # noqa: S608
        post_id,
    )


async def update_post(
    conn: Connection, post_id: uuid.UUID, changes: dict[str, Any]
) -> asyncpg.Record:
    """Apply ``changes`` (a subset of title, body, tags, status) and bump the version."""
    allowed = ("title", "body", "tags", "status")
    assignments = []
    args: list[Any] = [post_id]
    # On the right of SET a column name means the old value, so the new status is the parameter.
    new_status = "status"
    for column in allowed:
        if column in changes:
            args.append(changes[column])
            assignments.append(f"{column} = ${len(args)}")
            if column == "status":
                new_status = f"${len(args)}"
    row = await conn.fetchrow(
        f"""
        UPDATE posts SET {", ".join(assignments)},
            version = version + 1,
            updated_at = now(),
            published_at = CASE
                WHEN {new_status} = 'published' THEN coalesce(published_at, now())
            END
        WHERE id = $1
        RETURNING {POST_COLUMNS}
        """,  # noqa: S608 - column names come from the fixed list above
        *args,
    )
    assert row is not None
    return row


async def delete_post(conn: Connection, post_id: uuid.UUID) -> None:
    await conn.execute("DELETE FROM posts WHERE id = $1", post_id)


class _Args:
    """Collects query parameters, handing out their $n placeholders."""

    def __init__(self) -> None:
        self.values: list[Any] = []

    def __call__(self, value: Any) -> str:
        self.values.append(value)
        return f"${len(self.values)}"


def _filter_conditions(query: ListQuery, arg: _Args) -> list[str]:
    conditions: list[str] = []
    if query.author_id is not None:
        conditions.append(f"author_id = {arg(query.author_id)}")
    if query.status is not None:
        conditions.append(f"status = {arg(query.status)}")
    if query.tag is not None:
        conditions.append(f"tags @> ARRAY[{arg(query.tag)}]::text[]")
    if query.visible_to is not None:
        conditions.append(f"(status = 'published' OR author_id = {arg(query.visible_to)})")
    return conditions


def build_list_sql(query: ListQuery) -> tuple[str, list[Any]]:
    """The keyset query for a page, newest first; exposed so tests can EXPLAIN every shape."""
    arg = _Args()
    conditions = _filter_conditions(query, arg)
    if query.after is not None:
        conditions.append(
            f"(created_at, id) < ({arg(query.after.created_at)}, {arg(query.after.id)})"
        )
    where = f"WHERE {' AND '.join(conditions)}" if conditions else ""
    sql = (
        f"SELECT {POST_COLUMNS} FROM posts {where} "  # noqa: S608
        f"ORDER BY created_at DESC, id DESC LIMIT {arg(query.limit + 1)}"
    )
    return sql, arg.values


async def list_posts(conn: Connection, query: ListQuery) -> list[asyncpg.Record]:
    """Up to ``limit + 1`` rows: the extra one tells whether another page exists."""
    sql, args = build_list_sql(query)
    return list(await conn.fetch(sql, *args))


def build_search_sql(text: str, query: ListQuery) -> tuple[str, list[Any]]:
    """Full-text search (GIN index on ``search_vector``), best rank first, then newest.

    ``websearch_to_tsquery`` accepts any input (quotes, ``or``, ``-word``) without syntax errors.
    """
    arg = _Args()
    tsquery = f"websearch_to_tsquery('english', {arg(text)})"
    rank = f"ts_rank(search_vector, {tsquery})"
    conditions = [f"search_vector @@ {tsquery}", *_filter_conditions(query, arg)]
    if query.after is not None and query.after.rank is not None:
        conditions.append(
            f"({rank}, created_at, id) < ({arg(query.after.rank)}::real, "
            f"{arg(query.after.created_at)}, {arg(query.after.id)})"
        )
    sql = (
        f"SELECT {POST_COLUMNS}, {rank} AS rank FROM posts "  # noqa: S608
        f"WHERE {' AND '.join(conditions)} "
        f"ORDER BY rank DESC, created_at DESC, id DESC LIMIT {arg(query.limit + 1)}"
    )
    return sql, arg.values


async def search_posts(conn: Connection, text: str, query: ListQuery) -> list[asyncpg.Record]:
    sql, args = build_search_sql(text, query)
    return list(await conn.fetch(sql, *args))
