"""Dead letters: why a message failed (headers), and the real ``herald dlq`` commands to list,
replay (handled exactly once afterwards, audited) and purge them; undecodable messages."""

from __future__ import annotations

import json
import uuid

import asyncpg
import pytest
from aio_pika.abc import AbstractIncomingMessage

from herald_shared.messaging.headers import (
    ATTEMPTS,
    ERROR_CLASS,
    ERROR_MESSAGE,
    ORIGINAL_QUEUE,
    REASON,
)
from tests.integration.events.conftest import (
    ACTOR,
    cli_env,
    effects,
    post_created,
    wait_for_effects,
)
from tests.support.broker import Broker
from tests.support.cli import run_herald
from tests.support.services import Processes


def by_id(messages: list[AbstractIncomingMessage]) -> dict[str, AbstractIncomingMessage]:
    return {m.message_id or "": m for m in messages}


async def test_dead_letters_are_listed_replayed_once_and_purged_with_an_audit(
    db_pool: asyncpg.Pool, broker: Broker, processes: Processes, consumer_name: str
) -> None:
    queues = broker.queues(consumer_name)
    await processes.start_consumer(consumer_name, behaviour="fail-until-fixed")
    replayed, purged = post_created(), post_created()
    await broker.publish([replayed, purged])
    await broker.wait_depth(queues.dead_letter, messages=2)

    letters = by_id(await broker.peek(queues.dead_letter))
    assert set(letters) == {str(replayed.id), str(purged.id)}
    headers = letters[str(replayed.id)].headers
    assert headers[REASON] == "permanent error"
    assert headers[ERROR_CLASS] == "PermanentError"
    assert headers[ERROR_MESSAGE] == "this handler always fails"
    assert headers[ATTEMPTS] == 1
    assert headers[ORIGINAL_QUEUE] == queues.main
    assert letters[str(replayed.id)].type == "post.created"
    assert json.loads(letters[str(replayed.id)].body)["id"] == str(replayed.id)

    env = cli_env(processes)
    code, out, err = await run_herald(["dlq", "list", consumer_name], env)
    assert code == 0, err
    assert f"{queues.dead_letter}: 2 dead letter(s)" in out
    assert str(replayed.id) in out
    assert str(purged.id) in out
    assert "permanent error: PermanentError: this handler always fails" in out
    await broker.wait_depth(queues.dead_letter, messages=2)  # listing leaves them in place

    await db_pool.execute("INSERT INTO test_fixed (consumer) VALUES ($1)", consumer_name)
    code, out, err = await run_herald(
        ["dlq", "replay", consumer_name, "--id", str(replayed.id)], env
    )
    assert code == 0, err
    assert f"replayed 1 event(s) to {queues.main}" in out
    await wait_for_effects(db_pool, consumer_name, [replayed.id])
    await broker.wait_depth(queues.main, messages=0)
    await broker.wait_depth(queues.dead_letter, messages=1)
    [left] = await broker.peek(queues.dead_letter)
    assert left.message_id == str(purged.id)

    code, out, err = await run_herald(["dlq", "purge", consumer_name, "--yes"], env)
    assert code == 0, err
    assert f"purged 1 dead letter(s) from {queues.dead_letter}" in out
    await broker.wait_depth(queues.dead_letter, messages=0)

    audit = await db_pool.fetch(
        "SELECT action, actor, event_ids FROM dead_letter_audit WHERE queue = $1 ORDER BY id",
        queues.dead_letter,
    )
    assert [(r["action"], r["actor"], r["event_ids"]) for r in audit] == [
        ("replay", ACTOR, [replayed.id]),
        ("purge", ACTOR, [purged.id]),
    ]
    handled = await effects(db_pool, consumer_name, [replayed.id, purged.id])
    assert handled == {replayed.id: 1}


async def test_replaying_an_unknown_id_fails_and_moves_nothing(
    broker: Broker, processes: Processes, consumer_name: str
) -> None:
    queues = broker.queues(consumer_name)
    await processes.start_consumer(consumer_name, behaviour="fail-permanent")
    envelope = post_created()
    await broker.publish([envelope])
    await broker.wait_depth(queues.dead_letter, messages=1)

    missing = str(uuid.uuid4())
    code, _, err = await run_herald(
        ["dlq", "replay", consumer_name, "--id", missing], cli_env(processes)
    )
    assert code == 1
    assert missing in err
    await broker.wait_depth(queues.dead_letter, messages=1)


async def test_a_transient_failure_that_never_ends_is_dead_lettered_after_the_last_step(
    db_pool: asyncpg.Pool, broker: Broker, processes: Processes, consumer_name: str
) -> None:
    queues = broker.queues(consumer_name)
    steps = len(queues.retry_delays)
    await processes.start_consumer(
        consumer_name, behaviour="fail-transient:1000", in_process_attempts=1
    )
    envelope = post_created()
    await broker.publish([envelope])
    await broker.wait_depth(queues.dead_letter, messages=1)

    [letter] = await broker.peek(queues.dead_letter)
    assert letter.message_id == str(envelope.id)
    assert letter.headers[REASON] == "retries exhausted"
    assert letter.headers[ERROR_CLASS] == "TransientError"
    assert letter.headers[ATTEMPTS] == steps + 1
    # The broker's own bookkeeping from the trips through the retry queues is not carried.
    assert not [name for name in letter.headers if name.startswith("x-death")], letter.headers
    tries = await db_pool.fetch(
        "SELECT attempt FROM test_attempts WHERE consumer = $1 AND event_id = $2 ORDER BY at",
        consumer_name,
        envelope.id,
    )
    assert [t["attempt"] for t in tries] == list(range(1, steps + 2))
    assert await effects(db_pool, consumer_name, [envelope.id]) == {}


@pytest.mark.parametrize(
    "body",
    [b"this is not json {", b"\xff\xfe\x00 not utf-8", b'{"json": "but not an envelope"}'],
    ids=["not-json", "not-utf8", "not-an-envelope"],
)
async def test_an_undecodable_message_is_dead_lettered_and_later_events_still_flow(
    body: bytes, db_pool: asyncpg.Pool, broker: Broker, processes: Processes, consumer_name: str
) -> None:
    queues = broker.queues(consumer_name)
    await processes.start_consumer(consumer_name)
    bad_id = str(uuid.uuid4())
    await broker.publish_raw(body, message_id=bad_id, routing_key="post.created")
    await broker.wait_depth(queues.dead_letter, messages=1)

    [letter] = await broker.peek(queues.dead_letter)
    assert letter.message_id == bad_id
    assert letter.body == body
    assert letter.headers[REASON] == "undecodable message"
    assert letter.headers[ERROR_CLASS] == "ValidationError"
    assert letter.headers[ORIGINAL_QUEUE] == queues.main

    good = post_created()
    await broker.publish([good])
    await wait_for_effects(db_pool, consumer_name, [good.id])
    assert await effects(db_pool, consumer_name, [good.id]) == {good.id: 1}
    await broker.wait_depth(queues.dead_letter, messages=1)
