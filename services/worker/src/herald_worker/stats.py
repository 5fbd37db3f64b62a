"""Per-account counters (posts by status, total words), kept from post events.

Each event re-reads the post and replaces what that post contributes to its account's counters,
under a per-post advisory lock, in one transaction. So the counters do not depend on
event order, and a redelivered event changes nothing: replaying the same state adds a
difference of zero, which is why the worker registers it without the inbox.
"""

from __future__ import annotations

from herald_shared.db import Connection
from herald_shared.events import PostCreated, PostDeleted, PostUpdated
from herald_shared.messaging.handlers import Event
from herald_worker.repositories import account_stats, posts
from herald_worker.repositories.account_stats import Contribution
from herald_worker.text import count_words


async def count_post(event: Event[PostCreated | PostUpdated | PostDeleted], tx: Connection) -> None:
    post_id = event.aggregate_id
    await account_stats.lock_post(tx, post_id)
    previous = await account_stats.take_contribution(tx, post_id)
    if previous is not None:
        await account_stats.adjust_counters(tx, previous, -1)
    post = await posts.fetch_post(tx, post_id)
    if post is None:
        return  # deleted: its contribution is gone
    current = Contribution(post.author_id, post.status, count_words(post.body))
    await account_stats.record_contribution(tx, post_id, current, post.version)
    await account_stats.adjust_counters(tx, current, 1)
