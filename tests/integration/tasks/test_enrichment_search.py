"""Enrichment and full-text search, with a real worker process."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

import asyncpg
import httpx

from herald_shared.events import EventEnvelope, PostUpdated
from tests.conftest import MakeKey
from tests.support.broker import Broker
from tests.support.services import Processes
from tests.support.waiting import wait_until


async def start_pipeline(processes: Processes) -> None:
    """The worker, and the cache-invalidator that keeps cached reads of enriched posts true."""
    await processes.start_service("herald_worker", "worker", {})
    await processes.start_service("herald_cache_invalidator", "cache-invalidator", {})


async def _enriched(
    client: httpx.AsyncClient, headers: dict[str, str], post_id: str, version: int
) -> dict[str, Any]:
    """Wait until the post's enrichment describes ``version``; return the post."""
    latest: dict[str, Any] = {}

    async def done() -> bool:
        nonlocal latest
        latest = (await client.get(f"/v1/posts/{post_id}", headers=headers)).json()
        return bool(latest.get("enriched_version") == version)

    await wait_until(done, seconds=20, message=f"post {post_id} enriched at version {version}")
    return latest


async def test_new_post_is_enriched_and_found_and_an_update_re_enriches(
    client: httpx.AsyncClient, make_key: MakeKey, processes: Processes
) -> None:
    await start_pipeline(processes)
    key = await make_key()
    marker = f"zebra{uuid.uuid4().hex[:8]}"
    body = f"The {marker} crossed the savanna at dawn. " * 30
    created = await client.post(
        "/v1/posts",
        json={"title": "Savanna notes", "body": body, "tags": ["wildlife"], "status": "published"},
        headers=key.headers,
    )
    post_id = created.json()["id"]
    assert created.json()["enriched_at"] is None

    post = await _enriched(client, key.headers, post_id, 1)
    assert post["word_count"] == 7 * 30
    assert post["reading_time_seconds"] == 63  # 210 words at 200 a minute
    assert post["excerpt"].startswith(f"The {marker} crossed")
    assert len(post["excerpt"]) <= 201
    found = (await client.get("/v1/search", params={"q": marker}, headers=key.headers)).json()
    assert [item["id"] for item in found["items"]] == [post_id]

    other = f"okapi{uuid.uuid4().hex[:8]}"
    patched = await client.patch(
        f"/v1/posts/{post_id}", json={"body": f"Now about the {other} only."}, headers=key.headers
    )
    assert patched.status_code == 200
    post = await _enriched(client, key.headers, post_id, 2)
    assert post["word_count"] == 5
    assert (await client.get("/v1/search", params={"q": other}, headers=key.headers)).json()[
        "items"
    ][0]["id"] == post_id
    gone = await client.get("/v1/search", params={"q": marker}, headers=key.headers)
    assert gone.json()["items"] == []


async def _handled_by_worker(processes: Processes, event_ids: list[uuid.UUID]) -> bool:
    """Every one of ``event_ids`` logged as handled by the worker (its handlers keep no inbox
    record: the log line, written once their transaction committed, is what shows it)."""
    handled = {
        record.get("event_id")
        for service in processes.started
        if service.label == "worker"
        for record in service.log_lines()
        if record.get("event") == "event handled" and record.get("outcome") == "ok"
    }
    return {str(event_id) for event_id in event_ids} <= handled


async def _enrichments(pool: asyncpg.Pool, post_id: uuid.UUID) -> list[tuple[int, datetime]]:
    """The post's ``post.enriched`` events (version, when queued), oldest first."""
    rows = await pool.fetch(
        "SELECT aggregate_version, created_at FROM outbox "
        "WHERE aggregate_id = $1 AND event_type = 'post.enriched' ORDER BY id",
        post_id,
    )
    return [(r["aggregate_version"], r["created_at"]) for r in rows]


async def test_an_old_event_arriving_late_leaves_the_newer_enrichment(
    client: httpx.AsyncClient,
    make_key: MakeKey,
    processes: Processes,
    broker: Broker,
    db_pool: asyncpg.Pool,
) -> None:
    await start_pipeline(processes)
    key = await make_key()
    created = await client.post(
        "/v1/posts", json={"title": "First", "body": "one two three"}, headers=key.headers
    )
    post_id = uuid.UUID(created.json()["id"])
    await client.patch(f"/v1/posts/{post_id}", json={"body": "four five"}, headers=key.headers)
    await _enriched(client, key.headers, str(post_id), 2)
    # Both of the API's events handled: whatever they emit is in the outbox now.
    api_events: list[uuid.UUID] = [
        r["event_id"]
        for r in await db_pool.fetch(
            "SELECT event_id FROM outbox WHERE aggregate_id = $1 "
            "AND event_type IN ('post.created', 'post.updated')",
            post_id,
        )
    ]
    assert len(api_events) == 2
    await wait_until(
        lambda: _handled_by_worker(processes, api_events),
        seconds=20,
        message="the API's events were handled",
    )
    before = await db_pool.fetchrow(
        "SELECT word_count, enriched_version, enriched_at FROM posts WHERE id = $1", post_id
    )
    enrichments = await _enrichments(db_pool, post_id)
    # post.created enriched version 1 only if the worker took it before the update.
    assert [version for version, _ in enrichments][-1:] == [2]

    # Version 1's update event, redelivered long after version 2 was enriched.
    stale = EventEnvelope.wrap(
        PostUpdated(
            author_id=key.account_id,
            status="draft",
            title="First",
            tags=[],
            previous_status="draft",
        ),
        aggregate_id=post_id,
        aggregate_version=1,
    )
    await broker.publish([stale])
    await wait_until(
        lambda: _handled_by_worker(processes, [stale.id]),
        seconds=20,
        message="the stale event was handled",
    )

    # Re-enriching the current row would give the same numbers: what shows a stale event was
    # acted on is a second enrichment of version 2 (rewritten, and announced again).
    after = await db_pool.fetchrow(
        "SELECT word_count, enriched_version, enriched_at FROM posts WHERE id = $1", post_id
    )
    assert before is not None
    assert after is not None
    assert (after["word_count"], after["enriched_version"]) == (2, 2)
    assert await _enrichments(db_pool, post_id) == enrichments, "version 2 announced again"
    assert after["enriched_at"] == before["enriched_at"], "version 2 enriched again"


async def test_search_ranks_title_matches_first_and_pages_with_a_cursor(
    client: httpx.AsyncClient, make_key: MakeKey, processes: Processes
) -> None:
    await start_pipeline(processes)
    key = await make_key()
    word = f"quokka{uuid.uuid4().hex[:8]}"
    bodies: list[dict[str, Any]] = [
        {"title": f"All about the {word}", "body": "A small marsupial."},
        {"title": "Island fauna", "body": f"Among others, the {word}."},
        {"title": "Tagged", "body": f"Mentions {word} once.", "tags": ["misc"]},
    ]
    ids = []
    for body in bodies:
        response = await client.post(
            "/v1/posts", json=body | {"status": "published"}, headers=key.headers
        )
        ids.append(response.json()["id"])
    for post_id in ids:
        await _enriched(client, key.headers, post_id, 1)

    first = await client.get("/v1/search", params={"q": word, "limit": 2}, headers=key.headers)
    page = first.json()
    assert page["items"][0]["id"] == ids[0]  # the title match ranks first
    assert page["next_cursor"] is not None
    second = await client.get(
        "/v1/search",
        params={"q": word, "limit": 2, "cursor": page["next_cursor"]},
        headers=key.headers,
    )
    rest = second.json()
    seen = [item["id"] for item in page["items"] + rest["items"]]
    assert sorted(seen) == sorted(ids)
    assert rest["next_cursor"] is None
    # A cursor belongs to its query.
    other = await client.get(
        "/v1/search", params={"q": "else", "cursor": page["next_cursor"]}, headers=key.headers
    )
    assert other.status_code == 400


async def test_search_shows_own_drafts_but_not_other_peoples(
    client: httpx.AsyncClient, make_key: MakeKey, processes: Processes
) -> None:
    await start_pipeline(processes)
    author, other = await make_key(), await make_key()
    word = f"wombat{uuid.uuid4().hex[:8]}"
    draft = await client.post(
        "/v1/posts", json={"title": word, "body": "secret"}, headers=author.headers
    )
    await _enriched(client, author.headers, draft.json()["id"], 1)
    mine = await client.get("/v1/search", params={"q": word}, headers=author.headers)
    assert [i["id"] for i in mine.json()["items"]] == [draft.json()["id"]]
    theirs = await client.get("/v1/search", params={"q": word}, headers=other.headers)
    assert theirs.json()["items"] == []


async def test_bad_search_queries_are_400_never_500(
    client: httpx.AsyncClient, make_key: MakeKey
) -> None:
    key = await make_key()
    for params in ({}, {"q": ""}, {"q": "   "}, {"q": "x" * 257}, {"q": "a\x00b"}):
        response = await client.get("/v1/search", params=params, headers=key.headers)
        assert response.status_code == 400, (params, response.text)
        assert response.headers["content-type"] == "application/problem+json"
    # Operators and stray syntax are words to websearch_to_tsquery, not errors.
    for q in ('"unclosed', "a & | ! b", "-", "or or or", "(((", "the"):
        response = await client.get("/v1/search", params={"q": q}, headers=key.headers)
        assert response.status_code == 200, (q, response.text)
