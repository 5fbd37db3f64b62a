"""Post events → cache invalidations.

Every post event (created, updated, deleted, enriched) drops the post's entry, records its
version so that older fills are refused, and retires the cached list pages (one new list
generation; this is the only place that retires them, see
docs/decisions/0039-list-page-generations.md). Invalidations are
idempotent by construction, so no inbox is needed. When Redis cannot be reached the event is not
acknowledged as done: an open breaker reschedules it and pauses intake, a failed call is retried.
"""

from __future__ import annotations

from datetime import UTC, datetime

import structlog

from herald_cache_invalidator.deps import Deps
from herald_shared.cache import PostCache, revision_for_event
from herald_shared.events import EventData, PostCreated, PostDeleted, PostEnriched, PostUpdated
from herald_shared.messaging.handlers import (
    DependencyUnavailableError,
    Event,
    HandlerTable,
    TransientError,
)
from herald_shared.metrics import INVALIDATION_LAG_SECONDS
from herald_shared.redis_client import REDIS_ERRORS
from herald_shared.resilience import Breaker, BreakerOpenError

_log = structlog.get_logger(__name__)

POST_EVENTS: tuple[type[EventData], ...] = (PostCreated, PostUpdated, PostDeleted, PostEnriched)


async def invalidate_post(event: Event[EventData], *, cache: PostCache, breaker: Breaker) -> None:
    try:
        async with breaker.guard():
            await cache.invalidate_with_lists(
                event.aggregate_id, revision_for_event(event.type, event.aggregate_version)
            )
    except BreakerOpenError as exc:
        raise DependencyUnavailableError("redis", exc.retry_after) from exc
    except REDIS_ERRORS as exc:
        raise TransientError(f"redis: {exc!r}") from exc
    lag = (datetime.now(UTC) - event.occurred_at).total_seconds()
    INVALIDATION_LAG_SECONDS.observe(lag)
    _log.info(
        "post invalidated",
        post_id=str(event.aggregate_id),
        version=event.aggregate_version,
        event_type=event.type,
        lag_ms=round(lag * 1000, 1),
        attempt=event.attempt,
    )


def handler_table(deps: Deps) -> HandlerTable:
    table = HandlerTable()
    for model in POST_EVENTS:
        table.idempotent(model, invalidate_post, cache=deps.cache, breaker=deps.breaker)
    return table
