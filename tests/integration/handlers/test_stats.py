"""``count_post`` called directly: each event replaces what its post contributes to the
account's counters, so creating, changing, replaying and deleting all add up."""

from __future__ import annotations

import uuid

import asyncpg

from herald_shared.events import PostCreated, PostDeleted, PostUpdated
from herald_worker.stats import count_post
from tests.conftest import MakeKey
from tests.integration.handlers.conftest import change_post, event, in_transaction, insert_post


async def counters(pool: asyncpg.Pool, account_id: uuid.UUID) -> tuple[int, int, int] | None:
    row = await pool.fetchrow(
        "SELECT draft_posts, published_posts, total_words FROM account_stats WHERE account_id = $1",
        account_id,
    )
    return None if row is None else (row["draft_posts"], row["published_posts"], row["total_words"])


async def test_counters_follow_a_post_through_create_update_replay_and_delete(
    db_pool: asyncpg.Pool, make_key: MakeKey
) -> None:
    author = (await make_key()).account_id
    post_id = await insert_post(db_pool, author, body="one two three", status="draft")
    other = await insert_post(db_pool, author, body="just two", status="published")
    new = PostCreated(author_id=author, status="draft", title="A title", tags=[])

    await in_transaction(db_pool, lambda tx: count_post(event(new, post_id, 1), tx))
    await in_transaction(db_pool, lambda tx: count_post(event(new, other, 1), tx))
    assert await counters(db_pool, author) == (1, 1, 5)

    await change_post(db_pool, post_id, status="published", body="now exactly five words here")
    updated = PostUpdated(
        author_id=author, status="published", title="A title", tags=[], previous_status="draft"
    )
    changed = event(updated, post_id, 2)
    await in_transaction(db_pool, lambda tx: count_post(changed, tx))
    assert await counters(db_pool, author) == (0, 2, 7)

    # The same event again (a redelivery the inbox did not catch) adds a difference of zero.
    await in_transaction(db_pool, lambda tx: count_post(changed, tx))
    assert await counters(db_pool, author) == (0, 2, 7)

    await db_pool.execute("DELETE FROM posts WHERE id = $1", post_id)
    deleted = PostDeleted(author_id=author, status="published")
    await in_transaction(db_pool, lambda tx: count_post(event(deleted, post_id, 3), tx))
    assert await counters(db_pool, author) == (0, 1, 2)
    assert not await db_pool.fetchval(
        "SELECT count(*) FROM post_stats_contributions WHERE post_id = $1", post_id
    )
