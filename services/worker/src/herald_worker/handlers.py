"""The worker's handler table: event type → tasks. Each task is a plain async function; the
tasks of one event run in one inbox transaction."""

from __future__ import annotations

from herald_shared.messaging.handlers import HandlerSpec
from herald_worker.deps import Deps
from herald_worker.enrichment import enrich_post
from herald_worker.stats import count_post
from herald_worker.webhooks import webhook_handlers


def handler_table(deps: Deps) -> list[HandlerSpec]:
    """The handlers this worker runs, bound to their dependencies."""
    webhooks = webhook_handlers(deps)
    del deps  # the current tasks need only the inbox transaction
    enrich = enrich_post()
    stats = count_post()
    return [
        HandlerSpec("post.created", enrich),
        HandlerSpec("post.updated", enrich),
        HandlerSpec("post.created", stats),
        HandlerSpec("post.updated", stats),
        HandlerSpec("post.deleted", stats),
        *webhooks,
    ]
