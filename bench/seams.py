"""Everything the harness takes from Herald's own code, in one place.

The harness drives Herald through its public surfaces where it can: the ``herald-api``,
``herald-worker`` and ``herald-cache-invalidator`` commands, HTTP, Prometheus metrics and plain
SQL on the schema. A few measurements need Herald's code itself — the consumer runtime run with
a benchmark handler, the outbox relay class, the publisher, the accounts and cursor helpers the
seed uses — and this module is the only one that imports them, so a change of a module path or
of the handler API inside Herald changes this file and nothing else in ``bench``.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import asyncpg

from herald_api.http.preconditions import etag_for
from herald_api.paging.cursors import CursorCodec, Position, filter_fingerprint
from herald_api.posts.reads import post_json
from herald_shared import accounts
from herald_shared.apikeys import Role
from herald_shared.db import Connection, create_database
from herald_shared.events import EventEnvelope, PostCreated
from herald_shared.logs import configure_logging
from herald_shared.messaging.connection import connect, open_channel
from herald_shared.messaging.consumer import Consumer
from herald_shared.messaging.depth import queue_depth
from herald_shared.messaging.handlers import Event, HandlerTable
from herald_shared.messaging.publisher import build_message, publish_confirmed
from herald_shared.messaging.service import serve
from herald_shared.messaging.topology import consumer_queues, declare_consumer, declare_exchange
from herald_shared.migrate import upgrade
from herald_shared.relay import OutboxRelay
from herald_shared.settings import (
    AmqpSettings,
    ConsumerSettings,
    DatabaseSettings,
    LogSettings,
    RedisSettings,
    RelaySettings,
)

__all__ = [
    "POST_COLUMNS",
    "AmqpSettings",
    "Connection",
    "Consumer",
    "ConsumerSettings",
    "CursorCodec",
    "DatabaseSettings",
    "Event",
    "EventEnvelope",
    "HandlerTable",
    "LogSettings",
    "OutboxRelay",
    "Position",
    "PostCreated",
    "RedisSettings",
    "RelaySettings",
    "Role",
    "accounts",
    "build_message",
    "configure_logging",
    "connect",
    "consumer_queues",
    "create_api_app",
    "create_database",
    "declare_consumer",
    "declare_exchange",
    "etag_for",
    "filter_fingerprint",
    "handler_table",
    "is_enriched",
    "open_channel",
    "post_json",
    "publish_confirmed",
    "queue_depth",
    "serve",
    "upgrade",
]


async def _noop(event: Event[PostCreated], tx: Connection) -> None:
    """Nothing: an inbox handler whose only work is the inbox transaction itself."""


def handler_table(
    handle: Callable[[Event[PostCreated]], Awaitable[None]], *, idempotent: bool
) -> HandlerTable:
    """A table running the benchmark task ``handle`` for every ``post.created`` event.

    ``idempotent=False``: the task runs with the event recorded in the inbox, in its
    transaction (one PostgreSQL transaction per message). ``idempotent=True``: the task is
    registered as idempotent by construction and the runtime skips the inbox and its round
    trips.
    """
    table = HandlerTable()
    if not idempotent:
        table.inbox(PostCreated, _noop)
    table.idempotent(PostCreated, handle)
    return table


#: The columns of a post, as Herald's API reads them.
POST_COLUMNS = (
    "id, author_id, title, body, tags, status, version, created_at, updated_at, published_at, "
    "excerpt, word_count, reading_time_seconds, enriched_at, enriched_version"
)


def is_enriched(row: asyncpg.Record) -> bool:
    """Whether the enriched fields describe the post's current version (part of its ETag)."""
    return bool(row["enriched_version"] == row["version"])


def create_api_app() -> Any:
    """Herald's ASGI app exactly as ``herald-api`` serves it (imported on demand: the app reads
    its settings from the environment the caller has prepared)."""
    from herald_api.app import create_server_app

    return create_server_app()
