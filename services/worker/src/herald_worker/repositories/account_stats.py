"""Per-account counters (``account_stats``) and what each post contributes to them
(``post_stats_contributions``), so that a post's contribution can be replaced as a whole."""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from herald_shared.db import Connection

_LOCK_CLASS = 0x5354  # "ST"


@dataclass(frozen=True, slots=True)
class Contribution:
    account_id: uuid.UUID
    status: str
    words: int


async def lock_post(tx: Connection, post_id: uuid.UUID) -> None:
    """Serialise changes to one post's contribution until ``tx`` ends."""
    await tx.execute("SELECT pg_advisory_xact_lock($1, hashtext($2))", _LOCK_CLASS, str(post_id))


async def take_contribution(tx: Connection, post_id: uuid.UUID) -> Contribution | None:
    """Remove the post's recorded contribution and return it (None when it had none)."""
    row = await tx.fetchrow(
        "DELETE FROM post_stats_contributions WHERE post_id = $1 "
        "RETURNING account_id, status, words",
        post_id,
    )
    if row is None:
        return None
    return Contribution(row["account_id"], row["status"], row["words"])


async def record_contribution(
    tx: Connection, post_id: uuid.UUID, contribution: Contribution, version: int
) -> None:
    await tx.execute(
        """
        INSERT INTO post_stats_contributions (post_id, account_id, status, words, version)
        VALUES ($1, $2, $3, $4, $5)
        """,
        post_id,
        contribution.account_id,
        contribution.status,
        contribution.words,
        version,
    )


async def adjust_counters(tx: Connection, contribution: Contribution, sign: int) -> None:
    """Add (``sign`` 1) or take away (-1) one post's contribution to its account's counters."""
    posts, words = sign, sign * contribution.words
    drafts, published = (posts, 0) if contribution.status == "draft" else (0, posts)
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
        contribution.account_id,
        drafts,
        published,
        words,
    )
