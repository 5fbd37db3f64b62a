"""A consumer process for the poison-event scenario: the shared consumer runtime with one
handler that records each event it handles (in the inbox transaction, so a duplicate would
show) and kills its own process, as an out-of-memory kill or a segfault would, on an event
whose title is ``poison``.

Run as ``python -m tests.chaos.poison_consumer`` with ``HERALD_TEST_CONSUMER`` (the queue name)
and the usual ``HERALD_DB_*``, ``HERALD_AMQP_*`` and ``HERALD_CONSUMER_*`` settings.
"""

from __future__ import annotations

import os

import asyncpg
import uvloop

from herald_shared.db import Connection, create_database
from herald_shared.events import PostCreated
from herald_shared.logs import configure_logging
from herald_shared.messaging.consumer import Consumer
from herald_shared.messaging.handlers import Event, HandlerTable
from herald_shared.messaging.options import health_address
from herald_shared.messaging.service import serve
from herald_shared.settings import AmqpSettings, ConsumerSettings, DatabaseSettings, LogSettings

POISON_TITLE = "poison"
#: The exit status of a process the kernel's OOM killer ended (128 + SIGKILL).
CRASH_STATUS = 137

SCHEMA = """
CREATE TABLE IF NOT EXISTS chaos_poison_effects (
    consumer text NOT NULL, event_id uuid NOT NULL, pid int NOT NULL)
"""


async def handle(event: Event[PostCreated], tx: Connection, *, consumer: str) -> None:
    if event.payload.title == POISON_TITLE:
        os._exit(CRASH_STATUS)
    await tx.execute(
        "INSERT INTO chaos_poison_effects (consumer, event_id, pid) VALUES ($1, $2, $3)",
        consumer,
        event.id,
        os.getpid(),
    )


async def main() -> None:
    name = os.environ["HERALD_TEST_CONSUMER"]
    settings = ConsumerSettings()
    db_settings = DatabaseSettings()
    conn = await asyncpg.connect(db_settings.dsn)
    try:
        await conn.execute(SCHEMA)
    finally:
        await conn.close()
    async with create_database(db_settings, application_name=f"chaos-{name}") as db:
        handlers = HandlerTable()
        handlers.inbox(PostCreated, handle, consumer=name)
        consumer = Consumer(
            name,
            handlers,
            db=db,
            amqp=AmqpSettings(),
            settings=settings,
        )
        await serve(consumer, health=health_address(settings, 0))


if __name__ == "__main__":
    configure_logging("chaos-poison-consumer", LogSettings())
    uvloop.run(main())
