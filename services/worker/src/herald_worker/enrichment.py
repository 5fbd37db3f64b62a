"""Post enrichment: excerpt, word count, reading time and the weighted full-text search vector.

Runs on ``post.created`` and ``post.updated`` inside the inbox transaction, and only when the
event's version is still the post's current version: an older event arriving late never
overwrites what a newer one computed. It then emits ``post.enriched`` through the outbox.
"""

from __future__ import annotations

from herald_shared.events import EventEnvelope, PostEnriched
from herald_shared.messaging.handlers import Delivery, Handle
from herald_shared.outbox import enqueue_event
from herald_shared.tracecontext import current_trace_headers
from herald_worker.text import count_words, excerpt, reading_time_seconds

# Title weighs most, then tags, then the body.
_SEARCH_VECTOR = """
    setweight(to_tsvector('english', $3), 'A')
    || setweight(to_tsvector('english', array_to_string($4::text[], ' ')), 'B')
    || setweight(to_tsvector('english', $5), 'C')
"""


def enrich_post() -> Handle:
    async def handle(event: EventEnvelope, delivery: Delivery) -> None:
        tx = delivery.tx
        assert tx is not None
        post = await tx.fetchrow(
            "SELECT title, body, tags, status, author_id, version FROM posts WHERE id = $1 "
            "FOR UPDATE",
            event.aggregate_id,
        )
        if post is None or post["version"] != event.aggregate_version:
            return  # deleted, or changed again: the newer event enriches the newer version
        words = count_words(post["body"])
        reading_time = reading_time_seconds(words)
        await tx.execute(
            f"""
            UPDATE posts SET
                excerpt = $6, word_count = $7, reading_time_seconds = $8,
                search_vector = {_SEARCH_VECTOR},
                enriched_at = now(), enriched_version = $2
            WHERE id = $1 AND version = $2
            """,  # noqa: S608 - a constant expression
            event.aggregate_id,
            post["version"],
            post["title"],
            list(post["tags"]),
            post["body"],
            excerpt(post["body"]),
            words,
            reading_time,
        )
        enriched = PostEnriched(
            author_id=post["author_id"],
            status=post["status"],
            word_count=words,
            reading_time_seconds=reading_time,
        )
        await enqueue_event(
            tx,
            EventEnvelope.wrap(
                enriched, aggregate_id=event.aggregate_id, aggregate_version=post["version"]
            ),
            current_trace_headers(),
        )

    return handle
