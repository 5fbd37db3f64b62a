"""What every scenario starts from: Herald running on the private servers with two accounts,
a healthy webhook subscriber per account and a load driver aimed at the API; and the scale of
the run (the CI-sized default, or a longer soak with ``HERALD_CHAOS_SOAK=1``)."""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import httpx

from tests.chaos.load import Account, LoadDriver, LoadProfile
from tests.chaos.subscribers import Subscriber, subscribe
from tests.chaos.system import ChaosSystem, Service
from tests.support.waiting import wait_until


def soaking() -> bool:
    """``HERALD_CHAOS_SOAK=1``: the long form of every scenario (``make test-chaos``)."""
    return os.environ.get("HERALD_CHAOS_SOAK", "") not in ("", "0", "false")


#: The per-test timeout of a scenario (pytest-timeout), at either scale.
SCENARIO_TIMEOUT = 1500 if soaking() else 300


@dataclass(frozen=True, slots=True)
class Scale:
    """How long each phase of a scenario lasts and how hard the load pushes."""

    profile: LoadProfile
    #: Accepted writes to wait for before injecting a fault (the system is demonstrably up).
    warmup_writes: int
    #: Seconds of load around and after each fault.
    phase_seconds: float
    soak: bool

    @classmethod
    def from_environment(cls) -> Scale:
        if soaking():
            return cls(LoadProfile(clients=8, rate=60.0, max_requests=100_000), 200, 20.0, True)
        return cls(LoadProfile(clients=4, rate=24.0, max_requests=5000), 20, 3.0, False)


@dataclass(slots=True)
class Scenario:
    system: ChaosSystem
    api: Service
    accounts: list[Account]
    subscribers: list[Subscriber]
    driver: LoadDriver
    scale: Scale
    marks: dict[str, float] = field(default_factory=dict)

    def mark(self, name: str) -> float:
        """Remember when something happened (``time.monotonic()``)."""
        self.marks[name] = time.monotonic()
        return self.marks[name]

    async def breaker_open(self, name: str = "herald-api.redis") -> bool | None:
        """The API's ``herald_breaker_open`` gauge for ``name`` (None when not exported)."""
        async with httpx.AsyncClient(
            base_url=self.api.metrics_url or self.api.health_url, timeout=5
        ) as http:
            text = (await http.get("/metrics")).text
        for line in text.splitlines():
            if line.startswith("herald_breaker_open{") and f'breaker="{name}"' in line:
                return float(line.rsplit(" ", 1)[1]) >= 1
        return None

    def recovery_after(self, mark: str) -> float | None:
        """Seconds from ``mark`` to the first accepted write started after it."""
        first = self.driver.first_ok_write_after(self.marks[mark])
        return None if first is None else first - self.marks[mark]

    async def wait_recovered(self, mark: str, *, seconds: float = 30.0) -> float:
        """Wait until a write started after ``mark`` is accepted; the recovery time."""

        async def recovered() -> bool:
            return self.recovery_after(mark) is not None

        await wait_until(recovered, seconds=seconds, interval=0.05, message="no write accepted")
        recovery = self.recovery_after(mark)
        assert recovery is not None
        return recovery


@contextlib.asynccontextmanager
async def running_herald(
    system: ChaosSystem,
    scale: Scale,
    *,
    api_processes: int = 2,
    accounts: int = 2,
    profile: LoadProfile | None = None,
) -> AsyncIterator[Scenario]:
    """Start every service, make the accounts and their healthy subscribers, and a load driver
    (not started); everything is stopped when the block ends."""
    api = await system.start_all(api_processes=api_processes)
    made = await system.create_accounts(accounts)
    subscribers: list[Subscriber] = []
    driver = LoadDriver([api.health_url], made, profile or scale.profile)
    try:
        for n, account in enumerate(made):
            subscribers.append(await subscribe(system, api, account, name=f"healthy-{n}"))
        yield Scenario(system, api, made, subscribers, driver, scale)
    finally:
        await driver.close()
        for subscriber in subscribers:
            await subscriber.receiver.stop()
