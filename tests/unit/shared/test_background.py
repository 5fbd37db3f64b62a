"""One lifecycle for background work: a job gets its stop signal and a grace period, is
cancelled after it, and a failed job is not hidden."""

from __future__ import annotations

import asyncio

import pytest

from herald_shared.background import finish, running

GRACE = 0.05


async def _forever() -> None:
    await asyncio.Event().wait()


async def test_tasks_that_end_within_the_grace_are_not_cancelled() -> None:
    release = asyncio.Event()

    async def until_released() -> str:
        await release.wait()
        return "done"

    task = asyncio.create_task(until_released())
    asyncio.get_running_loop().call_later(GRACE / 5, release.set)
    assert await finish([task], grace=10) == set()
    assert task.result() == "done"


async def test_tasks_still_running_after_the_grace_are_cancelled_and_returned() -> None:
    quick = asyncio.create_task(asyncio.sleep(0))
    stuck = asyncio.create_task(_forever())
    assert await finish([quick, stuck], grace=GRACE) == {stuck}
    assert stuck.cancelled()
    assert quick.done()
    assert not quick.cancelled()


async def test_a_task_that_ignores_cancellation_is_given_up_on_after_the_cancel_wait() -> None:
    unwound = asyncio.Event()

    async def stubborn() -> None:
        while True:
            try:
                await asyncio.Event().wait()
            except asyncio.CancelledError:
                if unwound.is_set():
                    raise
                unwound.set()  # swallows the first cancellation

    task = asyncio.create_task(stubborn())
    await asyncio.sleep(0)
    assert await finish([task], grace=GRACE, cancel_seconds=GRACE) == {task}
    assert unwound.is_set()
    assert not task.done()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


async def test_nothing_to_finish_returns_at_once() -> None:
    done = asyncio.create_task(asyncio.sleep(0))
    await done
    async with asyncio.timeout(1):
        assert await finish([done], grace=3600) == set()
        assert await finish([], grace=3600) == set()


async def test_a_running_job_gets_its_stop_signal_when_the_block_ends() -> None:
    seen: list[str] = []

    async def job(stop: asyncio.Event) -> None:
        seen.append("started")
        await stop.wait()
        seen.append("stopped")

    async with running(job, name="job", grace=10) as task:
        await asyncio.sleep(0)
        assert seen == ["started"]
        assert not task.done()
    assert seen == ["started", "stopped"]
    assert task.done()
    assert not task.cancelled()


async def test_a_job_that_ignores_stop_is_cancelled_after_its_grace() -> None:
    async def deaf(stop: asyncio.Event) -> None:
        await _forever()

    async with asyncio.timeout(5), running(deaf, name="deaf", grace=GRACE) as task:
        pass
    assert task.cancelled()


async def test_a_job_that_failed_raises_when_the_block_ends() -> None:
    async def broken(stop: asyncio.Event) -> None:
        raise RuntimeError("the job broke")

    with pytest.raises(RuntimeError, match="the job broke"):
        async with running(broken, name="broken", grace=10):
            await asyncio.sleep(0)
