"""Account stats kept by the worker from events, checked against a direct count."""

from __future__ import annotations

import asyncio
import random
from typing import Any

import asyncpg
import httpx

from herald_shared.events import EventEnvelope
from herald_worker.text import count_words
from tests.conftest import MakeKey
from tests.support.broker import Broker
from tests.support.services import Processes
from tests.support.waiting import wait_until


async def _direct_count(pool: asyncpg.Pool, account_id: object) -> dict[str, int]:
    rows = await pool.fetch("SELECT status, body FROM posts WHERE author_id = $1", account_id)
    return {
        "draft_posts": sum(1 for r in rows if r["status"] == "draft"),
        "published_posts": sum(1 for r in rows if r["status"] == "published"),
        "total_words": sum(count_words(r["body"]) for r in rows),
    }


async def test_stats_equal_a_direct_count_after_a_burst_with_redeliveries(
    client: httpx.AsyncClient,
    make_key: MakeKey,
    processes: Processes,
    broker: Broker,
    db_pool: asyncpg.Pool,
) -> None:
    await processes.start_service("herald_worker", "worker", {})
    key = await make_key()
    rng = random.Random(7)
    ids: list[str] = []

    async def create(i: int) -> None:
        words = " ".join(f"w{j}" for j in range(rng.randint(0, 40)))
        status = rng.choice(["draft", "published"])
        response = await client.post(
            "/v1/posts",
            json={"title": f"p{i}", "body": words, "status": status},
            headers=key.headers,
        )
        ids.append(response.json()["id"])

    await asyncio.gather(*(create(i) for i in range(40)))
    for post_id in ids[:15]:  # some change status and length, some go away
        await client.patch(
            f"/v1/posts/{post_id}",
            json={"status": "published", "body": "now exactly five words"},
            headers=key.headers,
        )
    for post_id in ids[15:22]:
        await client.delete(f"/v1/posts/{post_id}", headers=key.headers)

    # Force redeliveries: publish every event of this account's posts once more.
    rows = await db_pool.fetch(
        "SELECT payload::text AS payload FROM outbox WHERE payload->'data'->>'author_id' = $1",
        str(key.account_id),
    )
    await broker.publish([EventEnvelope.model_validate_json(r["payload"]) for r in rows])

    expected = await _direct_count(db_pool, key.account_id)
    latest: dict[str, Any] = {}

    async def settled() -> bool:
        nonlocal latest
        latest = (await client.get("/v1/stats", headers=key.headers)).json()
        return all(latest.get(k) == v for k, v in expected.items())

    await wait_until(settled, seconds=30, message=f"stats {latest} never matched {expected}")
    await broker.wait_depth(broker.queues("worker").main, messages=0)
    assert {k: latest[k] for k in expected} == await _direct_count(db_pool, key.account_id)
