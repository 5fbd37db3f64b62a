"""``herald status``: queue depths, consumers, dead letters and the outbox backlog at a glance."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

import aio_pika

from herald_cli.consumers import KNOWN_CONSUMERS
from herald_shared.db import Connection
from herald_shared.messaging.depth import queue_depth
from herald_shared.messaging.topology import ConsumerQueues, consumer_queues
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


async def queue_status(
    settings: AmqpSettings, consumers: list[str] | None = None
) -> list[QueueStatus]:
    retry_delays = ConsumerSettings().retry_delays_seconds
    connection = await aio_pika.connect(
        settings.url.get_secret_value(), timeout=settings.connect_timeout_seconds
    )
    statuses = []
    try:
        for consumer in consumers or KNOWN_CONSUMERS:
            queues: ConsumerQueues = consumer_queues(
                settings.namespace,
                consumer,
                retry_delays=retry_delays,
                quorum=settings.quorum_queues,
            )
            main = await queue_depth(connection, queues.main)
            dead = await queue_depth(connection, queues.dead_letter)
            retrying = 0
            for name in queues.retry_queues:
                depth = await queue_depth(connection, name)
                retrying += depth.messages if depth else 0
            statuses.append(
                QueueStatus(
                    consumer=consumer,
                    queue=queues.main,
                    ready=main.messages if main else None,
                    consumers=main.consumers if main else None,
                    retrying=retrying,
                    dead_letters=dead.messages if dead else None,
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
