"""``herald dlq replay --all`` and ``--rate``, and the audit they and ``purge`` write: every
batch recorded before any of its messages is moved or deleted, every message id in it (not only
event ids), and completed afterwards; a replay killed midway leaves no moved message unaudited."""

from __future__ import annotations

import asyncio
import os
import signal
import time
import uuid

import asyncpg

from tests.integration.events.conftest import (
    ACTOR,
    cli_env,
    effects,
    post_created,
    wait_for_effects,
)
from tests.support.broker import Broker
from tests.support.cli import run_herald
from tests.support.processes import BIN
from tests.support.services import Processes
from tests.support.waiting import wait_until


async def audit_rows(pool: asyncpg.Pool, queue: str) -> list[asyncpg.Record]:
    return list(
        await pool.fetch(
            "SELECT action, actor, status, message_ids, event_ids, completed_at, error "
            "FROM dead_letter_audit WHERE queue = $1 ORDER BY id",
            queue,
        )
    )


async def dead_letter(
    db_pool: asyncpg.Pool, broker: Broker, processes: Processes, name: str, count: int
) -> list[uuid.UUID]:
    """``count`` events in ``name``'s dead-letter queue (its handler fails until fixed)."""
    queues = broker.queues(name)
    await processes.start_consumer(name, behaviour="fail-until-fixed")
    events = [post_created() for _ in range(count)]
    await broker.publish(events)
    await broker.wait_depth(queues.dead_letter, messages=count)
    await db_pool.execute("INSERT INTO test_fixed (consumer) VALUES ($1)", name)
    return [e.id for e in events]


async def test_replay_all_sends_back_every_dead_letter_and_audits_every_id(
    db_pool: asyncpg.Pool, broker: Broker, processes: Processes, consumer_name: str
) -> None:
    queues = broker.queues(consumer_name)
    ids = await dead_letter(db_pool, broker, processes, consumer_name, 3)
    # A message whose id is not an event id (undecodable: it is dead-lettered again).
    await broker.publish_raw(
        b"not an envelope", message_id="not-a-uuid", routing_key="post.created"
    )
    await broker.wait_depth(queues.dead_letter, messages=4)

    env = cli_env(processes)
    code, out, err = await run_herald(["dlq", "replay", consumer_name, "--all"], env)
    assert code == 0, err
    assert f"replayed 4 event(s) to {queues.main}" in out
    await wait_for_effects(db_pool, consumer_name, ids)
    # Back where it was, and not replayed a second time by the same command.
    await broker.wait_depth(queues.dead_letter, messages=1)
    assert await effects(db_pool, consumer_name, ids) == dict.fromkeys(ids, 1)

    [row] = await audit_rows(db_pool, queues.dead_letter)
    assert (row["action"], row["actor"], row["status"]) == ("replay", ACTOR, "completed")
    assert sorted(row["message_ids"]) == sorted([*map(str, ids), "not-a-uuid"])
    assert sorted(row["event_ids"]) == sorted(ids)
    assert row["completed_at"] is not None

    code, out, err = await run_herald(["dlq", "purge", consumer_name, "--yes"], env)
    assert code == 0, err
    await broker.wait_depth(queues.dead_letter, messages=0)
    purge = (await audit_rows(db_pool, queues.dead_letter))[-1]
    assert (purge["action"], purge["status"]) == ("purge", "completed")
    assert (purge["message_ids"], purge["event_ids"]) == (["not-a-uuid"], [])


async def test_replay_at_a_rate_goes_in_audited_batches_no_faster_than_the_rate(
    db_pool: asyncpg.Pool, broker: Broker, processes: Processes, consumer_name: str
) -> None:
    queues = broker.queues(consumer_name)
    ids = await dead_letter(db_pool, broker, processes, consumer_name, 4)
    rate = 4.0
    started = time.monotonic()
    code, out, err = await run_herald(
        ["dlq", "replay", consumer_name, "--all", "--rate", str(rate)], cli_env(processes)
    )
    took = time.monotonic() - started
    assert code == 0, err
    assert f"replayed 4 event(s) to {queues.main}" in out
    assert took >= (len(ids) - 1) / rate
    await wait_for_effects(db_pool, consumer_name, ids)
    assert await effects(db_pool, consumer_name, ids) == dict.fromkeys(ids, 1)
    # About a second's worth of messages per batch: one audited batch of four.
    rows = await audit_rows(db_pool, queues.dead_letter)
    assert [(r["status"], len(r["message_ids"])) for r in rows] == [("completed", 4)]


async def test_a_replay_killed_midway_leaves_no_moved_message_unaudited(
    db_pool: asyncpg.Pool, broker: Broker, processes: Processes, consumer_name: str
) -> None:
    queues = broker.queues(consumer_name)
    ids = await dead_letter(db_pool, broker, processes, consumer_name, 3)
    replay = await asyncio.create_subprocess_exec(
        str(BIN / "herald"),
        *["dlq", "replay", consumer_name, "--all", "--rate", "1"],
        env=cli_env(processes),
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        # The first event is handled again: it was moved. The command is killed mid-way.
        async def one_handled() -> bool:
            return bool(await effects(db_pool, consumer_name, ids))

        await wait_until(one_handled, seconds=20, message="nothing was replayed")
    finally:
        if replay.returncode is None:
            os.killpg(replay.pid, signal.SIGKILL)
        await replay.wait()

    handled = set(await effects(db_pool, consumer_name, ids))
    assert len(handled) < len(ids), "the command finished before it was killed"
    audited = {
        message_id
        for row in await audit_rows(db_pool, queues.dead_letter)
        for message_id in row["message_ids"]
    }
    moved = {str(i) for i in handled}
    assert moved <= audited, f"moved but not audited: {moved - audited}"
    # What was not moved is back in the dead-letter queue; a message killed between its
    # publish and its ack is in both (replaying it again is harmless).
    left = len(ids) - len(handled)

    async def returned() -> bool:
        return await broker.dead_letters(queues) in (left, left + 1)

    await wait_until(returned, seconds=20, message="the unsettled dead letters did not return")
