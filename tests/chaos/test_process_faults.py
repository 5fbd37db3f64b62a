"""Service process faults under load: a worker SIGKILLed mid-batch, and a rolling SIGTERM of
the API, the worker and the cache-invalidator (each replaced first, as a deploy does)."""

from __future__ import annotations

import pytest

from tests.chaos.ledger import assert_kept, check_ledger
from tests.chaos.load import Outcome
from tests.chaos.scenario import SCENARIO_TIMEOUT, Scale, running_herald
from tests.chaos.system import ChaosSystem
from tests.support.waiting import wait_until

pytestmark = [pytest.mark.chaos, pytest.mark.timeout(SCENARIO_TIMEOUT)]

#: The consumers' and the API's grace is 5 s; a clean stop takes less, plus process exit.
STOP_BOUND_SECONDS = 10.0


async def test_a_worker_killed_mid_batch_loses_and_duplicates_nothing(
    chaos_system: ChaosSystem, scale: Scale
) -> None:
    async with running_herald(chaos_system, scale) as herald:
        herald.driver.start()
        await herald.driver.wait_ok_writes(scale.warmup_writes)
        (worker,) = chaos_system.running("worker")

        async def busy() -> bool:
            # Handled some, with more outstanding: the kill lands mid-batch.
            handled = await chaos_system.db.fetchval(
                "SELECT count(*) FROM posts WHERE enriched_version = version"
            )
            total = await chaos_system.db.fetchval("SELECT count(*) FROM posts")
            return bool(handled > 0 and total > handled)

        await wait_until(busy, seconds=30, interval=0.02, message="the worker was never mid-batch")
        await worker.sigkill()
        herald.mark("worker killed")
        await herald.driver.run_for(scale.phase_seconds)
        await chaos_system.start_consumer("worker")
        herald.mark("worker replaced")
        await herald.driver.run_for(scale.phase_seconds)
        await herald.driver.stop()
        report = await check_ledger(
            chaos_system, herald.driver, herald.subscribers, scenario="worker killed mid-batch"
        )
        assert_kept(report)


async def test_a_rolling_restart_of_every_service_drops_nothing(
    chaos_system: ChaosSystem, scale: Scale
) -> None:
    async with running_herald(chaos_system, scale) as herald:
        herald.driver.start()
        await herald.driver.wait_ok_writes(scale.warmup_writes)
        stops = []

        old_api = herald.api
        new_api = await chaos_system.start_api(processes=2)
        herald.driver.set_endpoints([old_api.health_url, new_api.health_url])
        await herald.driver.run_for(scale.phase_seconds)
        # As a load balancer does on a failing readiness probe: no new requests to the old one.
        herald.driver.set_endpoints([new_api.health_url])
        stops.append(("api", *await old_api.sigterm(STOP_BOUND_SECONDS)))
        await herald.driver.run_for(scale.phase_seconds)

        for consumer in ("worker", "cache-invalidator"):
            (old,) = chaos_system.running(consumer)
            await chaos_system.start_consumer(consumer)
            await herald.driver.run_for(scale.phase_seconds)
            stops.append((consumer, *await old.sigterm(STOP_BOUND_SECONDS)))
            await herald.driver.run_for(scale.phase_seconds)
        await herald.driver.stop()

        dropped = [
            w
            for w in herald.driver.writes
            if w.outcome is Outcome.UNKNOWN or w.status is None or w.status >= 500
        ]
        server_errors = {k: v for k, v in herald.driver.statuses().items() if k[0] in "5e"}
        report = await check_ledger(
            chaos_system, herald.driver, herald.subscribers, scenario="rolling SIGTERM"
        )
        report.notes.append(
            "stopped "
            + ", ".join(f"{name} (exit {code}) in {took:.1f} s" for name, code, took in stops)
        )
        assert [(name, code) for name, code, _ in stops] == [
            ("api", 0),
            ("worker", 0),
            ("cache-invalidator", 0),
        ], stops
        assert not server_errors, server_errors
        assert not dropped, [(w.op, w.status, w.error) for w in dropped[:5]]
        assert_kept(report)
