"""RabbitMQ faults: the broker SIGKILLed and restarted twice under load loses nothing (writes
keep succeeding into the outbox, consumers come back by themselves); and a consumer told to
stop while the broker is down stops within its grace period."""

from __future__ import annotations

import time

import pytest

from tests.chaos.ledger import assert_kept, check_ledger
from tests.chaos.scenario import SCENARIO_TIMEOUT, Scale, running_herald
from tests.chaos.system import ChaosSystem

pytestmark = [pytest.mark.chaos, pytest.mark.timeout(SCENARIO_TIMEOUT)]


async def test_rabbitmq_killed_and_restarted_twice_under_load_loses_nothing(
    chaos_system: ChaosSystem, scale: Scale
) -> None:
    rabbitmq = chaos_system.servers.rabbitmq
    async with running_herald(chaos_system, scale) as herald:
        declared = herald.mark("services ready")
        herald.driver.start()
        await herald.driver.wait_ok_writes(scale.warmup_writes)
        # The services declared their quorum queues at start: make sure that is safely past.
        await rabbitmq.settled(declared)
        back_after = []
        for round_ in (1, 2):
            await rabbitmq.kill()
            killed = herald.mark(f"killed {round_}")
            await herald.driver.run_for(scale.phase_seconds)
            outage = herald.driver.answers_between(killed, time.monotonic())
            refused = [
                a
                for a in outage
                if a.kind in ("create", "update", "delete")
                and (a.status is None or a.status >= 500)
            ]
            assert not refused, f"writes failed while the broker was down: {refused[:3]}"
            await rabbitmq.restart()
            restarted = herald.mark(f"restarted {round_}")
            await chaos_system.wait_worker_progress()
            back_after.append(time.monotonic() - restarted)
            await herald.driver.run_for(scale.phase_seconds)
        await herald.driver.stop()
        report = await check_ledger(
            chaos_system,
            herald.driver,
            herald.subscribers,
            scenario="rabbitmq killed twice",
            recovery_seconds=max(back_after),
        )
        report.notes.append(
            "the worker handled events again "
            + ", ".join(f"{s:.1f} s" for s in back_after)
            + " after each restart"
        )
        assert_kept(report)


async def test_consumers_told_to_stop_while_the_broker_is_down_stop_within_their_grace(
    chaos_system: ChaosSystem, scale: Scale
) -> None:
    rabbitmq = chaos_system.servers.rabbitmq
    async with running_herald(chaos_system, scale) as herald:
        declared = herald.mark("services ready")
        herald.driver.start()
        await herald.driver.wait_ok_writes(scale.warmup_writes)
        await rabbitmq.settled(declared)
        await rabbitmq.kill()
        # Writes go on into the outbox while the consumers are told to stop.
        stops = {}
        for consumer in ("worker", "cache-invalidator"):
            (service,) = chaos_system.running(consumer)
            # The grace is 5 s; allow as much again for the process to exit.
            stops[consumer] = await service.sigterm(10.0)
        await rabbitmq.restart()
        # The replacements (a deploy, or the supervisor) take over what was left.
        for consumer in ("worker", "cache-invalidator"):
            await chaos_system.start_consumer(consumer)
        await herald.driver.run_for(scale.phase_seconds)
        await herald.driver.stop()
        codes = {consumer: code for consumer, (code, _) in stops.items()}
        report = await check_ledger(
            chaos_system,
            herald.driver,
            herald.subscribers,
            scenario="consumers SIGTERMed while rabbitmq is down",
        )
        report.notes.append(
            "stopped "
            + ", ".join(
                f"{name} (exit {code}) in {took:.1f} s" for name, (code, took) in stops.items()
            )
        )
        # None: still running when the wait ended.
        assert codes == {"worker": 0, "cache-invalidator": 0}, f"(exit code, seconds): {stops}"
        assert_kept(report)
