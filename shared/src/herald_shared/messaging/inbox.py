"""The inbox: which events each consumer has applied, recorded in the very transaction that
applies them, so a redelivered event is recognised and changes nothing twice.

``open_inbox`` starts that transaction and claims the event in one round trip, by sending
``BEGIN`` and the insert together as one simple-protocol query: a parameterised query would
need a round trip of its own (the extended protocol carries one statement at a time), and on a
trivial event each round trip is about a fifth of the consumer's CPU. The two values are
therefore written into the SQL, and both are checked first: the event id is a ``uuid.UUID``
(rendered as hex digits and dashes) and the consumer name matches ``CONSUMER_NAME`` — neither
can carry a quote.

The transaction is plain SQL, not asyncpg's ``Connection.transaction()``: handlers run their
statements on it directly (asyncpg refuses to nest its own transactions inside it).
"""

from __future__ import annotations

import contextlib
import re
import uuid

from herald_shared.db import Connection

#: What a consumer may be called: its name is written into the inbox SQL and its queues' names.
CONSUMER_NAME = re.compile(r"[a-z0-9][a-z0-9_.-]{0,63}")


def check_consumer_name(name: str) -> str:
    if not CONSUMER_NAME.fullmatch(name):
        raise ValueError(f"consumer name {name!r} does not match {CONSUMER_NAME.pattern}")
    return name


def claim_sql(consumer: str, event_id: uuid.UUID) -> str:
    check_consumer_name(consumer)
    if type(event_id) is not uuid.UUID:
        raise TypeError(f"event id must be a uuid.UUID, not {type(event_id).__name__}")
    # Both values checked above: neither can hold a quote (see the module's docstring).
    return (
        "BEGIN; INSERT INTO processed_events (consumer, event_id) "  # noqa: S608
        f"VALUES ('{consumer}', '{event_id}') ON CONFLICT DO NOTHING"
    )


def savepoint_claim_sql(consumer: str, event_id: uuid.UUID, *, first: bool) -> str:
    """The claim of one event of a batch, in a savepoint of its own: the first one also begins
    the transaction; a later one releases the previous event's savepoint (kept) first."""
    claim = claim_sql(consumer, event_id).removeprefix("BEGIN; ")
    start = "BEGIN; " if first else "RELEASE SAVEPOINT inbox_event; "
    return f"{start}SAVEPOINT inbox_event; {claim}"


async def open_inbox(conn: Connection, consumer: str, event_id: uuid.UUID) -> bool:
    """Begin a transaction on ``conn`` that holds the event's inbox row.

    Returns False when ``consumer`` applied the event already; the transaction is open either
    way and must end with ``commit`` or ``rollback``. A second consumer process claiming the
    same event at the same time waits here until the first one's transaction ends.
    """
    status = await conn.execute(claim_sql(consumer, event_id))
    return status == "INSERT 0 1"


async def begin(conn: Connection) -> bool:
    """Begin a transaction on ``conn`` without an inbox record, for handlers that are idempotent
    by construction but keep their own writes atomic; True, as ``open_inbox`` for a new event."""
    await conn.execute("BEGIN")
    return True


async def commit(conn: Connection) -> None:
    await conn.execute("COMMIT")


async def rollback(conn: Connection) -> None:
    """Roll back after a failure, which is the error worth reporting: if the connection cannot
    even do this (it broke, or a cancelled query left it busy), the pool discards it."""
    with contextlib.suppress(Exception):
        await conn.execute("ROLLBACK")
