"""A relay that cannot reach the broker tries again after a doubling, jittered wait — however
often writes wake it — rather than on every sweep from every process."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import time

import asyncpg
import pytest
from aio_pika.abc import AbstractConnection

from herald_shared.relay import OutboxRelay, reconnect_delay
from herald_shared.settings import AmqpSettings, RelaySettings
from tests.integration.relay.conftest import running
from tests.support.waiting import wait_until

INITIAL = 0.1
MAXIMUM = 0.4


async def test_connection_attempts_back_off_however_often_the_relay_is_woken(
    db_pool: asyncpg.Pool, amqp_settings: AmqpSettings
) -> None:
    attempts: list[float] = []

    async def refused() -> AbstractConnection:
        attempts.append(time.monotonic())
        raise ConnectionRefusedError("the broker is down")

    relay = OutboxRelay(
        db_pool,
        amqp_settings,
        RelaySettings(
            sweep_interval_seconds=0.01,
            reconnect_initial_seconds=INITIAL,
            reconnect_max_seconds=MAXIMUM,
        ),
        name="test-relay-backoff",
        connect_broker=refused,
    )

    async def writes() -> None:
        while True:
            relay.wake()
            await asyncio.sleep(0.005)

    async def six_attempts() -> bool:
        return len(attempts) >= 6

    async with running([relay]):
        waker = asyncio.create_task(writes())
        try:
            await wait_until(six_attempts, seconds=10, message="the relay stopped trying")
        finally:
            waker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await waker
    gaps = [later - earlier for earlier, later in itertools.pairwise(attempts[:6])]
    # At least half of 0.1, 0.2, 0.4 (the cap), 0.4, 0.4 s.
    floors = [min(MAXIMUM, INITIAL * 2**n) / 2 for n in range(5)]
    assert all(gap >= floor for gap, floor in zip(gaps, floors, strict=True)), gaps
    assert relay.stats.published == 0
    assert not relay.connected


@pytest.mark.parametrize("failures", [1, 2, 3, 8, 40])
def test_the_wait_doubles_up_to_its_cap_and_is_jittered(failures: int) -> None:
    ceiling = min(30.0, 0.5 * 2 ** (failures - 1))
    waits = [reconnect_delay(failures, initial=0.5, maximum=30.0) for _ in range(200)]
    assert all(ceiling / 2 <= wait <= ceiling for wait in waits)
    assert len(set(waits)) > 100, "no jitter: relays would retry in step"
