"""PostgreSQL faults: a crash and restart (the API answers 503 with Retry-After quickly, never
500, no request hangs, everything recovers without restarting a service), and +100 ms of
latency (pools and timeouts hold: requests fail fast with 503 once the pool wait passes its
bound, and nothing is lost)."""

from __future__ import annotations

import pytest

from tests.chaos.ledger import assert_kept, check_ledger
from tests.chaos.load import Answer, LoadProfile
from tests.chaos.scenario import SCENARIO_TIMEOUT, Scale, running_herald
from tests.chaos.system import ChaosSystem

pytestmark = [pytest.mark.chaos, pytest.mark.timeout(SCENARIO_TIMEOUT)]

#: The longest a request may take while the database is away: the pool's acquire timeout (2 s)
#: plus its connect timeout (5 s), and a second of slack for a busy machine.
OUTAGE_BOUND_SECONDS = 8.0

#: The latency scenario: each direction of every PostgreSQL round trip is this much late.
LATENCY_SECONDS = 0.1
#: Its pool wait (a small pool with a short wait, so the added latency exhausts it) and the
#: longest a statement may wait for a lock (a PATCH or DELETE waits for the row while the
#: worker's transaction for the post's previous event holds it).
LATENCY_ACQUIRE_SECONDS = 0.5
LATENCY_LOCK_WAIT_SECONDS = 1.0
#: The slowest request path with latency: a PATCH (or DELETE) by a key not verified lately.
#: It waits for a connection twice (the key's lookup, then the write), makes one round trip for
#: the key and five for the write (BEGIN, the row lock, the change, the outbox row, COMMIT),
#: and may wait for the row's lock. Redis and RabbitMQ are not slowed. Anything slower is a
#: request that outlived its deadlines (the statement and command timeouts, 5 s and 10 s,
#: are backstops this path must never reach).
LATENCY_SLOWEST_PATH_SECONDS = (
    2 * LATENCY_ACQUIRE_SECONDS + (1 + 5) * 2 * LATENCY_SECONDS + LATENCY_LOCK_WAIT_SECONDS
)
#: ... and a second of slack for a busy machine, as for the outage.
LATENCY_BOUND_SECONDS = LATENCY_SLOWEST_PATH_SECONDS + 1.0


def _quick_refusal(answer: Answer) -> bool:
    return bool(
        answer.status == 503
        and answer.retry_after
        and answer.content_type.startswith("application/problem+json")
    )


def misanswered(answers: list[Answer], *, bound: float) -> list[Answer]:
    """Answers that are neither a success, a client error nor a quick 503 with Retry-After."""
    return [
        a
        for a in answers
        if a.status is None
        or (
            a.status >= 500
            and not (a.status == 503 and a.retry_after and "problem+json" in a.content_type)
        )
        or a.seconds > bound
    ]


async def test_postgres_restarted_answers_503_fast_and_recovers_without_restarts(
    chaos_system: ChaosSystem, scale: Scale
) -> None:
    postgres = chaos_system.servers.postgres
    async with running_herald(chaos_system, scale) as herald:
        pids = {service.process.pid for service in chaos_system.services}
        herald.driver.start()
        await herald.driver.wait_ok_writes(scale.warmup_writes)
        await postgres.kill()
        killed = herald.mark("postgres killed")
        await herald.driver.run_for(scale.phase_seconds)
        await postgres.restart()
        restarted = herald.mark("postgres restarted")
        recovery = await herald.wait_recovered("postgres restarted")
        await herald.driver.run_for(scale.phase_seconds)
        await herald.driver.stop()

        outage = herald.driver.answers_between(killed, restarted + recovery)
        wrong = misanswered(outage, bound=OUTAGE_BOUND_SECONDS)
        report = await check_ledger(
            chaos_system,
            herald.driver,
            herald.subscribers,
            scenario="postgres killed",
            recovery_seconds=recovery,
        )
        report.notes.append(
            f"{len(outage)} answers during the outage, {len(wrong)} not a quick 503 "
            f"(statuses {sorted({str(a.status) for a in wrong})})"
        )
        assert pids == {service.process.pid for service in chaos_system.services}
        assert not wrong, f"{len(wrong)} answers were not a quick 503: {wrong[:3]}"
        assert_kept(report)


async def test_postgres_latency_makes_requests_fail_fast_with_503_and_loses_nothing(
    chaos_system: ChaosSystem, scale: Scale
) -> None:
    proxy = await chaos_system.proxy("postgres")
    chaos_system.extra_env.update(
        {
            "HERALD_DB_POOL_MAX_SIZE": "4",
            "HERALD_DB_ACQUIRE_TIMEOUT_SECONDS": str(LATENCY_ACQUIRE_SECONDS),
            "HERALD_DB_LOCK_TIMEOUT_MS": str(round(LATENCY_LOCK_WAIT_SECONDS * 1000)),
        }
    )
    profile = LoadProfile(clients=16, rate=60.0, max_requests=scale.profile.max_requests)
    async with running_herald(chaos_system, scale, api_processes=1, profile=profile) as herald:
        herald.driver.start()
        await herald.driver.wait_ok_writes(scale.warmup_writes)
        proxy.latency(LATENCY_SECONDS)
        slowed = herald.mark("latency added")
        await herald.driver.run_for(max(scale.phase_seconds * 2, 6.0))
        proxy.restore()
        restored = herald.mark("latency removed")
        await herald.driver.run_for(scale.phase_seconds)
        await herald.driver.stop()

        during = herald.driver.answers_between(slowed, restored)
        wrong = misanswered(during, bound=LATENCY_BOUND_SECONDS)
        refused = [a for a in during if a.status == 503]
        report = await check_ledger(
            chaos_system, herald.driver, herald.subscribers, scenario="postgres +100 ms"
        )
        report.notes.append(
            f"{len(during)} answers with latency: {len(refused)} quick 503s, slowest "
            f"{max(a.seconds for a in during):.2f} s"
        )
        assert refused, "the pool never ran out: the scenario did not exceed the wait bound"
        assert not wrong, f"{len(wrong)} answers were slow or not a 503: {wrong[:3]}"
        assert_kept(report)
