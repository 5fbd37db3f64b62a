"""Per-account counters (posts by status, total words), kept from post events.

Each event re-reads the post and replaces what that post contributes to its account's counters
(``post_stats_contributions``), under a per-post advisory lock, inside the inbox transaction.
So the counters do not depend on event order, and a redelivered event changes nothing (the inbox
skips it; even without it, replaying the same state adds a difference of zero).
"""

from __future__ import annotations

import uuid

from herald_shared.db import Connection
from herald_shared.events import EventEnvelope
from herald_shared.messaging.handlers import Delivery, Handle
from herald_worker.text import count_words

_LOCK_CLASS = 0x5354  # "ST"


async def _adjust(
    tx: Connection, account_id: uuid.UUID, status: str, posts: int, words: int
) -> None:
    drafts, published = (posts, 0) if status == "draft" else (0, posts)
    await tx.execute(
        """
        INSERT INTO account_stats (account_id, draft_posts, published_posts, total_words)
        VALUES ($1, $2, $3, $4)
        ON CONFLICT (account_id) DO UPDATE SET
            draft_posts = account_stats.draft_posts + EXCLUDED.draft_posts,
            published_posts = account_stats.published_posts + EXCLUDED.published_posts,
            total_words = account_stats.total_words + EXCLUDED.total_words,
            updated_at = now()
        """,
        account_id,
        drafts,
        published,
        words,
    )


def count_post() -> Handle:
    async def handle(event: EventEnvelope, delivery: Delivery) -> None:
        tx = delivery.tx
        assert tx is not None
        post_id = event.aggregate_id
        await tx.execute(
            "SELECT pg_advisory_xact_lock($1, hashtext($2))", _LOCK_CLASS, str(post_id)
        )
        previous = await tx.fetchrow(
            "DELETE FROM post_stats_contributions WHERE post_id = $1 "
            "RETURNING account_id, status, words",
            post_id,
        )
        if previous is not None:
            await _adjust(tx, previous["account_id"], previous["status"], -1, -previous["words"])
        post = await tx.fetchrow(
            "SELECT author_id, status, body, version FROM posts WHERE id = $1", post_id
        )
        if post is None:
            return  # deleted: its contribution is gone
        words = count_words(post["body"])
        await tx.execute(
            """
            INSERT INTO post_stats_contributions (post_id, account_id, status, words, version)
            VALUES ($1, $2, $3, $4, $5)
            """,
            post_id,
            post["author_id"],
            post["status"],
            words,
            post["version"],
        )
        await _adjust(tx, post["author_id"], post["status"], 1, words)

    return handle
