"""``herald status``: queue depths, consumers, dead letters and the outbox backlog at a glance."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from datetime import timedelta

import aio_pika
import aiormq

from herald_shared.db import Connection
from herald_shared.messaging.topology import SUBSCRIPTIONS, ConsumerQueues, consumer_queues
from herald_shared.settings import AmqpSettings, ConsumerSettings


@dataclass(frozen=True, slots=True)
class QueueStatus:
    consumer: str
    queue: str
    ready: int | None
    consumers: int | None
    retrying: int | None
    dead_letters: int | None


@dataclass(frozen=True, slots=True)
class OutboxStatus:
    unpublished: int
    oldest_age: timedelta | None


async def _depth(connection: aio_pika.abc.AbstractConnection, name: str) -> tuple[int, int] | None:
    """(messages, consumers) of a queue, or None when it does not exist."""
    channel = await connection.channel()
    try:
        queue = await channel.declare_queue(name, passive=True)
    except aiormq.exceptions.ChannelNotFoundEntity:
        return None
    result = queue.declaration_result
    with contextlib.suppress(aiormq.exceptions.AMQPError):
        await channel.close()
    return result.message_count or 0, result.consumer_count or 0


async def queue_status(
    settings: AmqpSettings, consumers: list[str] | None = None
) -> list[QueueStatus]:
    retry_delays = ConsumerSettings().retry_delays_seconds
    connection = await aio_pika.connect(
        settings.url.get_secret_value(), timeout=settings.connect_timeout_seconds
    )
    statuses = []
    try:
        for consumer in consumers or list(SUBSCRIPTIONS):
            queues: ConsumerQueues = consumer_queues(
                settings.namespace, consumer, retry_delays=retry_delays
            )
            main = await _depth(connection, queues.main)
            dead = await _depth(connection, queues.dead_letter)
            retrying = 0
            for name in queues.retry_queues:
                depth = await _depth(connection, name)
                retrying += depth[0] if depth else 0
            statuses.append(
                QueueStatus(
                    consumer=consumer,
                    queue=queues.main,
                    ready=main[0] if main else None,
                    consumers=main[1] if main else None,
                    retrying=retrying,
                    dead_letters=dead[0] if dead else None,
                )
            )
    finally:
        await connection.close()
    return statuses


async def outbox_status(conn: Connection) -> OutboxStatus:
    row = await conn.fetchrow(
        "SELECT count(*) AS n, now() - min(created_at) AS age "
        "FROM outbox WHERE published_at IS NULL"
    )
    assert row is not None
    return OutboxStatus(unpublished=row["n"], oldest_age=row["age"])
