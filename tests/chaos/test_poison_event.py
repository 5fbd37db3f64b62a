"""A poison event that kills its consumer process every time it is delivered. Restarted by its
supervisor, the consumer must not crash-loop for ever: the broker's delivery limit dead-letters
the event after a few deliveries, and every other event is handled exactly once."""

from __future__ import annotations

import uuid

import pytest

from herald_shared.events import EventEnvelope, PostCreated
from tests.chaos.ledger import REPORTS, LedgerReport
from tests.chaos.poison_consumer import CRASH_STATUS, POISON_TITLE
from tests.chaos.scenario import SCENARIO_TIMEOUT
from tests.chaos.system import RETRY_DELAYS, ChaosSystem, Service
from tests.support.network import free_port
from tests.support.waiting import wait_until

pytestmark = [pytest.mark.chaos, pytest.mark.timeout(SCENARIO_TIMEOUT)]

#: Crashes the supervisor tolerates before calling it a crash loop: a delivery limit of up to
#: six redeliveries dead-letters the event within this many.
MAX_CRASHES = 8


def post_created(title: str) -> EventEnvelope:
    data = PostCreated(author_id=uuid.uuid4(), status="draft", title=title, tags=[])
    return EventEnvelope.wrap(data, aggregate_id=uuid.uuid4(), aggregate_version=1)


async def start(system: ChaosSystem, name: str) -> Service:
    port = free_port()
    return system.start_module(
        name,
        "tests.chaos.poison_consumer",
        {
            "HERALD_TEST_CONSUMER": name,
            "HERALD_CONSUMER_CONCURRENCY": "1",
            "HERALD_CONSUMER_PREFETCH": "1",
            "HERALD_CONSUMER_HEALTH_PORT": str(port),
        },
        port,
    )


async def test_a_poison_event_is_dead_lettered_instead_of_crash_looping(
    chaos_system: ChaosSystem,
) -> None:
    name = f"poison-{uuid.uuid4().hex[:6]}"
    chaos_system.extra_consumers.add(name)
    queues = chaos_system.queues(name)
    assert queues.retry_delays == RETRY_DELAYS
    consumer = await start(chaos_system, name)
    await consumer.wait_ready()
    await chaos_system.servers.rabbitmq.settled()
    normal = [post_created(f"normal {n}") for n in range(20)]
    poison = post_created(POISON_TITLE)
    await chaos_system.publish([*normal[:10], poison, *normal[10:]])
    crashes: list[int] = []

    async def settled_or_crash_looping() -> bool:
        nonlocal consumer
        if not consumer.alive:
            consumer.stopped = "crashed"
            crashes.append(consumer.process.returncode)
            if len(crashes) > MAX_CRASHES:
                return True
            consumer = await start(chaos_system, name)
        handled = await _handled(chaos_system, name)
        dead = await chaos_system.queue_depth(queues.dead_letter) or 0
        return handled == len(normal) and dead == 1

    await wait_until(settled_or_crash_looping, seconds=120, interval=0.1, message="never settled")
    assert set(crashes) <= {CRASH_STATUS}, crashes
    assert len(crashes) <= MAX_CRASHES, f"the consumer crash-looped: {len(crashes)} crashes"
    rows = await chaos_system.db.fetch(
        "SELECT event_id, count(*) AS n FROM chaos_poison_effects WHERE consumer = $1 "
        "GROUP BY event_id",
        name,
    )
    handled_once = {row["event_id"]: row["n"] for row in rows} == {e.id: 1 for e in normal}
    REPORTS.append(
        LedgerReport(
            "poison event kills its consumer",
            events=len(normal) + 1,
            events_lost=len({e.id for e in normal} - {row["event_id"] for row in rows}),
            duplicate_effects=sum(row["n"] - 1 for row in rows),
            dead_letters={name: await chaos_system.queue_depth(queues.dead_letter) or 0},
            notes=[f"{len(crashes)} crashes (exit {CRASH_STATUS}) before it was dead-lettered"],
        )
    )
    assert handled_once, rows
    await consumer.sigterm(15.0)
    assert await chaos_system.queue_depth(queues.main) == 0


async def _handled(system: ChaosSystem, consumer: str) -> int:
    """Events the consumer has handled (its table appears once the first process started)."""
    exists = await system.db.fetchval("SELECT to_regclass('chaos_poison_effects') IS NOT NULL")
    if not exists:
        return 0
    count: int = await system.db.fetchval(
        "SELECT count(*) FROM chaos_poison_effects WHERE consumer = $1", consumer
    )
    return count
