"""How full a queue is, as a passive declare reports it: ready messages and consumers."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

import aiormq
from aio_pika.abc import AbstractConnection


@dataclass(frozen=True, slots=True)
class QueueDepth:
    #: Ready messages: those delivered and not yet acknowledged are not counted.
    messages: int
    consumers: int


async def queue_depth(connection: AbstractConnection, queue: str) -> QueueDepth | None:
    """``queue``'s ready messages and consumers; None when the queue does not exist.

    Uses a channel of its own: the broker closes the channel of a passive declare that names a
    missing queue.
    """
    channel = await connection.channel()
    try:
        declared = await channel.declare_queue(queue, passive=True)
    except aiormq.exceptions.ChannelNotFoundEntity:
        return None
    finally:
        if not channel.is_closed:
            with contextlib.suppress(aiormq.exceptions.AMQPError):
                await channel.close()
    result = declared.declaration_result
    return QueueDepth(result.message_count or 0, result.consumer_count or 0)
