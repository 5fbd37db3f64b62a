"""Redis SIGKILLed and restarted under load: every read answers 200 from PostgreSQL throughout,
the API's Redis breaker opens and closes (as its metrics show), and after recovery no cached
entry is stale."""

from __future__ import annotations

import time

import pytest

from tests.chaos.ledger import assert_kept, check_ledger
from tests.chaos.scenario import SCENARIO_TIMEOUT, Scale, Scenario, running_herald
from tests.chaos.system import ChaosSystem
from tests.support.waiting import wait_until

pytestmark = [pytest.mark.chaos, pytest.mark.timeout(SCENARIO_TIMEOUT)]


async def wait_breaker(herald: Scenario, *, open_: bool, seconds: float = 30.0) -> None:
    async def reached() -> bool:
        return await herald.breaker_open() is open_

    await wait_until(
        reached, seconds=seconds, interval=0.1, message=f"the Redis breaker never open={open_}"
    )


async def test_redis_killed_and_restarted_reads_stay_200_and_nothing_stale(
    chaos_system: ChaosSystem, scale: Scale
) -> None:
    redis = chaos_system.servers.redis
    async with running_herald(chaos_system, scale) as herald:
        herald.driver.start()
        await herald.driver.wait_ok_writes(scale.warmup_writes)
        assert await herald.breaker_open() is False
        await redis.kill()
        killed = herald.mark("redis killed")
        await wait_breaker(herald, open_=True)
        opened = time.monotonic() - killed
        await herald.driver.run_for(scale.phase_seconds)
        await redis.restart()
        restarted = herald.mark("redis restarted")
        await wait_breaker(herald, open_=False)
        closed = time.monotonic() - restarted
        await herald.driver.run_for(scale.phase_seconds)
        await herald.driver.stop()

        outage = herald.driver.answers_between(killed, restarted + closed)
        reads = [a for a in outage if a.kind in ("get", "list")]
        assert reads, "no read was made while Redis was down"
        not_ok = [a for a in reads if a.status != 200]
        assert not not_ok, f"reads failed while Redis was down: {not_ok[:3]}"
        report = await check_ledger(
            chaos_system,
            herald.driver,
            herald.subscribers,
            scenario="redis killed",
            recovery_seconds=closed,
        )
        report.notes.append(
            f"breaker opened {opened:.1f} s after the kill, closed {closed:.1f} s after the "
            f"restart; {len(reads)} reads during the outage, all 200"
        )
        assert_kept(report)
