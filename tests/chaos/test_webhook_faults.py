"""Webhook receivers that fail: one that hangs and one that answers 500, beside a healthy one
of the same account. The healthy one still receives every event; the failing ones are retried
a bounded number of times and never hold more connections than the per-destination limit."""

from __future__ import annotations

import pytest

from tests.chaos.ledger import assert_kept, check_ledger
from tests.chaos.scenario import SCENARIO_TIMEOUT, Scale, running_herald
from tests.chaos.subscribers import subscribe
from tests.chaos.system import BASE_ENV, ChaosSystem
from tests.support.webhook_receiver import always, hang

pytestmark = [pytest.mark.chaos, pytest.mark.timeout(SCENARIO_TIMEOUT)]


async def test_a_hanging_and_a_failing_receiver_do_not_starve_a_healthy_one(
    chaos_system: ChaosSystem, scale: Scale
) -> None:
    async with running_herald(chaos_system, scale) as herald:
        account = herald.accounts[0]
        hanging = await subscribe(
            chaos_system, herald.api, account, name="hanging", behaviour=hang(), healthy=False
        )
        failing = await subscribe(
            chaos_system,
            herald.api,
            account,
            name="failing",
            behaviour=always(500),
            healthy=False,
        )
        herald.subscribers += [hanging, failing]
        herald.driver.start()
        await herald.driver.wait_ok_writes(scale.warmup_writes)
        await herald.driver.run_for(scale.phase_seconds * 2)
        await herald.driver.stop()
        report = await check_ledger(
            chaos_system, herald.driver, herald.subscribers, scenario="failing webhooks"
        )
        per_host = 4  # HERALD_WEBHOOKS_PER_HOST_CONCURRENCY's default
        report.notes.append(
            f"hanging receiver got {len(hanging.receiver.requests)} requests (at most "
            f"{hanging.receiver.most_open} at once), failing one {len(failing.receiver.requests)}"
        )
        assert "HERALD_WEBHOOKS_PER_HOST_CONCURRENCY" not in BASE_ENV
        assert hanging.receiver.requests, "the hanging receiver was never called"
        assert failing.receiver.requests, "the failing receiver was never called"
        assert hanging.receiver.most_open <= per_host
        assert_kept(report)
