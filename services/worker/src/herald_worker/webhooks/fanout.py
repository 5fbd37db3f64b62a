"""Fan-out: each event becomes one pending delivery per matching, enabled webhook of its account.

Runs inside the inbox transaction, so the deliveries exist exactly when the event counts as
handled; ``ON CONFLICT DO NOTHING`` on (webhook, event) makes a replay harmless even without the
inbox. The delivery stores the event envelope as it will be sent. Post events belong to their
author; ``webhook.disabled`` to the webhook's account (its other webhooks hear about it).
"""

from __future__ import annotations

import json
import uuid

from herald_shared.events import EventEnvelope
from herald_shared.messaging.handlers import Delivery, Handle, HandlerSpec, PermanentError
from herald_shared.tracecontext import current_trace_headers
from herald_shared.webhooks.matching import matches_any
from herald_worker.deps import Deps

#: The event types the worker receives and webhooks can subscribe to.
FANOUT_EVENT_TYPES: tuple[str, ...] = (
    "post.created",
    "post.updated",
    "post.deleted",
    "post.enriched",
    "webhook.disabled",
)


def owner_of(event: EventEnvelope) -> uuid.UUID:
    """The account whose webhooks hear of ``event``."""
    field = "account_id" if event.type.startswith("webhook.") else "author_id"
    try:
        return uuid.UUID(str(event.data[field]))
    except (KeyError, ValueError) as exc:
        raise PermanentError(f"{event.type} event without a valid {field}") from exc


def fan_out() -> Handle:
    async def handle(event: EventEnvelope, delivery: Delivery) -> None:
        tx = delivery.tx
        assert tx is not None
        webhooks = await tx.fetch(
            "SELECT id, event_types FROM webhooks WHERE account_id = $1 AND enabled",
            owner_of(event),
        )
        targets = [row["id"] for row in webhooks if matches_any(row["event_types"], event.type)]
        if not targets:
            return
        await tx.execute(
            """
            INSERT INTO webhook_deliveries
                (id, webhook_id, event_id, event_type, payload, trace_headers)
            SELECT d.id, d.webhook_id, $3, $4, $5::jsonb, $6::jsonb
            FROM unnest($1::uuid[], $2::uuid[]) AS d (id, webhook_id)
            ON CONFLICT (webhook_id, event_id) DO NOTHING
            """,
            [uuid.uuid4() for _ in targets],
            targets,
            event.id,
            event.type,
            event.model_dump_json(),
            # The delivery, hours later perhaps, joins the trace of the request that caused it.
            json.dumps(current_trace_headers()),
        )

    return handle


def webhook_handlers(deps: Deps) -> list[HandlerSpec]:
    """The fan-out handler for every event type webhooks can receive."""
    del deps  # fan-out needs only the inbox transaction
    handle = fan_out()
    return [HandlerSpec(event_type, handle) for event_type in FANOUT_EVENT_TYPES]
