"""Writing events to the transactional outbox, in the caller's transaction."""

from __future__ import annotations

import json
from collections.abc import Mapping

from herald_shared.db import Connection
from herald_shared.events import EventEnvelope


async def enqueue_event(
    conn: Connection,
    envelope: EventEnvelope,
    trace_headers: Mapping[str, str] | None = None,
) -> None:
    """Insert the event into the outbox: it is published only if the caller's transaction
    commits."""
    await conn.execute(
        """
        INSERT INTO outbox (event_id, event_type, aggregate_id, aggregate_version, payload, headers)
        VALUES ($1, $2, $3, $4, $5::jsonb, $6::jsonb)
        """,
        envelope.id,
        envelope.type,
        envelope.aggregate_id,
        envelope.aggregate_version,
        envelope.model_dump_json(),
        json.dumps(dict(trace_headers or {})),
    )
