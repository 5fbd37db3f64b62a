"""Redis going away and coming back, seen through a TCP proxy (the shared Redis is untouched).

The API degrades to PostgreSQL and keeps answering; its breaker opens after the configured
failures, is reported by /readyz, and closes again on its own through a half-open probe. The
cache-invalidator does not lose the invalidations it could not apply during the outage.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from dataclasses import replace
from typing import Any

import httpx
import pytest

from herald_api.settings import ServerSettings, Settings
from herald_shared.cache import decode_entry, revision
from herald_shared.settings import CacheSettings, RateLimitSettings, RedisSettings
from tests.conftest import ApiKey, MakeKey
from tests.support.apps import RunningApi, running_api
from tests.support.broker import Broker
from tests.support.faults import FaultProxy
from tests.support.http import assert_problem, create_published, version_of
from tests.support.metrics import sample_value, scrape
from tests.support.services import Processes
from tests.support.waiting import wait_until

FAILURES = 3
#: The invalidator's Redis breaker, as its metrics name it.
BREAKER = "herald-cache-invalidator.redis"


@pytest.fixture
async def redis_proxy() -> AsyncIterator[FaultProxy]:
    proxy = FaultProxy("127.0.0.1", 6379)
    await proxy.start()
    try:
        yield proxy
    finally:
        await proxy.stop()


def behind(
    proxy: FaultProxy, settings: Settings, redis_prefix: str, **rate_limit: object
) -> Settings:
    return replace(
        settings,
        # Keys stay verified, as in production: a key lookup also spends (and gives back) the
        # client IP's budget, two Redis calls more than the reads counted here make.
        server=ServerSettings(auth_cache_ttl_seconds=60),
        redis=RedisSettings(
            url=f"redis://127.0.0.1:{proxy.port}/0",
            key_prefix=redis_prefix,
            breaker_failures=FAILURES,
            breaker_reset_seconds=1,
        ),
        rate_limit=RateLimitSettings.model_validate(
            {
                "read_per_window": 1_000_000,
                "write_per_window": 1_000_000,
                "anonymous_per_window": 1_000_000,
            }
            | rate_limit
        ),
    )


async def breaker_state(http: httpx.AsyncClient) -> str:
    response = await http.get("/readyz")
    assert response.status_code == 200, response.text
    state: str = response.json()["dependencies"]["redis_breaker"]
    return state


async def read(api: RunningApi, key: ApiKey, url: str) -> httpx.Response:
    response = await api.http.get(url, headers=key.headers)
    assert response.status_code == 200, response.text
    return response


async def test_the_api_serves_from_postgres_while_redis_is_away_and_recovers_on_its_own(
    settings: Settings, redis_prefix: str, make_key: MakeKey, redis_proxy: FaultProxy
) -> None:
    key = await make_key()
    async with running_api(behind(redis_proxy, settings, redis_prefix)) as api:
        post = await create_published(api.http, key, title="Survivor")
        url = f"/v1/posts/{post['id']}"
        assert (await read(api, key, url)).headers["X-Cache"] == "miss"
        cached = await read(api, key, url)
        assert cached.headers["X-Cache"] == "hit"
        assert "RateLimit-Remaining" in cached.headers
        assert await breaker_state(api.http) == "closed"

        redis_proxy.cut()
        # Each read makes two Redis calls (rate limit + fill) until the breaker opens.
        states = []
        for _ in range(4):
            response = await read(api, key, url)
            assert response.headers["X-Cache"] == "miss"
            assert response.content == cached.content
            assert response.headers["ETag"] == cached.headers["ETag"]
            # The rate limit failed open: the limit is announced, nothing is counted.
            assert response.headers["RateLimit-Limit"] == "1000000"
            assert "RateLimit-Remaining" not in response.headers
            states.append(await breaker_state(api.http))
        assert states == ["closed", "open", "open", "open"]

        # Many readers at once, and every kind of write: no 5xx.
        burst = await asyncio.gather(*(api.http.get(url, headers=key.headers) for _ in range(20)))
        assert {r.status_code for r in burst} == {200}
        other = await create_published(api.http, key, title="Written during the outage")
        other_url = f"/v1/posts/{other['id']}"
        patched = await api.http.patch(other_url, json={"title": "Changed"}, headers=key.headers)
        assert patched.status_code == 200, patched.text
        changed = await read(api, key, other_url)
        assert (changed.json()["title"], changed.headers["ETag"]) == ("Changed", '"2"')
        listed = await api.http.get("/v1/posts", headers=key.headers)
        assert listed.status_code == 200
        gone = await create_published(api.http, key)
        deleted = await api.http.delete(f"/v1/posts/{gone['id']}", headers=key.headers)
        assert deleted.status_code == 204
        assert_problem(await api.http.get(f"/v1/posts/{gone['id']}", headers=key.headers), 404)
        assert await breaker_state(api.http) == "open"

        redis_proxy.restore()

        async def closed_again() -> bool:
            await read(api, key, url)  # traffic carries the half-open probe
            return await breaker_state(api.http) == "closed"

        await wait_until(closed_again, seconds=10, interval=0.1, message="the breaker stayed open")

        async def caching_again() -> bool:
            return (await read(api, key, other_url)).headers["X-Cache"] == "hit"

        await wait_until(caching_again, seconds=5, message="caching did not resume")
        back = await read(api, key, other_url)
        assert back.json()["title"] == "Changed"
        assert "RateLimit-Remaining" in back.headers


async def test_a_fail_closed_limiter_answers_503_while_redis_is_away(
    settings: Settings, redis_prefix: str, make_key: MakeKey, redis_proxy: FaultProxy
) -> None:
    key = await make_key()
    fail_closed = behind(redis_proxy, settings, redis_prefix, fail_closed=True)
    async with running_api(fail_closed) as api:
        post = await create_published(api.http, key)
        url = f"/v1/posts/{post['id']}"
        assert (await api.http.get(url, headers=key.headers)).status_code == 200

        redis_proxy.cut()
        for _ in range(FAILURES + 2):  # failing calls, then an open breaker: the same answer
            refused = await api.http.get(url, headers=key.headers)
            assert_problem(refused, 503)
            assert int(refused.headers["Retry-After"]) > 0
        written = await api.http.patch(url, json={"title": "No"}, headers=key.headers)
        assert_problem(written, 503)
        assert await breaker_state(api.http) == "open"

        redis_proxy.restore()

        async def served() -> bool:
            return (await api.http.get(url, headers=key.headers)).status_code == 200

        await wait_until(served, seconds=10, interval=0.1, message="requests stayed refused")
        assert await breaker_state(api.http) == "closed"
        unchanged = await api.http.get(url, headers=key.headers)
        assert unchanged.json()["title"] == post["title"]


async def test_the_invalidator_applies_what_it_missed_once_redis_is_back(
    settings: Settings,
    make_key: MakeKey,
    redis_proxy: FaultProxy,
    broker: Broker,
    processes: Processes,
) -> None:
    """The API (on the real Redis, ``invalidate_on_write=False``) caches five posts; the
    invalidator reaches Redis only through the proxy. While it is cut, every post is changed:
    the invalidator gets the events but cannot apply them, and the stale entries stay. Once
    Redis is reachable again the entries go within a deadline, the queues drain, and nothing
    was dead-lettered: no event was acknowledged without being applied."""
    api_settings = replace(settings, cache=CacheSettings(invalidate_on_write=False))
    queues = processes.invalidator_queues()
    async with (
        running_api(api_settings) as api,
        processes.invalidator(
            redis_url=f"redis://127.0.0.1:{redis_proxy.port}/0",
            env={
                "HERALD_REDIS_BREAKER_FAILURES": str(FAILURES),
                "HERALD_REDIS_BREAKER_RESET_SECONDS": "0.5",
                "HERALD_LOG_LEVEL": "INFO",  # the health endpoint's address is logged at INFO
            },
        ) as invalidator,
    ):
        health = await invalidator.health_url()

        async def breaker_gauge() -> float | None:
            return sample_value(await scrape(health), "herald_breaker_open", breaker=BREAKER)

        assert await breaker_gauge() == 0
        key = await make_key()
        ids = [uuid.UUID((await create_published(api.http, key))["id"]) for _ in range(5)]
        urls = [f"/v1/posts/{post_id}" for post_id in ids]
        await broker.wait_drained(queues)
        # Drained means nothing waits, not that the last events were applied: a creation's
        # invalidation landing after the entry is cached below would remove it before the cut.
        await wait_invalidated(api, ids, revision(1, enriched=False))
        for url in urls:
            await wait_cached(api, key, url, 1)
        dead_before = await broker.dead_letters(queues)

        redis_proxy.cut()
        for url in urls:
            response = await api.http.patch(url, json={"title": "v2"}, headers=key.headers)
            assert response.status_code == 200, response.text

        def opened() -> int:
            return sum(
                1
                for record in invalidator.log_lines()
                if record.get("event") == "breaker state changed" and record.get("new") == "open"
            )

        async def probes_failed() -> bool:
            invalidator.check_running()
            return opened() >= 3

        # The breaker tripped, and two half-open probes failed after it.
        await wait_until(probes_failed, seconds=20, message="the invalidator never tried Redis")
        assert await breaker_gauge() == 1  # open, or half-open on a probe: both count as open
        # The stale entries stay, read in Redis itself: a read through the API whose own Redis
        # call outran its socket timeout in this busy process would refill the entry at v2.
        cache = api.state.cache
        assert cache is not None
        for post_id in ids:
            raw = await cache.client.get(cache.keys.post(post_id))
            assert isinstance(raw, bytes)
            entry = decode_entry(raw)
            assert entry is not None
            assert entry.version == revision(1, enriched=False)
            invalidated = await cache.client.get(cache.keys.post_invalidated(post_id))
            assert int(invalidated or 0) == revision(1, enriched=False)

        redis_proxy.restore()

        async def all_fresh() -> bool:
            for url in urls:
                if version_of(await read(api, key, url)) != 2:
                    return False
            return True

        await wait_until(all_fresh, seconds=20, message="the stale entries were never removed")
        await wait_invalidated(api, ids, revision(2, enriched=False))

        # Applied is not yet settled: an invalidation whose reply came after the invalidator's
        # socket timeout (the proxy, in this busy process, can be that slow) ran in Redis but
        # failed for its caller, which reopened the breaker and deferred the event, to be applied
        # again by a later probe. Wait until the last outcome of every event handled is "ok".
        async def settled() -> bool:
            invalidator.check_running()
            return unsettled(invalidator.log_lines()) == set() and await breaker_gauge() == 0

        await wait_until(settled, seconds=20, message="the invalidator never settled its events")
        await broker.wait_drained(queues)
        assert await broker.dead_letters(queues) == dead_before, invalidator.log_tail()
        assert await invalidator.stop() == 0, invalidator.log_tail()
        # With the invalidator gone, nothing it held unacknowledged comes back either.
        assert await broker.waiting(queues) == 0


def unsettled(records: list[dict[str, Any]]) -> set[str]:
    """The events whose last handling, as the invalidator logged it, was not a success."""
    last: dict[str, str] = {}
    for record in records:
        if record.get("event") == "event handled":
            last[record["event_id"]] = record["outcome"]
    return {event_id for event_id, outcome in last.items() if outcome != "ok"}


async def wait_invalidated(api: RunningApi, post_ids: list[uuid.UUID], revision_: int) -> None:
    """Until the invalidation of ``revision_`` of each post is recorded in Redis."""
    cache = api.state.cache
    assert cache is not None

    async def applied() -> bool:
        for post_id in post_ids:
            recorded = await cache.client.get(cache.keys.post_invalidated(post_id))
            if int(recorded or 0) < revision_:
                return False
        return True

    await wait_until(applied, seconds=10, message="the invalidations were never applied")


async def wait_cached(api: RunningApi, key: ApiKey, url: str, version: int) -> None:
    async def cached() -> bool:
        response = await read(api, key, url)
        return response.headers["X-Cache"] == "hit" and version_of(response) == version

    await wait_until(cached, seconds=10, interval=0.01, message=f"{url} was never cached")
