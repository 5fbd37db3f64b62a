"""How full a queue is, as a passive declare reports it: ready messages and consumers.

``queue_depth`` asks once, on a channel of its own (for commands and tests). A long-running
process that asks on every metrics scrape uses a ``DepthProbe``: one channel kept open between
scrapes, every read bounded by a deadline, so a scrape never hangs on an unreachable broker and
never opens channels one after another.
"""

from __future__ import annotations

import asyncio
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


class DepthProbe:
    """Passive declares over one plain (not robust) channel of ``connection``, opened when first
    needed and again after the broker closed it (a missing queue) or a read timed out.

    Plain, because a robust channel would redeclare every queue it was ever asked about when it
    reconnects, and fail to recover if one of them is gone.
    """

    def __init__(self, connection: AbstractConnection, *, timeout: float) -> None:
        self._connection = connection
        self._timeout = timeout
        self._channel: aiormq.abc.AbstractChannel | None = None
        self._lock = asyncio.Lock()

    async def depths(self, queues: list[str]) -> dict[str, QueueDepth | None]:
        """The depth of each of ``queues`` (None: missing), all within the probe's deadline;
        raises ``TimeoutError`` or a broker error when the broker cannot answer in time."""
        async with self._lock:
            try:
                async with asyncio.timeout(self._timeout):
                    return {queue: await self._depth(queue) for queue in queues}
            except BaseException:
                # An answer may still be on its way: the channel cannot be trusted any more.
                await self._drop()
                raise

    async def _depth(self, queue: str) -> QueueDepth | None:
        channel = self._channel
        if channel is None or channel.is_closed:
            transport = self._connection.transport
            if transport is None:
                raise aiormq.exceptions.AMQPConnectionError("not connected")
            channel = self._channel = await transport.connection.channel(publisher_confirms=False)
        try:
            result = await channel.queue_declare(queue, passive=True)
        except aiormq.exceptions.ChannelNotFoundEntity:
            self._channel = None
            return None
        return QueueDepth(result.message_count or 0, result.consumer_count or 0)

    async def _drop(self) -> None:
        channel, self._channel = self._channel, None
        if channel is not None and not channel.is_closed:
            with contextlib.suppress(Exception):
                async with asyncio.timeout(1.0):
                    await channel.close()

    async def close(self) -> None:
        """Close the channel now (a read in progress fails, as it would on a lost broker)."""
        await self._drop()
