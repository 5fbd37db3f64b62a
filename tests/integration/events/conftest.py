"""Fixtures for the event tests: a consumer (queue) name of each test's own, events to publish,
and queries over the tables the recording handler of ``tests.support.consumer_app`` writes.

Every test names its own consumer (``consumer_name``), so its queues are its own; the consumers
are bound to ``post.created`` in the run's namespace, so a test only ever counts its own event
ids.
"""

from __future__ import annotations

import json
import os
import uuid
from collections import Counter
from collections.abc import Iterable

import asyncpg
import pytest

from herald_shared.events import EventEnvelope, PostCreated
from tests.conftest import TEST_CONSUMERS, TEST_RETRY_DELAYS
from tests.support.broker import FAST_RETRY_DELAYS
from tests.support.services import Processes
from tests.support.waiting import wait_until

#: Who ``herald dlq`` commands run by tests say they are (the audit records it).
ACTOR = "events-test"


def cli_env(processes: Processes) -> dict[str, str]:
    """The environment for ``herald`` commands about the test's consumers."""
    return {
        **os.environ,
        **processes.base_env(),
        "HERALD_ACTOR": ACTOR,
        "HERALD_CONSUMER_RETRY_DELAYS_SECONDS": json.dumps(list(FAST_RETRY_DELAYS)),
    }


@pytest.fixture
def consumer_name() -> str:
    """A consumer (queue) name of this test's own, removed with the run's namespace."""
    name = f"t{uuid.uuid4().hex[:8]}"
    TEST_CONSUMERS.add(name)
    TEST_RETRY_DELAYS.add(FAST_RETRY_DELAYS)
    return name


def post_created(author_id: uuid.UUID | None = None) -> EventEnvelope:
    """A ``post.created`` envelope for a post of its own."""
    data = PostCreated(
        author_id=author_id or uuid.uuid4(), status="draft", title="An event", tags=["events"]
    )
    return EventEnvelope.wrap(data, aggregate_id=uuid.uuid4(), aggregate_version=1)


async def effects(
    pool: asyncpg.Pool, consumer: str, event_ids: Iterable[uuid.UUID]
) -> Counter[uuid.UUID]:
    """How many effects each of ``event_ids`` had for ``consumer`` (events with none are absent)."""
    rows = await pool.fetch(
        "SELECT event_id FROM test_effects WHERE consumer = $1 AND event_id = ANY($2::uuid[])",
        consumer,
        list(event_ids),
    )
    return Counter(row["event_id"] for row in rows)


async def count_effects(pool: asyncpg.Pool, consumer: str, event_ids: Iterable[uuid.UUID]) -> int:
    count: int = await pool.fetchval(
        "SELECT count(*) FROM test_effects WHERE consumer = $1 AND event_id = ANY($2::uuid[])",
        consumer,
        list(event_ids),
    )
    return count


async def effects_by_pid(
    pool: asyncpg.Pool, consumer: str, event_ids: Iterable[uuid.UUID]
) -> Counter[int]:
    """How many of the effects of ``event_ids`` each consumer process had."""
    rows = await pool.fetch(
        "SELECT pid, count(*) AS n FROM test_effects "
        "WHERE consumer = $1 AND event_id = ANY($2::uuid[]) GROUP BY pid",
        consumer,
        list(event_ids),
    )
    return Counter({row["pid"]: row["n"] for row in rows})


async def attempted(
    pool: asyncpg.Pool, consumer: str, event_ids: Iterable[uuid.UUID]
) -> set[uuid.UUID]:
    """Which of ``event_ids`` a handler of ``consumer`` has started on."""
    rows = await pool.fetch(
        "SELECT DISTINCT event_id FROM test_attempts "
        "WHERE consumer = $1 AND event_id = ANY($2::uuid[])",
        consumer,
        list(event_ids),
    )
    return {row["event_id"] for row in rows}


async def attempts(pool: asyncpg.Pool, consumer: str, event_id: uuid.UUID) -> list[asyncpg.Record]:
    """The tries of one event, oldest first (attempt number, pid, time)."""
    return list(
        await pool.fetch(
            "SELECT attempt, pid, at FROM test_attempts WHERE consumer = $1 AND event_id = $2 "
            "ORDER BY at",
            consumer,
            event_id,
        )
    )


async def wait_for_effects(
    pool: asyncpg.Pool, consumer: str, event_ids: Iterable[uuid.UUID], *, seconds: float = 30.0
) -> None:
    """Wait until every one of ``event_ids`` has at least one effect."""
    wanted = list(set(event_ids))

    async def all_done() -> bool:
        handled = await pool.fetchval(
            "SELECT count(DISTINCT event_id) FROM test_effects "
            "WHERE consumer = $1 AND event_id = ANY($2::uuid[])",
            consumer,
            wanted,
        )
        return bool(handled == len(wanted))

    await wait_until(
        all_done, seconds=seconds, interval=0.05, message=f"not all {len(wanted)} events handled"
    )
