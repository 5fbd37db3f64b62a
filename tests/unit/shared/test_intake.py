"""The consumer's intake: open, paused after a deferral, one probe at a time with growing
pauses, messages held too long handed back. Pauses are short real ones; what is checked is who
was admitted, as what, and never earlier than a pause allows."""

from __future__ import annotations

import asyncio

import pytest

from herald_shared.messaging.intake import HeldTooLongError, Intake, Ticket
from tests.support.waiting import wait_until

PAUSE = 0.05


def intake(concurrency: int = 4, *, max_pause: float = 1.0, max_hold: float = 30.0) -> Intake:
    return Intake(concurrency, max_pause=max_pause, max_hold=max_hold)


def now() -> float:
    return asyncio.get_running_loop().time()


class Waiter:
    """A message waiting for admission; it holds its ticket until told to finish."""

    def __init__(self, gate: Intake) -> None:
        self.gate = gate
        self.ticket: Ticket | None = None
        self.admitted_at: float | None = None
        self.finish = asyncio.Event()
        self.task = asyncio.create_task(self._run())

    async def _run(self) -> None:
        async with self.gate.admit(now()) as ticket:
            self.ticket = ticket
            self.admitted_at = now()
            await self.finish.wait()

    async def admitted(self) -> Ticket:
        async def in_() -> bool:
            return self.ticket is not None

        await wait_until(in_, seconds=5, message="not admitted")
        assert self.ticket is not None
        return self.ticket


async def _deferred_first(gate: Intake) -> float:
    """One message runs while intake is open and finds its dependency down."""
    first = Waiter(gate)
    ticket = await first.admitted()
    assert not ticket.probe
    paused_at = now()  # before: the pause runs from inside ``deferred``
    gate.deferred(ticket, PAUSE)
    first.finish.set()
    await first.task
    return paused_at


async def test_open_intake_admits_up_to_its_concurrency() -> None:
    gate = intake(concurrency=2)
    waiters = [Waiter(gate) for _ in range(3)]
    await waiters[0].admitted()
    await waiters[1].admitted()
    await asyncio.sleep(0)
    assert waiters[2].ticket is None
    waiters[0].finish.set()
    assert not (await waiters[2].admitted()).probe
    for waiter in waiters:
        waiter.finish.set()
    await asyncio.gather(*(w.task for w in waiters))


async def test_after_a_deferral_one_probe_runs_alone_once_the_pause_is_over() -> None:
    gate = intake()
    paused_at = await _deferred_first(gate)
    probe, other = Waiter(gate), Waiter(gate)
    ticket = await probe.admitted()
    assert ticket.probe
    assert probe.admitted_at is not None
    assert probe.admitted_at - paused_at >= PAUSE
    await asyncio.sleep(PAUSE * 2)
    assert other.ticket is None, "a second message ran beside the probe"

    gate.done(ticket)  # the dependency answered: intake opens
    assert not (await other.admitted()).probe
    assert not gate.paused
    probe.finish.set()
    other.finish.set()
    await asyncio.gather(probe.task, other.task)


async def test_a_deferred_probe_doubles_the_pause_up_to_the_cap() -> None:
    gate = intake(max_pause=PAUSE * 3)
    await _deferred_first(gate)
    spacings = []
    for _ in range(3):
        probe = Waiter(gate)
        ticket = await probe.admitted()
        assert ticket.probe
        deferred_at = now()
        gate.deferred(ticket, PAUSE)
        probe.finish.set()
        await probe.task
        follower = Waiter(gate)
        await follower.admitted()
        assert follower.admitted_at is not None
        spacings.append(follower.admitted_at - deferred_at)
        assert follower.ticket is not None
        gate.deferred(follower.ticket, PAUSE)
        follower.finish.set()
        await follower.task
    # Pauses of 2, then 4 (capped at 3), then ... times the first: never shorter.
    assert spacings[0] >= PAUSE * 2
    assert spacings[1] >= PAUSE * 3
    assert spacings[2] >= PAUSE * 3


async def test_deferrals_of_messages_already_running_do_not_lengthen_the_pause() -> None:
    gate = intake()
    running = [Waiter(gate) for _ in range(3)]
    tickets = [await w.admitted() for w in running]
    for ticket in tickets:
        gate.deferred(ticket, PAUSE)
    for waiter in running:
        waiter.finish.set()
    await asyncio.gather(*(w.task for w in running))
    probe = Waiter(gate)
    assert (await probe.admitted()).probe
    gate.done(probe.ticket)  # type: ignore[arg-type]
    probe.finish.set()
    await probe.task
    assert not gate.paused


async def test_a_probe_that_proves_nothing_hands_the_probe_to_the_next_message() -> None:
    gate = intake()
    await _deferred_first(gate)
    probe = Waiter(gate)
    assert (await probe.admitted()).probe
    follower = Waiter(gate)
    probe.finish.set()  # ends without reporting (undecodable, cut short)
    await probe.task
    assert (await follower.admitted()).probe
    assert gate.paused
    follower.finish.set()
    await follower.task


async def test_a_message_held_past_its_longest_hold_is_handed_back_unrun() -> None:
    gate = intake(max_hold=PAUSE)
    gate.deferred(Ticket(probe=False), 60.0)
    with pytest.raises(HeldTooLongError):
        async with gate.admit(now()):
            pytest.fail("admitted while paused")


async def test_closing_lets_every_waiter_through_to_be_handed_back() -> None:
    gate = intake()
    gate.deferred(Ticket(probe=False), 60.0)
    waiters = [Waiter(gate) for _ in range(3)]
    await asyncio.sleep(PAUSE)
    assert all(w.ticket is None for w in waiters)
    gate.close()
    for waiter in waiters:
        assert not (await waiter.admitted()).probe
        waiter.finish.set()
    await asyncio.gather(*(w.task for w in waiters))
