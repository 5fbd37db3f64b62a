"""The dead-letter audit: one row per batch a replay or purge acts on, written before the action.

``start`` records the batch (who, which queue, every message id) and commits before any message
of it is moved or deleted; ``complete`` or ``fail`` records how it ended. A row left ``started``
belongs to a command that was cut short: its messages may or may not have been acted on (a
replayed message may then be in both queues; the consumer handles its event once).
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence

from herald_shared.db import Connection


def event_ids(message_ids: Sequence[str]) -> list[uuid.UUID]:
    """The message ids that are event ids (every Herald event's message id is its UUID)."""
    found = []
    for message_id in message_ids:
        try:
            found.append(uuid.UUID(message_id))
        except ValueError:
            continue
    return found


async def start(
    conn: Connection, action: str, queue: str, actor: str, message_ids: Sequence[str]
) -> int:
    """Record the intent to act on ``message_ids``; returns the row's id."""
    row_id: int = await conn.fetchval(
        """
        INSERT INTO dead_letter_audit (action, queue, actor, event_ids, message_ids, status)
        VALUES ($1, $2, $3, $4, $5, 'started')
        RETURNING id
        """,
        action,
        queue,
        actor,
        event_ids(message_ids),
        list(message_ids),
    )
    return row_id


async def complete(conn: Connection, row_id: int) -> None:
    await conn.execute(
        "UPDATE dead_letter_audit SET status = 'completed', completed_at = now() WHERE id = $1",
        row_id,
    )


async def fail(conn: Connection, row_id: int, error: str) -> None:
    await conn.execute(
        "UPDATE dead_letter_audit SET status = 'failed', completed_at = now(), error = $2 "
        "WHERE id = $1",
        row_id,
        error,
    )
