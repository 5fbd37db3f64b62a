"""The real worker's handlers skip the inbox, being idempotent by construction: the same event
delivered three times (the relay's publish, then the same envelope published twice more) is
handled three times and applied once — one enrichment announced, the account's counters
counted once, one webhook delivery — and leaves no inbox row."""

from __future__ import annotations

import uuid

import asyncpg
import httpx

from herald_shared.events import EventEnvelope
from tests.conftest import MakeKey
from tests.integration.webhooks.conftest import FAST_WORKER_ENV, subscribe
from tests.support.broker import Broker
from tests.support.http import create_post
from tests.support.processes import ServiceProcess
from tests.support.services import Processes
from tests.support.waiting import wait_until
from tests.support.webhook_receiver import always


def handled(worker: ServiceProcess, event_id: uuid.UUID) -> int:
    """How often the worker logged the event as handled (its transaction committed)."""
    return sum(
        1
        for record in worker.log_lines()
        if record.get("event") == "event handled"
        and record.get("outcome") == "ok"
        and record.get("event_id") == str(event_id)
    )


async def test_a_redelivered_event_is_handled_again_and_applied_once(
    client: httpx.AsyncClient,
    make_key: MakeKey,
    processes: Processes,
    receivers,
    broker: Broker,
    db_pool: asyncpg.Pool,
) -> None:
    # At INFO: each handled event is logged, which is how a handling without an inbox row shows.
    env = {**FAST_WORKER_ENV, "HERALD_LOG_LEVEL": "INFO"}
    worker = await processes.start_service("herald_worker", "worker", env)
    key = await make_key()
    receiver = await receivers(always(200))
    webhook = await subscribe(client, key, receiver, ["post.created"])
    post = await create_post(client, key, title="Twice told", body="one two three four")
    post_id = uuid.UUID(post["id"])
    row = await db_pool.fetchrow(
        "SELECT event_id, payload::text AS payload FROM outbox "
        "WHERE aggregate_id = $1 AND event_type = 'post.created'",
        post_id,
    )
    assert row is not None
    event_id = row["event_id"]

    async def first_handled() -> bool:
        return handled(worker, event_id) >= 1

    await wait_until(first_handled, seconds=20, message="the worker never handled the event")
    envelope = EventEnvelope.model_validate_json(row["payload"])
    await broker.publish([envelope])
    await broker.publish([envelope])

    async def all_handled() -> bool:
        return handled(worker, event_id) >= 3

    await wait_until(all_handled, seconds=20, message="the redeliveries were not handled")

    enriched = await db_pool.fetchval(
        "SELECT count(*) FROM outbox WHERE aggregate_id = $1 AND event_type = 'post.enriched'",
        post_id,
    )
    assert enriched == 1, "the post's version was enriched (and announced) more than once"
    stats = await db_pool.fetchrow(
        "SELECT draft_posts, published_posts, total_words FROM account_stats WHERE account_id = $1",
        key.account_id,
    )
    assert stats is not None
    assert (stats["draft_posts"] + stats["published_posts"], stats["total_words"]) == (1, 4)
    delivered = await db_pool.fetchval(
        "SELECT count(*) FROM webhook_deliveries WHERE webhook_id = $1 AND event_id = $2",
        uuid.UUID(webhook["id"]),
        event_id,
    )
    assert delivered == 1
    inbox_rows = await db_pool.fetchval(
        "SELECT count(*) FROM processed_events WHERE consumer = 'worker' AND event_id = $1",
        event_id,
    )
    assert inbox_rows == 0, "the worker's handlers were meant to skip the inbox"
