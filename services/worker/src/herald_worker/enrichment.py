"""Post enrichment: excerpt, word count, reading time and the weighted full-text search vector.

Runs on ``post.created`` and ``post.updated`` in a transaction of the runtime's, and only when
the event's version is still the post's current version and not enriched yet: an older event
arriving late never overwrites what a newer one computed, and a redelivered event finds its
version enriched and changes nothing (the post's row lock, taken first, orders two deliveries of
one event). It then emits ``post.enriched`` through the outbox, in the same transaction.
"""

from __future__ import annotations

from herald_shared.db import Connection
from herald_shared.events import EventEnvelope, PostCreated, PostEnriched, PostUpdated
from herald_shared.messaging.handlers import Event
from herald_shared.outbox import enqueue_event
from herald_shared.tracecontext import current_trace_headers
from herald_worker.repositories import posts
from herald_worker.text import count_words, excerpt, reading_time_seconds


async def enrich_post(event: Event[PostCreated | PostUpdated], tx: Connection) -> None:
    post = await posts.fetch_post(tx, event.aggregate_id, for_update=True)
    if post is None or post.version != event.aggregate_version:
        return  # deleted, or changed again: the newer event enriches the newer version
    if post.enriched_version == post.version:
        return  # enriched by an earlier delivery of this event: nothing to do twice
    words = count_words(post.body)
    reading_time = reading_time_seconds(words)
    await posts.store_enrichment(
        tx,
        post,
        excerpt=excerpt(post.body),
        word_count=words,
        reading_time_seconds=reading_time,
    )
    enriched = PostEnriched(
        author_id=post.author_id,
        status=post.status,
        word_count=words,
        reading_time_seconds=reading_time,
    )
    await enqueue_event(
        tx,
        EventEnvelope.wrap(enriched, aggregate_id=post.id, aggregate_version=post.version),
        current_trace_headers(),
    )
