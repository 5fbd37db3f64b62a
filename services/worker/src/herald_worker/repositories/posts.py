"""Posts as the worker sees them: read to derive counts and text from, and enriched."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Literal

from herald_shared.db import Connection

_SELECT = (
    "SELECT id, title, body, tags, status, author_id, version, enriched_version "
    "FROM posts WHERE id = $1"
)
_SELECT_FOR_UPDATE = f"{_SELECT} FOR UPDATE"

# Title weighs most, then tags, then the body.
_SEARCH_VECTOR = """
    setweight(to_tsvector('english', $3), 'A')
    || setweight(to_tsvector('english', array_to_string($4::text[], ' ')), 'B')
    || setweight(to_tsvector('english', $5), 'C')
"""


@dataclass(frozen=True, slots=True)
class Post:
    id: uuid.UUID
    title: str
    body: str
    tags: list[str]
    status: Literal["draft", "published"]
    author_id: uuid.UUID
    version: int
    #: The version the stored enrichment describes (None before the first).
    enriched_version: int | None


async def fetch_post(
    tx: Connection, post_id: uuid.UUID, *, for_update: bool = False
) -> Post | None:
    """The post as it is now (locked until ``tx`` ends with ``for_update``); None when gone."""
    row = await tx.fetchrow(_SELECT_FOR_UPDATE if for_update else _SELECT, post_id)
    if row is None:
        return None
    return Post(
        id=row["id"],
        title=row["title"],
        body=row["body"],
        tags=list(row["tags"]),
        status=row["status"],
        author_id=row["author_id"],
        version=row["version"],
        enriched_version=row["enriched_version"],
    )


async def store_enrichment(
    tx: Connection, post: Post, *, excerpt: str, word_count: int, reading_time_seconds: int
) -> None:
    """Store what enrichment derived from ``post`` — only if the post is still that version —
    with the weighted full-text search vector of its title, tags and body."""
    await tx.execute(
        f"""
        UPDATE posts SET
            excerpt = $6, word_count = $7, reading_time_seconds = $8,
            search_vector = {_SEARCH_VECTOR},
            enriched_at = now(), enriched_version = $2
        WHERE id = $1 AND version = $2
        """,  # noqa: S608 - a constant expression
        post.id,
        post.version,
        post.title,
        post.tags,
        post.body,
        excerpt,
        word_count,
        reading_time_seconds,
    )
