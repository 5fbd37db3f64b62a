"""Post events → cache invalidations.

Every post event (created, updated, deleted, enriched) drops the post's entry, records its
version so that older fills are refused, and retires the cached list pages. Invalidations are
idempotent, so no inbox is needed. When Redis cannot be reached the event is not acknowledged
as done: an open breaker reschedules it and pauses intake, a failed call is retried.
"""

from __future__ import annotations

from datetime import UTC, datetime

import structlog

from herald_cache_invalidator.deps import Deps
from herald_shared.cache import revision_for_event
from herald_shared.events import EventEnvelope
from herald_shared.messaging.handlers import (
    Delivery,
    DependencyUnavailableError,
    Handle,
    HandlerSpec,
    TransientError,
)
from herald_shared.metrics import INVALIDATION_LAG_SECONDS
from herald_shared.redis_client import REDIS_ERRORS
from herald_shared.resilience import BreakerOpenError

_log = structlog.get_logger(__name__)

POST_EVENTS = ("post.created", "post.updated", "post.deleted", "post.enriched")


def invalidate_post(deps: Deps) -> Handle:
    async def handle(event: EventEnvelope, delivery: Delivery) -> None:
        try:
            async with deps.breaker.guard():
                await deps.cache.invalidate(
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
            attempt=delivery.attempt,
        )

    return handle


def handler_table(deps: Deps) -> list[HandlerSpec]:
    handle = invalidate_post(deps)
    return [HandlerSpec(event_type, handle, uses_inbox=False) for event_type in POST_EVENTS]
