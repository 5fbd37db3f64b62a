"""Fan-out: each event becomes one pending delivery per matching, enabled webhook of its account.

Runs inside the event's transaction, so the deliveries exist exactly when the event counts as
handled; the unique (webhook, event) key makes a replay harmless, which is why the worker
registers it without the inbox. The
delivery stores the event envelope as it will be sent. Post events belong to their author;
``webhook.disabled`` to the webhook's account (its other webhooks hear about it).
"""

from __future__ import annotations

import uuid

from herald_shared.db import Connection
from herald_shared.events import (
    PostCreated,
    PostDeleted,
    PostEnriched,
    PostUpdated,
    WebhookDisabled,
)
from herald_shared.messaging.handlers import Event
from herald_shared.tracecontext import current_trace_headers
from herald_shared.webhooks.matching import matches_any
from herald_worker.webhooks import store

#: The events webhooks can subscribe to.
FanOutPayload = PostCreated | PostUpdated | PostDeleted | PostEnriched | WebhookDisabled
FANOUT_MODELS: tuple[type[FanOutPayload], ...] = (
    PostCreated,
    PostUpdated,
    PostDeleted,
    PostEnriched,
    WebhookDisabled,
)


def owner_of(payload: FanOutPayload) -> uuid.UUID:
    """The account whose webhooks hear of the event."""
    if isinstance(payload, WebhookDisabled):
        return payload.account_id
    return payload.author_id


async def fan_out(event: Event[FanOutPayload], tx: Connection) -> None:
    subscribed = await store.subscriptions(tx, owner_of(event.payload))
    targets = [s.webhook_id for s in subscribed if matches_any(s.event_types, event.type)]
    if not targets:
        return
    await store.create_deliveries(
        tx,
        targets,
        event_id=event.id,
        event_type=event.type,
        payload=event.envelope.model_dump_json(),
        # The delivery, hours later perhaps, joins the trace of the request that caused it.
        trace_headers=current_trace_headers(),
    )
