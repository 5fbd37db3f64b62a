"""The Breaker adapter (driven by a fake clock) and the bounded retry policy.

pybreaker owns the closed/open/half-open state machine; the adapter adds the clock that decides
when the open period is over and the probe gate that lets a single trial through while
half-open. Nothing here waits on the wall clock: the breaker's time is the fake clock's.
"""

from __future__ import annotations

import asyncio

import pytest
from structlog.testing import capture_logs

from herald_shared.resilience import Breaker, BreakerOpenError, RetryPolicy, retry_transient
from tests.support.clock import FakeClock
from tests.support.waiting import wait_until

FAIL_MAX = 3
RESET = 10.0


class DownError(ConnectionError):
    """The dependency did not answer (a counted failure)."""


class RefusedError(ValueError):
    """The dependency answered with an error of the caller's making (not counted)."""


class PoolEmptyError(ConnectionError):
    """No local connection was free (a ConnectionError, but not the dependency's fault)."""


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def changes() -> list[tuple[str, str]]:
    return []


@pytest.fixture
def breaker(clock: FakeClock, changes: list[tuple[str, str]]) -> Breaker:
    return Breaker(
        "dep",
        fail_max=FAIL_MAX,
        reset_timeout=RESET,
        counts=(ConnectionError, TimeoutError),
        clock=clock,
        on_change=lambda name, state: changes.append((name, state)),
    )


async def fail_through(breaker: Breaker, error: BaseException) -> None:
    """One guarded call that raises ``error``; the error itself must come out unchanged."""
    with pytest.raises(type(error)) as raised:
        async with breaker.guard():
            raise error
    assert raised.value is error


async def trip(breaker: Breaker) -> None:
    for _ in range(FAIL_MAX):
        await fail_through(breaker, DownError())
    assert breaker.state == "open"


async def test_a_new_breaker_is_closed_and_runs_the_block(breaker: Breaker) -> None:
    ran = []
    async with breaker.guard():
        ran.append(True)
    assert ran == [True]
    assert breaker.state == "closed"
    assert not breaker.is_open


async def test_it_opens_after_fail_max_counted_failures(
    breaker: Breaker, changes: list[tuple[str, str]]
) -> None:
    for _ in range(FAIL_MAX - 1):
        await fail_through(breaker, DownError())
    assert breaker.state == "closed"
    # The failure that trips it still reaches the caller as itself, not as a breaker error.
    await fail_through(breaker, TimeoutError("slow"))
    assert breaker.state == "open"
    assert breaker.is_open
    assert changes == [("dep", "open")]


async def test_exceptions_it_does_not_count_never_open_it(breaker: Breaker) -> None:
    for _ in range(FAIL_MAX * 3):
        await fail_through(breaker, RefusedError("bad input"))
    assert breaker.state == "closed"


async def test_an_exception_it_does_not_count_does_not_reset_the_count_either(
    breaker: Breaker,
) -> None:
    """An error of the caller's making says nothing about the dependency's health: failures
    before and after it add up."""
    for _ in range(FAIL_MAX - 1):
        await fail_through(breaker, DownError())
    await fail_through(breaker, RefusedError("bad input"))
    await fail_through(breaker, DownError())
    assert breaker.state == "open"


async def test_a_cancelled_call_neither_counts_nor_resets_the_count(breaker: Breaker) -> None:
    """A call cancelled from outside (its caller went away) never heard from the dependency."""
    for _ in range(FAIL_MAX - 1):
        await fail_through(breaker, DownError())
    entered = asyncio.Event()

    async def call() -> None:
        async with breaker.guard():
            entered.set()
            await asyncio.Event().wait()

    task = asyncio.create_task(call())
    await entered.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert breaker.state == "closed"
    await fail_through(breaker, DownError())
    assert breaker.state == "open"


async def test_ignored_exceptions_neither_count_nor_reset_the_count(clock: FakeClock) -> None:
    """Running out of local pool connections says nothing about the server."""
    breaker = Breaker(
        "dep",
        fail_max=FAIL_MAX,
        reset_timeout=RESET,
        counts=(ConnectionError,),
        ignores=(PoolEmptyError,),
        clock=clock,
    )
    for _ in range(FAIL_MAX * 3):
        await fail_through(breaker, PoolEmptyError())
    assert breaker.state == "closed"
    for _ in range(FAIL_MAX - 1):
        await fail_through(breaker, DownError())
    await fail_through(breaker, PoolEmptyError())
    await fail_through(breaker, DownError())
    assert breaker.state == "open"


async def test_a_success_resets_the_count(breaker: Breaker) -> None:
    for _ in range(FAIL_MAX - 1):
        await fail_through(breaker, DownError())
    async with breaker.guard():
        pass
    for _ in range(FAIL_MAX - 1):
        await fail_through(breaker, DownError())
    assert breaker.state == "closed"


async def test_while_open_it_refuses_without_running_the_block(
    breaker: Breaker, clock: FakeClock
) -> None:
    await trip(breaker)
    clock.advance(4.0)
    ran = []
    with pytest.raises(BreakerOpenError) as raised:
        async with breaker.guard():
            ran.append(True)
    assert ran == []
    assert raised.value.name == "dep"
    assert raised.value.retry_after == pytest.approx(RESET - 4.0)
    # Just before the timeout it is still open.
    clock.advance(RESET - 4.0 - 0.001)
    assert breaker.is_open
    with pytest.raises(BreakerOpenError):
        async with breaker.guard():
            ran.append(True)
    assert ran == []


async def test_after_the_reset_timeout_the_next_call_is_a_half_open_trial(
    breaker: Breaker, clock: FakeClock, changes: list[tuple[str, str]]
) -> None:
    await trip(breaker)
    clock.advance(RESET)
    assert not breaker.is_open
    states_inside = []
    async with breaker.guard():
        states_inside.append(breaker.state)
    assert states_inside == ["half-open"]
    assert breaker.state == "closed"
    assert changes == [("dep", "open"), ("dep", "half-open"), ("dep", "closed")]


async def test_half_open_lets_exactly_one_concurrent_trial_through(
    breaker: Breaker, clock: FakeClock
) -> None:
    await trip(breaker)
    clock.advance(RESET)
    release = asyncio.Event()
    ran = 0

    async def call() -> str:
        nonlocal ran
        try:
            async with breaker.guard():
                ran += 1
                await release.wait()
        except BreakerOpenError:
            return "refused"
        return "ran"

    tasks = [asyncio.create_task(call()) for _ in range(10)]

    async def nine_settled() -> bool:
        return sum(task.done() for task in tasks) == 9

    # The nine callers that find the probe taken are refused at once, while the trial waits.
    await wait_until(nine_settled, seconds=5, message="the refused callers did not return")
    assert ran == 1
    assert breaker.state == "half-open"
    release.set()
    results = await asyncio.gather(*tasks)
    assert sorted(results) == ["ran"] + ["refused"] * 9
    assert ran == 1
    assert breaker.state == "closed"
    async with breaker.guard():
        pass


async def test_a_failed_trial_reopens_it_for_another_full_timeout(
    breaker: Breaker, clock: FakeClock, changes: list[tuple[str, str]]
) -> None:
    await trip(breaker)
    clock.advance(RESET + 3.0)
    await fail_through(breaker, DownError())
    assert breaker.state == "open"
    assert breaker.is_open
    with pytest.raises(BreakerOpenError) as raised:
        async with breaker.guard():
            pass
    # The open period restarts at the failed trial, on the breaker's clock.
    assert raised.value.retry_after == pytest.approx(RESET)
    clock.advance(RESET - 0.5)
    assert breaker.is_open
    clock.advance(0.5)
    async with breaker.guard():
        pass
    assert breaker.state == "closed"
    assert [state for _, state in changes] == ["open", "half-open", "open", "half-open", "closed"]


async def test_a_cancelled_trial_proves_nothing_and_does_not_close_it(
    breaker: Breaker, clock: FakeClock
) -> None:
    """A trial cancelled from outside (a deadline, a shutdown) never heard from the
    dependency: the breaker must not close on it."""
    await trip(breaker)
    clock.advance(RESET)
    entered = asyncio.Event()

    async def trial() -> None:
        async with breaker.guard():
            entered.set()
            await asyncio.Event().wait()

    task = asyncio.create_task(trial())
    await entered.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert breaker.state == "open"
    with pytest.raises(BreakerOpenError):
        async with breaker.guard():
            pass


async def test_after_closing_again_it_needs_fail_max_new_failures(
    breaker: Breaker, clock: FakeClock
) -> None:
    await trip(breaker)
    clock.advance(RESET)
    async with breaker.guard():
        pass
    for _ in range(FAIL_MAX - 1):
        await fail_through(breaker, DownError())
    assert breaker.state == "closed"
    await fail_through(breaker, DownError())
    assert breaker.state == "open"


async def test_a_late_failure_of_a_call_started_before_the_breaker_closed_again_is_ignored(
    breaker: Breaker, clock: FakeClock
) -> None:
    """A call that began before an outage fails long after the breaker has opened, probed and
    closed again: its failure belongs to the period it started in, not to the new one."""
    release = asyncio.Event()

    async def slow_call() -> None:
        async with breaker.guard():
            await release.wait()
            raise DownError("late")

    slow = asyncio.create_task(slow_call())
    await asyncio.sleep(0)
    await trip(breaker)
    clock.advance(RESET)
    async with breaker.guard():
        pass
    assert breaker.state == "closed"
    release.set()
    with pytest.raises(DownError):
        await slow
    for _ in range(FAIL_MAX - 1):
        await fail_through(breaker, DownError())
    assert breaker.state == "closed", "a failure from the previous period was counted"


async def test_a_late_success_does_not_close_a_half_open_breaker_during_its_trial(
    breaker: Breaker, clock: FakeClock
) -> None:
    """Only the trial decides: a call from before the outage that succeeds while the trial is
    still in flight proves nothing about now."""
    release_old = asyncio.Event()
    release_trial = asyncio.Event()
    in_trial = asyncio.Event()

    async def old_call() -> None:
        async with breaker.guard():
            await release_old.wait()

    async def trial() -> None:
        async with breaker.guard():
            in_trial.set()
            await release_trial.wait()
            raise DownError("still down")

    old = asyncio.create_task(old_call())
    await asyncio.sleep(0)
    await trip(breaker)
    clock.advance(RESET)
    probe = asyncio.create_task(trial())
    await in_trial.wait()
    release_old.set()
    await old
    assert breaker.state == "half-open"
    release_trial.set()
    with pytest.raises(DownError):
        await probe
    assert breaker.state == "open"


async def test_a_trial_ending_in_an_exception_it_does_not_count_leaves_the_next_call_to_probe(
    breaker: Breaker, clock: FakeClock
) -> None:
    await trip(breaker)
    clock.advance(RESET)
    await fail_through(breaker, RefusedError("bad input"))
    assert breaker.state == "half-open"
    assert not breaker.is_open
    async with breaker.guard():
        pass
    assert breaker.state == "closed"


QUICK = RetryPolicy(attempts=4, initial_delay=0.001, max_delay=0.005, retry_on=(ConnectionError,))


class Flaky:
    """An operation that fails with the given errors, in order, then returns ``"ok"``."""

    def __init__(self, *errors: BaseException) -> None:
        self.errors = list(errors)
        self.calls = 0

    async def __call__(self) -> str:
        self.calls += 1
        if self.errors:
            raise self.errors.pop(0)
        return "ok"


async def test_retry_transient_retries_whitelisted_errors_and_logs_each_retry() -> None:
    operation = Flaky(ConnectionError("a"), DownError("b"))
    with capture_logs() as logs:
        assert await retry_transient(operation, policy=QUICK, log_name="dep.get") == "ok"
    assert operation.calls == 3
    retries = [entry for entry in logs if entry["event"] == "retrying"]
    assert [entry["attempt"] for entry in retries] == [1, 2]
    assert all(entry["operation"] == "dep.get" for entry in retries)


async def test_retry_transient_does_not_retry_other_errors() -> None:
    operation = Flaky(ValueError("bug"))
    with pytest.raises(ValueError, match="bug"):
        await retry_transient(operation, policy=QUICK, log_name="dep.get")
    assert operation.calls == 1


async def test_retry_transient_stops_after_its_attempts_with_the_last_error() -> None:
    errors = [ConnectionError(f"try {n}") for n in range(1, 10)]
    operation = Flaky(*errors)
    with pytest.raises(ConnectionError) as raised:
        await retry_transient(operation, policy=QUICK, log_name="dep.get")
    assert operation.calls == QUICK.attempts
    assert raised.value is errors[QUICK.attempts - 1]


async def test_a_single_attempt_policy_raises_its_one_failure_without_a_retry() -> None:
    error = ConnectionError("once")
    operation = Flaky(error)
    policy = RetryPolicy(attempts=1, initial_delay=0.01, max_delay=0.01, retry_on=(OSError,))
    with capture_logs() as logs, pytest.raises(ConnectionError) as raised:
        await retry_transient(operation, policy=policy, log_name="dep.get")
    assert raised.value is error
    assert operation.calls == 1
    assert not [entry for entry in logs if entry["event"] == "retrying"]


async def test_retry_transient_does_not_retry_cancellation() -> None:
    operation = Flaky(asyncio.CancelledError())
    with pytest.raises(asyncio.CancelledError):
        await retry_transient(operation, policy=QUICK, log_name="dep.get")
    assert operation.calls == 1


async def test_a_deadline_around_retry_transient_is_kept() -> None:
    """A retry loop must not swallow the cancellation an outer deadline sends (tenacity #529)."""
    calls = 0

    async def hangs() -> None:
        nonlocal calls
        calls += 1
        await asyncio.Event().wait()

    loop = asyncio.get_running_loop()
    started = loop.time()
    policy = RetryPolicy(attempts=5, initial_delay=0.2, max_delay=0.2, retry_on=(Exception,))
    with pytest.raises(TimeoutError):
        async with asyncio.timeout(0.05):
            await retry_transient(hangs, policy=policy, log_name="dep.get")
    assert calls == 1
    assert loop.time() - started < 0.5
