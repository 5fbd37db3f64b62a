"""Reading and moving dead letters: list, replay and purge a consumer's dead-letter queue.

Messages are taken with ``basic.get``. Replay and purge work in batches of at most ``BATCH``
messages (fewer with a rate: about a second's worth): each batch is recorded in the audit before
any of its messages is acted on (``herald_cli.audit``), then each message is settled — a replay
re-publishes it to the consumer's main queue (same body and event id, so the consumer's
deduplication still holds), confirmed, and only then acks it; a purge acks it — and the batch is
recorded as completed. One batch is held at a time. Messages a command passes over (not chosen
by ``--id``) stay unacked, and out of memory, until the command ends, which returns them to the
queue in order. Only as many messages as the queue held when the command started are looked at,
so an event that fails again after its replay is not replayed again by the same command.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import aio_pika
from aio_pika.abc import AbstractChannel, AbstractIncomingMessage

from herald_cli import audit
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
        yield await open_channel(connection)
    finally:
        await connection.close()


#: The most messages one audited batch holds.
BATCH = 100

Settle = Callable[[AbstractChannel, AbstractIncomingMessage], Awaitable[None]]


async def list_dead_letters(
    settings: AmqpSettings, queues: ConsumerQueues, limit: int
) -> list[DeadLetter]:
    """Up to ``limit`` dead letters, described; they stay in the queue."""
    letters: list[DeadLetter] = []
    async with dead_letter_channel(settings) as channel:
        queue = await channel.get_queue(queues.dead_letter, ensure=True)
        while len(letters) < limit:
            message = await queue.get(no_ack=False, fail=False)
            if message is None:
                break
            letters.append(describe(message))
    return letters


async def replay(
    settings: AmqpSettings,
    queues: ConsumerQueues,
    conn: Connection,
    *,
    actor: str,
    event_ids: set[str] | None,
    rate: float | None,
    limit: int,
) -> list[str]:
    """Send the chosen dead letters (all when ``event_ids`` is None) back; returns their ids."""

    async def send_back(channel: AbstractChannel, message: AbstractIncomingMessage) -> None:
        copy = build_message(
            message.body,
            message_id=message.message_id or str(uuid.uuid4()),
            event_type=message.type or "",
            headers=replay_headers(dict(message.headers or {})),
            timestamp=message.timestamp,
        )
        await publish_confirmed(
            channel.default_exchange, copy, queues.main, timeout=settings.publish_timeout_seconds
        )
        await message.ack()

    return await _act_in_batches(
        settings,
        queues.dead_letter,
        conn,
        action="replay",
        actor=actor,
        chosen=lambda m: event_ids is None or m.message_id in event_ids,
        settle=send_back,
        rate=rate,
        limit=limit,
    )


async def purge(
    settings: AmqpSettings, queues: ConsumerQueues, conn: Connection, *, actor: str, limit: int
) -> list[str]:
    """Delete up to ``limit`` dead letters; returns their ids."""

    async def delete(_: AbstractChannel, message: AbstractIncomingMessage) -> None:
        await message.ack()

    return await _act_in_batches(
        settings,
        queues.dead_letter,
        conn,
        action="purge",
        actor=actor,
        chosen=lambda _: True,
        settle=delete,
        rate=None,
        limit=limit,
    )


def batch_size(rate: float | None) -> int:
    """With a rate, about a second's worth of messages per batch (at least one)."""
    return BATCH if not rate else max(1, min(BATCH, int(rate)))


async def _act_in_batches(
    settings: AmqpSettings,
    queue_name: str,
    conn: Connection,
    *,
    action: str,
    actor: str,
    chosen: Callable[[AbstractIncomingMessage], bool],
    settle: Settle,
    rate: float | None,
    limit: int,
) -> list[str]:
    done: list[str] = []
    async with dead_letter_channel(settings) as channel:
        queue = await channel.get_queue(queue_name, ensure=True)
        present = queue.declaration_result.message_count or 0
        left = min(limit, present)
        while left > 0:
            batch: list[AbstractIncomingMessage] = []
            while len(batch) < batch_size(rate) and left > 0:
                message = await queue.get(no_ack=False, fail=False)
                if message is None:
                    left = 0
                    break
                left -= 1
                if chosen(message):
                    batch.append(message)
            if not batch:
                continue
            ids = [message.message_id or "" for message in batch]
            row = await audit.start(conn, action, queue_name, actor, ids)
            settled = 0
            try:
                for message in batch:
                    if rate and done:
                        await asyncio.sleep(1 / rate)
                    await settle(channel, message)
                    done.append(message.message_id or "")
                    settled += 1
            except BaseException as exc:
                # Left "started" if even this fails, which says as much.
                with contextlib.suppress(Exception):
                    await audit.fail(conn, row, f"{exc!r} after {settled} of {len(batch)}")
                raise
            await audit.complete(conn, row)
    return done
