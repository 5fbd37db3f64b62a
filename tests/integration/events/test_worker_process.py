"""The real ``herald-worker`` command consumes its queue and stops cleanly on SIGTERM, and the
real ``herald status`` command shows the namespace's queues and the outbox backlog."""

from __future__ import annotations

import contextlib
import os
import re
from datetime import timedelta

import aiormq
import asyncpg

from herald_cli.consumers import KNOWN_CONSUMERS
from herald_shared.messaging.topology import consumer_queues
from herald_worker.jobs.cleanup import cleanup_jobs
from tests.integration.events.conftest import post_created
from tests.support.broker import Broker
from tests.support.cli import run_herald
from tests.support.processes import BIN
from tests.support.services import Processes
from tests.support.waiting import wait_until

CLEANUP_JOBS = [
    job.name
    for job in cleanup_jobs(
        every=timedelta(1),
        outbox_retention=timedelta(1),
        inbox_retention=timedelta(1),
        delivery_retention=timedelta(1),
    )
]


def status_row(output: str, queue: str) -> list[str]:
    for line in output.splitlines():
        cells = line.split()
        if cells and cells[0] == queue:
            return cells
    raise AssertionError(f"no row for {queue} in:\n{output}")


async def test_the_worker_consumes_and_status_shows_it_until_sigterm(
    db_pool: asyncpg.Pool, broker: Broker, processes: Processes
) -> None:
    queue = consumer_queues(broker.namespace, "worker").main
    # Events earlier tests wrote through the API wait here for a worker: not this test's.
    with contextlib.suppress(aiormq.exceptions.ChannelNotFoundEntity):
        await broker.purge(queue)
    worker = processes.start(
        "herald-worker",
        [str(BIN / "herald-worker"), "--concurrency", "2", "--grace", "5"],
        {"HERALD_WORKER_JOBS_TICK_SECONDS": "0.2"},
    )
    await processes.wait_consuming(worker, queue)
    # An event of a post that does not exist: every handler finds nothing to do, and acks it.
    await broker.publish([post_created()])
    await broker.wait_depth(queue, messages=0)

    code, out, err = await run_herald(["status"], {**os.environ, **processes.base_env()})
    assert code == 0, err
    assert out.splitlines()[0].split() == ["QUEUE", "READY", "RETRYING", "DEAD", "CONSUMERS"]
    for consumer in KNOWN_CONSUMERS:
        status_row(out, consumer_queues(broker.namespace, consumer).main)
    assert status_row(out, queue)[-1] == "1"
    assert [line for line in out.splitlines() if line.startswith("outbox: ")], out

    # All its periodic clean-up jobs ran against the real schema (a failing job leaves no row).
    async def cleanup_recorded() -> bool:
        results = await db_pool.fetch(
            "SELECT last_result FROM periodic_jobs WHERE name LIKE 'cleanup.%'"
        )
        return len(results) == len(CLEANUP_JOBS)

    await wait_until(cleanup_recorded, seconds=10, message="the clean-up jobs never ran")
    results = await db_pool.fetch(
        "SELECT last_result FROM periodic_jobs WHERE name LIKE 'cleanup.%'"
    )
    # Each job says how many rows it removed or cleared ("deleted 0 …", "forgot 0 …").
    assert all(
        re.fullmatch(r"(deleted|forgot) \d+ [a-z -]+", row["last_result"]) for row in results
    ), results

    assert await worker.terminate() == 0, worker.log_tail()
    depth = await broker.depth(queue)
    assert depth is not None
    assert depth.consumers == 0
