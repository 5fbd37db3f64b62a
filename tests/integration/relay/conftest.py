"""Fixtures for the outbox relay tests: private queues that see what the relay publishes, and
queries over the outbox rows a test wrote.

A private queue is server-named, exclusive and auto-deleted: it exists only for its test's
connection, so tests never share one and never leave one behind. It is read with ``basic.get``,
so once every publisher has stopped, an empty ``get`` means everything published has been read.
"""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Collection, Sequence
from contextlib import asynccontextmanager

import aio_pika
import asyncpg
import pytest
from aio_pika.abc import AbstractIncomingMessage, AbstractQueue

from herald_shared import background
from herald_shared.messaging.topology import declare_exchange
from herald_shared.relay import OutboxRelay
from tests.support.broker import AMQP_URL
from tests.support.waiting import wait_until

STOP_SECONDS = 10.0


class PrivateQueue:
    """What one exclusive queue bound to a namespace's event exchange has received."""

    def __init__(self, queue: AbstractQueue) -> None:
        self._queue = queue
        self.messages: list[AbstractIncomingMessage] = []

    async def collect(self) -> list[AbstractIncomingMessage]:
        """Take every message waiting in the queue now; returns all received so far."""
        while (message := await self._queue.get(no_ack=True, fail=False)) is not None:
            self.messages.append(message)
        return self.messages

    def counts(self) -> Counter[str | None]:
        """How many times each message id was received."""
        return Counter(message.message_id for message in self.messages)

    def duplicates(self) -> dict[str | None, int]:
        return {message_id: n for message_id, n in self.counts().items() if n > 1}

    async def wait_for(self, message_ids: Collection[str], *, seconds: float) -> None:
        """Wait until every one of ``message_ids`` has been received at least once."""
        wanted = set(message_ids)

        async def arrived() -> bool:
            await self.collect()
            return wanted <= self.counts().keys()

        await wait_until(
            arrived,
            seconds=seconds,
            interval=0.05,
            message=f"{len(wanted - self.counts().keys())} of {len(wanted)} messages not received",
        )


Listen = Callable[..., Awaitable[PrivateQueue]]


@pytest.fixture
async def listen() -> AsyncIterator[Listen]:
    """``await listen(namespace, *routing_keys)``: a private queue bound to those keys."""
    connection = await aio_pika.connect(AMQP_URL)

    async def bind(namespace: str, *routing_keys: str) -> PrivateQueue:
        channel = await connection.channel()
        exchange = await declare_exchange(channel, namespace)
        queue = await channel.declare_queue(exclusive=True, auto_delete=True)
        for key in routing_keys:
            await queue.bind(exchange, routing_key=key)
        return PrivateQueue(queue)

    try:
        yield bind
    finally:
        await connection.close()


async def unpublished(pool: asyncpg.Pool, event_ids: Collection[uuid.UUID]) -> set[uuid.UUID]:
    """Which of ``event_ids`` the outbox holds without ``published_at``."""
    rows = await pool.fetch(
        "SELECT event_id FROM outbox WHERE event_id = ANY($1::uuid[]) AND published_at IS NULL",
        list(event_ids),
    )
    return {row["event_id"] for row in rows}


async def wait_published(
    pool: asyncpg.Pool, event_ids: Collection[uuid.UUID], *, seconds: float
) -> None:
    """Wait until the outbox marks every one of ``event_ids`` published."""
    stored = await pool.fetchval(
        "SELECT count(*) FROM outbox WHERE event_id = ANY($1::uuid[])", list(event_ids)
    )
    assert stored == len(set(event_ids)), f"only {stored} of {len(event_ids)} rows are stored"

    async def all_published() -> bool:
        return not await unpublished(pool, event_ids)

    await wait_until(
        all_published,
        seconds=seconds,
        interval=0.05,
        message=f"not every one of {len(event_ids)} outbox rows was published",
    )


@asynccontextmanager
async def running(relays: Sequence[OutboxRelay]) -> AsyncIterator[list[asyncio.Task[None]]]:
    """Run relays in the background; on exit stop them, and fail unless each one finished on
    its own within the deadline, without an error."""
    stop = asyncio.Event()
    tasks = [
        asyncio.create_task(relay.run(stop), name=f"relay-{i}") for i, relay in enumerate(relays)
    ]
    try:
        yield tasks
    finally:
        stop.set()
        late = await background.finish(tasks, grace=STOP_SECONDS)
        assert not late, f"{len(late)} relay(s) did not stop within {STOP_SECONDS} s"
        for task in tasks:
            task.result()
