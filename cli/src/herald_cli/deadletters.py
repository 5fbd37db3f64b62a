"""Reading and moving dead letters: list, replay and purge a consumer's dead-letter queue.

Messages are taken with ``basic.get`` and settled one by one: a replayed message is re-published
to the consumer's main queue (same body and event id, so the consumer's deduplication still
holds), confirmed, and only then acked; messages left alone stay unacked until the channel
closes, which returns them to the queue in order.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import aio_pika
from aio_pika.abc import AbstractChannel, AbstractIncomingMessage

from herald_shared.db import Connection
from herald_shared.messaging.connection import open_channel
from herald_shared.messaging.headers import (
    ERROR_CLASS,
    ERROR_MESSAGE,
    FIRST_FAILURE,
    LAST_FAILURE,
    REASON,
    attempts_of,
    replay_headers,
)
from herald_shared.messaging.publisher import build_message, publish_confirmed
from herald_shared.messaging.topology import ConsumerQueues
from herald_shared.settings import AmqpSettings


@dataclass(frozen=True, slots=True)
class DeadLetter:
    event_id: str
    event_type: str
    reason: str
    error: str
    attempts: int
    first_failure: str
    last_failure: str


def _reason(headers: dict[str, Any]) -> str:
    """Herald's reason; for what the broker dead-lettered itself (a delivery limit reached, a
    message rejected), the broker's reason and the queue it left."""
    if REASON in headers:
        return str(headers[REASON])
    deaths = headers.get("x-death")
    death = deaths[0] if isinstance(deaths, list) and deaths and isinstance(deaths[0], dict) else {}
    why = death.get("reason") or headers.get("x-first-death-reason") or "unknown"
    queue = death.get("queue") or headers.get("x-first-death-queue") or "?"
    return f"{why} (dead-lettered by the broker from {queue})"


def describe(message: AbstractIncomingMessage) -> DeadLetter:
    headers: dict[str, Any] = dict(message.headers or {})
    error_class = str(headers.get(ERROR_CLASS, ""))
    lines = str(headers.get(ERROR_MESSAGE, "")).strip().splitlines()
    error = lines[0][:200] if lines else ""
    return DeadLetter(
        event_id=message.message_id or "?",
        event_type=message.type or "?",
        reason=_reason(headers),
        error=f"{error_class}: {error}" if error_class else error,
        attempts=attempts_of(message),
        first_failure=str(headers.get(FIRST_FAILURE, "")),
        last_failure=str(headers.get(LAST_FAILURE, "")),
    )


@asynccontextmanager
async def dead_letter_channel(settings: AmqpSettings) -> AsyncIterator[AbstractChannel]:
    connection = await aio_pika.connect(
        settings.url.get_secret_value(), timeout=settings.connect_timeout_seconds
    )
    try:
        yield await open_channel(connection)  # type: ignore[arg-type]
    finally:
        await connection.close()


async def take_all(
    channel: AbstractChannel, queue_name: str, limit: int
) -> list[AbstractIncomingMessage]:
    """Up to ``limit`` messages, unacked: they return to the queue unless settled."""
    queue = await channel.get_queue(queue_name, ensure=True)
    messages: list[AbstractIncomingMessage] = []
    while len(messages) < limit:
        message = await queue.get(no_ack=False, fail=False)
        if message is None:
            break
        messages.append(message)
    return messages


async def list_dead_letters(
    settings: AmqpSettings, queues: ConsumerQueues, limit: int
) -> list[DeadLetter]:
    async with dead_letter_channel(settings) as channel:
        return [describe(m) for m in await take_all(channel, queues.dead_letter, limit)]


async def replay(
    settings: AmqpSettings,
    queues: ConsumerQueues,
    *,
    event_ids: set[str] | None,
    rate: float | None,
    limit: int,
) -> list[str]:
    """Send the chosen dead letters (all when ``event_ids`` is None) back; returns their ids."""
    replayed: list[str] = []
    async with dead_letter_channel(settings) as channel:
        for message in await take_all(channel, queues.dead_letter, limit):
            if event_ids is not None and message.message_id not in event_ids:
                continue
            copy = build_message(
                message.body,
                message_id=message.message_id or str(uuid.uuid4()),
                event_type=message.type or "",
                headers=replay_headers(dict(message.headers or {})),
                timestamp=message.timestamp,
            )
            await publish_confirmed(
                channel.default_exchange,
                copy,
                queues.main,
                timeout=settings.publish_timeout_seconds,
            )
            await message.ack()
            replayed.append(message.message_id or "?")
            if rate:
                await asyncio.sleep(1 / rate)
    return replayed


async def purge(settings: AmqpSettings, queues: ConsumerQueues, limit: int) -> list[str]:
    purged = []
    async with dead_letter_channel(settings) as channel:
        for message in await take_all(channel, queues.dead_letter, limit):
            await message.ack()
            purged.append(message.message_id or "?")
    return purged


async def audit(
    conn: Connection, action: str, queue: str, actor: str, event_ids: list[str]
) -> None:
    ids = []
    for event_id in event_ids:
        try:
            ids.append(uuid.UUID(event_id))
        except ValueError:
            continue
    await conn.execute(
        "INSERT INTO dead_letter_audit (action, queue, actor, event_ids) VALUES ($1, $2, $3, $4)",
        action,
        queue,
        actor,
        ids,
    )
