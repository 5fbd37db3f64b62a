"""``enrich_post`` called directly: it enriches the post's current version and emits
``post.enriched`` in the same transaction; an older event changes nothing and emits nothing."""

from __future__ import annotations

import json
import uuid

import asyncpg

from herald_shared.events import PostCreated, PostUpdated
from herald_worker.enrichment import enrich_post
from tests.conftest import MakeKey
from tests.integration.handlers.conftest import change_post, event, in_transaction, insert_post


def created(author_id: uuid.UUID) -> PostCreated:
    return PostCreated(author_id=author_id, status="published", title="Zebras", tags=["animals"])


async def enriched_events(pool: asyncpg.Pool, post_id: uuid.UUID) -> list[dict[str, object]]:
    rows = await pool.fetch(
        "SELECT aggregate_version, payload::text AS payload FROM outbox "
        "WHERE aggregate_id = $1 AND event_type = 'post.enriched' ORDER BY id",
        post_id,
    )
    return [{"version": r["aggregate_version"], **json.loads(r["payload"])["data"]} for r in rows]


async def test_the_current_version_is_enriched_and_announced(
    db_pool: asyncpg.Pool, make_key: MakeKey
) -> None:
    author = (await make_key()).account_id
    body = "Zebras cross the savanna at dawn. " * 40  # 240 words
    post_id = await insert_post(db_pool, author, body=body, status="published", title="Zebras")

    await in_transaction(db_pool, lambda tx: enrich_post(event(created(author), post_id, 1), tx))

    row = await db_pool.fetchrow(
        "SELECT excerpt, word_count, reading_time_seconds, enriched_version, "
        "search_vector @@ websearch_to_tsquery('english', 'savanna') AS found "
        "FROM posts WHERE id = $1",
        post_id,
    )
    assert row is not None
    assert (row["word_count"], row["reading_time_seconds"], row["enriched_version"]) == (240, 72, 1)
    assert row["excerpt"].startswith("Zebras cross the savanna")
    assert row["found"]
    assert await enriched_events(db_pool, post_id) == [
        {
            "version": 1,
            "author_id": str(author),
            "status": "published",
            "word_count": 240,
            "reading_time_seconds": 72,
        }
    ]


async def test_an_event_older_than_the_post_changes_nothing_and_emits_nothing(
    db_pool: asyncpg.Pool, make_key: MakeKey
) -> None:
    author = (await make_key()).account_id
    post_id = await insert_post(db_pool, author, body="first words")
    assert await change_post(db_pool, post_id, body="second and longer words") == 2

    # post.created of version 1 arrives after the update: the update's event enriches.
    await in_transaction(db_pool, lambda tx: enrich_post(event(created(author), post_id, 1), tx))
    row = await db_pool.fetchrow(
        "SELECT enriched_at, enriched_version, word_count FROM posts WHERE id = $1", post_id
    )
    assert row is not None
    assert dict(row) == {"enriched_at": None, "enriched_version": None, "word_count": None}
    assert await enriched_events(db_pool, post_id) == []

    updated = PostUpdated(
        author_id=author, status="draft", title="A title", tags=[], previous_status="draft"
    )
    await in_transaction(db_pool, lambda tx: enrich_post(event(updated, post_id, 2), tx))
    assert [e["word_count"] for e in await enriched_events(db_pool, post_id)] == [4]


async def test_a_deleted_post_is_not_enriched(db_pool: asyncpg.Pool, make_key: MakeKey) -> None:
    author = (await make_key()).account_id
    post_id = uuid.uuid4()  # never written, or deleted since
    await in_transaction(db_pool, lambda tx: enrich_post(event(created(author), post_id, 1), tx))
    assert await enriched_events(db_pool, post_id) == []
