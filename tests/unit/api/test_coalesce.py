"""SingleFlight: concurrent identical loads share one run, and callers cannot spoil it."""

from __future__ import annotations

import asyncio

import pytest

from herald_api.posts.single_flight import SingleFlight
from tests.support.waiting import wait_until


class Load:
    """A load that waits for ``release`` and counts how often it started."""

    def __init__(self, result: object = "row", error: BaseException | None = None) -> None:
        self.release = asyncio.Event()
        self.started = 0
        self.finished = 0
        self.result = result
        self.error = error

    async def __call__(self) -> object:
        self.started += 1
        await self.release.wait()
        self.finished += 1
        if self.error is not None:
            raise self.error
        return self.result


async def started(load: Load, flights: SingleFlight[object]) -> None:
    async def running() -> bool:
        return load.started == 1 and flights.in_flight == 1

    await wait_until(running, seconds=5, message="the load did not start")


async def test_concurrent_callers_share_one_load() -> None:
    flights: SingleFlight[object] = SingleFlight()
    load = Load(result=object())
    callers = [asyncio.create_task(flights.run("post-1", load)) for _ in range(50)]
    await started(load, flights)
    load.release.set()
    results = await asyncio.gather(*callers)
    assert load.started == 1
    assert all(result is load.result for result in results)
    assert flights.in_flight == 0


async def test_different_keys_do_not_share() -> None:
    flights: SingleFlight[object] = SingleFlight()
    first, second = Load("a"), Load("b")
    a = asyncio.create_task(flights.run("post-1", first))
    b = asyncio.create_task(flights.run("post-2", second))
    first.release.set()
    second.release.set()
    assert list(await asyncio.gather(a, b)) == ["a", "b"]
    assert (first.started, second.started) == (1, 1)


async def test_an_exception_reaches_every_caller() -> None:
    flights: SingleFlight[object] = SingleFlight()
    error = RuntimeError("database down")
    load = Load(error=error)
    callers = [asyncio.create_task(flights.run("post-1", load)) for _ in range(10)]
    await started(load, flights)
    load.release.set()
    results = await asyncio.gather(*callers, return_exceptions=True)
    assert results == [error] * 10
    assert load.started == 1
    # The failure is not remembered: the next caller loads again.
    retry = Load(result="row")
    retry.release.set()
    assert await flights.run("post-1", retry) == "row"


async def test_a_cancelled_caller_does_not_cancel_the_load_for_the_others() -> None:
    flights: SingleFlight[object] = SingleFlight()
    load = Load(result="row")
    leaving = asyncio.create_task(flights.run("post-1", load))
    staying = asyncio.create_task(flights.run("post-1", load))
    await started(load, flights)
    leaving.cancel()
    with pytest.raises(asyncio.CancelledError):
        await leaving
    load.release.set()
    assert await staying == "row"
    assert (load.started, load.finished) == (1, 1)


async def test_the_load_finishes_even_when_every_caller_went_away() -> None:
    flights: SingleFlight[object] = SingleFlight()
    load = Load(result="row")
    caller = asyncio.create_task(flights.run("post-1", load))
    await started(load, flights)
    caller.cancel()
    with pytest.raises(asyncio.CancelledError):
        await caller
    load.release.set()

    async def landed() -> bool:
        return load.finished == 1 and flights.in_flight == 0

    await wait_until(landed, seconds=5, message="the abandoned load did not finish")


async def test_a_caller_arriving_after_the_load_finished_starts_a_new_one() -> None:
    """A finished load must not serve callers that arrive after it returned, even in the same
    turn of the event loop (before its done-callback unregistered it): their data may already
    be older than what they are entitled to see."""
    flights: SingleFlight[object] = SingleFlight()
    gate = asyncio.Event()
    first = Load(result="old")
    first.release = gate
    second = Load(result="new")
    second.release.set()

    late_waiting = False

    async def late_caller() -> object:
        nonlocal late_waiting
        late_waiting = True
        # Woken by the same event as the first load, right after it: the first load has
        # returned, but its task's done-callbacks have not run yet.
        await gate.wait()
        return await flights.run("post-1", second)

    async def late_is_waiting() -> bool:
        return late_waiting

    flight = asyncio.create_task(flights.run("post-1", first))
    await started(first, flights)
    late = asyncio.create_task(late_caller())
    await wait_until(late_is_waiting, seconds=5, message="the late caller is not waiting")
    gate.set()
    assert await flight == "old"
    assert await late == "new"
    assert second.started == 1
