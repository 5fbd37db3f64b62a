"""The real cache-invalidator process applies post events to the cache: how soon a committed
change becomes visible, and that no read starting after an invalidation returns older data.

The API is built with ``invalidate_on_write=False`` so that only the invalidator (fed by the
API's outbox relay through RabbitMQ) removes stale entries.
"""

from __future__ import annotations

import asyncio
import bisect
import random
import time
import uuid
from collections import Counter
from dataclasses import dataclass, replace
from typing import Any
from urllib.parse import urlsplit

import asyncpg
import redis.asyncio as redis

from herald_api.posts.reads import entry_of
from herald_api.posts.repository import fetch_post
from herald_api.settings import Settings
from herald_shared.cache import CacheKeys, decode_entry, revision
from herald_shared.cache import version_of as version_of_revision
from herald_shared.settings import CacheSettings, DatabaseSettings
from tests.conftest import MakeKey
from tests.support.apps import RunningApi, running_api
from tests.support.broker import Broker
from tests.support.cache import REDIS_URL
from tests.support.faults import FaultProxy
from tests.support.http import create_published, version_of
from tests.support.measurements import percentile, report
from tests.support.metrics import sample_value, scrape
from tests.support.network import with_port
from tests.support.processes import ServiceProcess
from tests.support.services import Processes
from tests.support.waiting import wait_until

PATCHES = 50
RACE_SECONDS = 4.0
#: The race runs at least RACE_SECONDS and until it has this much traffic to judge (a busy
#: machine makes it slower, not weaker), within RACE_DEADLINE.
MIN_WRITES = 50
MIN_READS = 300
RACE_DEADLINE = 60.0
REPLICA_LATENCY = 0.01


def invalidator_only(settings: Settings) -> Settings:
    return replace(settings, cache=CacheSettings(invalidate_on_write=False))


async def wait_cached(api: RunningApi, url: str, headers: dict[str, str], version: int) -> None:
    """Until a read of ``url`` is a cache hit of ``version``."""

    async def cached() -> bool:
        response = await api.http.get(url, headers=headers)
        assert response.status_code == 200, response.text
        return response.headers["X-Cache"] == "hit" and version_of(response) == version

    await wait_until(cached, seconds=10, interval=0.005, message=f"{url} was never cached")


async def test_a_committed_patch_becomes_visible_through_the_invalidator(
    settings: Settings, make_key: MakeKey, broker: Broker, processes: Processes
) -> None:
    """Lag = from the PATCH response (its commit) to the first GET returning the new version;
    the post was cached at the old version just before, so that GET had to wait for the
    invalidator to delete the entry (relay → RabbitMQ → invalidator → Redis).

    The invalidator's own lag metric is checked too: it counts every invalidation it logs, with
    the lag it logs, and no PATCH's lag is longer than the time from sending it to reading the
    metric (the invalidator may compute a lag a little after the GET already saw the deletion,
    so the moment the new version was seen is no bound)."""
    queues = processes.invalidator_queues()
    async with (
        running_api(invalidator_only(settings)) as api,
        # Its health endpoint's address, and each invalidation's lag, are logged at INFO.
        processes.invalidator(redis_url=REDIS_URL, env={"HERALD_LOG_LEVEL": "INFO"}) as invalidator,
    ):
        health = await invalidator.health_url()
        key = await make_key()
        posts = [(await create_published(api.http, key))["id"] for _ in range(5)]
        await broker.wait_drained(queues)
        lags: list[float] = []
        #: When each PATCH was sent, by (post id, version).
        sent_at: dict[tuple[str, int], float] = {}
        stale_right_after = 0
        for n in range(PATCHES):
            url = f"/v1/posts/{posts[n % len(posts)]}"
            before = await api.http.get(url, headers=key.headers)
            await wait_cached(api, url, key.headers, version_of(before))
            sent = time.monotonic()
            patched = await api.http.patch(url, json={"title": f"edit {n}"}, headers=key.headers)
            assert patched.status_code == 200, patched.text
            committed = time.monotonic()
            new_version = version_of(patched)
            assert new_version == version_of(before) + 1
            seen_at: float | None = None

            async def visible(url: str = url, new_version: int = new_version) -> bool:
                nonlocal seen_at, stale_right_after
                response = await api.http.get(url, headers=key.headers)
                assert response.status_code == 200, response.text
                if version_of(response) == new_version:
                    seen_at = time.monotonic()
                    return True
                stale_right_after += 1
                return False

            await wait_until(visible, seconds=5, interval=0.001, message="the patch never showed")
            assert seen_at is not None
            lags.append((seen_at - committed) * 1000)
            sent_at[(posts[n % len(posts)], new_version)] = sent
        invalidator.check_running()
        await broker.wait_drained(queues)
        logged = await wait_lag_metric_matches_log(invalidator, health)
        read_at = time.monotonic()

    assert len(lags) == PATCHES
    patch_lags = {
        (r["post_id"], r["version"]): r["lag_ms"]
        for r in logged
        if r["event_type"] == "post.updated" and r["post_id"] in posts
    }
    assert patch_lags.keys() == sent_at.keys()
    # Each event was made after its PATCH was sent, and its lag logged before the log was read.
    bounds = {k: (read_at - sent) * 1000 for k, sent in sent_at.items()}
    outside = {k: (lag, bounds[k]) for k, lag in patch_lags.items() if not 0 <= lag <= bounds[k]}
    assert not outside, (
        f"{len(outside)} (lag, send-to-read bound) in ms: {list(outside.items())[:3]}"
    )
    report(
        f"invalidation lag over {PATCHES} PATCHes (commit -> GET shows the new version): "
        f"p50 {percentile(lags, 0.5):.1f} ms, p95 {percentile(lags, 0.95):.1f} ms, "
        f"max {max(lags):.1f} ms, min {min(lags):.1f} ms; "
        f"{stale_right_after} stale reads seen while waiting"
    )
    # Without the invalidator the old entry would be served for the whole TTL (minutes).
    assert stale_right_after > 0


async def wait_lag_metric_matches_log(
    invalidator: ServiceProcess, health: str
) -> list[dict[str, Any]]:
    """Wait until ``herald_cache_invalidation_lag_seconds`` on the invalidator's /metrics has
    observed exactly the invalidations it logged, with the lags it logged; returns those log
    records. (The two can differ for a moment while one is being handled.)"""
    logged: list[dict[str, Any]] = []
    metric: tuple[float | None, float | None] = (None, None)

    async def matches() -> bool:
        nonlocal logged, metric
        samples = await scrape(health)
        metric = (
            sample_value(samples, "herald_cache_invalidation_lag_seconds_count"),
            sample_value(samples, "herald_cache_invalidation_lag_seconds_sum"),
        )
        logged = [r for r in invalidator.log_lines() if r.get("event") == "post invalidated"]
        count, total = metric
        # Each logged lag is rounded to 0.1 ms.
        return (
            count == len(logged)
            and total is not None
            and abs(total - sum(r["lag_ms"] for r in logged) / 1000) <= 0.00005 * len(logged)
        )

    try:
        await wait_until(matches, seconds=10, interval=0.1, message="the lag metric")
    except AssertionError:
        lags = sum(r["lag_ms"] for r in logged) / 1000
        raise AssertionError(
            f"lag metric (count, sum s) {metric} != logged ({len(logged)}, {lags:.4f})"
        ) from None
    return logged


@dataclass(frozen=True, slots=True)
class Read:
    post_id: uuid.UUID
    started: float
    version: int
    outcome: str


async def test_no_read_starting_after_an_invalidation_returns_an_older_version(
    settings: Settings,
    make_key: MakeKey,
    redis_prefix: str,
    db_pool: asyncpg.Pool,
    database_dsn: str,
    broker: Broker,
    processes: Processes,
) -> None:
    """Readers and writers hammer three posts while the real invalidator runs.

    "The invalidation of version v completed" is observed, not assumed: a poller per post reads
    the post's tombstone (``{post:<id>}:inv``, which the invalidation script sets atomically with
    deleting the entry) in a tight loop and notes the time it first saw each value. A read is
    checked against the invalidations seen *before it started*: every such check is sound (the
    invalidation really had completed), and reads that started between an invalidation and
    its observation are simply not checked for it.
    """
    rng = random.Random(7)
    clock = time.monotonic
    # Misses read from a "replica" (the same database) whose answers come 10 ms late: a reader
    # then holds an old row for longer than an invalidation takes, so fills of old rows
    # racing with invalidations happen often instead of rarely.
    target = urlsplit(database_dsn)
    assert target.hostname is not None
    assert target.port is not None
    queues = processes.invalidator_queues()
    async with (
        FaultProxy(target.hostname, target.port) as slow_replica,
        running_api(
            replace(
                invalidator_only(settings),
                db=DatabaseSettings(
                    dsn=database_dsn,
                    replica_dsn=with_port(database_dsn, slow_replica.port),
                    pool_min_size=1,
                    pool_max_size=8,
                ),
            )
        ) as api,
        processes.invalidator(redis_url=REDIS_URL) as invalidator,
        redis.Redis.from_url(REDIS_URL) as tombstones,
    ):
        slow_replica.latency(REPLICA_LATENCY, to_server=False)
        author, reader = await make_key(), await make_key()
        posts = [uuid.UUID((await create_published(api.http, author))["id"]) for _ in range(3)]
        await broker.wait_drained(queues)
        keys = CacheKeys(redis_prefix)
        stop = asyncio.Event()
        reads: list[Read] = []
        #: (time the PATCH answered, i.e. after its commit, version) per post, in order.
        writes: dict[uuid.UUID, list[tuple[float, int]]] = {post_id: [] for post_id in posts}
        seen: dict[uuid.UUID, list[tuple[float, int]]] = {post_id: [] for post_id in posts}

        async def read_forever() -> None:
            while not stop.is_set():
                post_id = rng.choice(posts)
                started = clock()
                response = await api.http.get(f"/v1/posts/{post_id}", headers=reader.headers)
                assert response.status_code == 200, response.text
                reads.append(
                    Read(post_id, started, version_of(response), response.headers["X-Cache"])
                )

        async def write_forever() -> None:
            while not stop.is_set():
                post_id = rng.choice(posts)
                response = await api.http.patch(
                    f"/v1/posts/{post_id}",
                    json={"title": f"t{uuid.uuid4().hex[:8]}"},
                    headers=author.headers,
                )
                assert response.status_code == 200, response.text
                writes[post_id].append((clock(), version_of(response)))
                # Pacing, not waiting: writes arrive at an uneven few hundred per second.
                await asyncio.sleep(rng.uniform(0, 0.01))

        async def watch_tombstone(post_id: uuid.UUID) -> None:
            last = 0
            while not stop.is_set():
                value = int(await tombstones.get(keys.post_invalidated(post_id)) or 0)
                if value > last:
                    seen[post_id].append((clock(), value))
                    last = value

        workers = [asyncio.create_task(read_forever()) for _ in range(8)]
        workers += [asyncio.create_task(write_forever()) for _ in range(2)]
        workers += [asyncio.create_task(watch_tombstone(post_id)) for post_id in posts]

        async def enough_traffic() -> bool:
            return sum(map(len, writes.values())) >= MIN_WRITES and len(reads) >= MIN_READS

        async def stop_once_judgeable() -> None:
            try:
                await asyncio.sleep(RACE_SECONDS)
                await wait_until(
                    enough_traffic, seconds=RACE_DEADLINE, message="too little traffic to judge"
                )
            finally:
                stop.set()

        workers.append(asyncio.create_task(stop_once_judgeable()))
        raced = clock()
        await asyncio.gather(*workers)
        raced = clock() - raced

        # Drain: the invalidator catches up with every committed version.
        async with db_pool.acquire() as conn:
            rows = {post_id: await fetch_post(conn, post_id) for post_id in posts}

        async def caught_up() -> bool:
            for post_id, row in rows.items():
                assert row is not None
                value = await tombstones.get(keys.post_invalidated(post_id))
                if int(value or 0) < revision(row["version"], enriched=False):
                    return False
            return True

        await wait_until(caught_up, seconds=20, message="the invalidator never caught up")
        await broker.wait_drained(queues)
        invalidator.check_running()
        # A fill that lost its race would have left an old entry here: every read must now
        # give the current version, and leave an entry (a miss fills one) equal to the row.
        survivors = sum([await tombstones.exists(keys.post(post_id)) for post_id in posts])
        for post_id in posts:
            response = await api.http.get(f"/v1/posts/{post_id}", headers=reader.headers)
            assert response.status_code == 200, response.text
            row = rows[post_id]
            assert row is not None
            assert version_of(response) == row["version"], f"{post_id} is served stale"
        entries = {post_id: await tombstones.get(keys.post(post_id)) for post_id in posts}

    violations = []
    checked = 0
    behind_commit = 0  # allowed: the invalidation had not completed yet
    for read in reads:
        committed = writes[read.post_id]
        newest = bisect.bisect_left(committed, (read.started, -1))
        if newest and read.version < committed[newest - 1][1]:
            behind_commit += 1
        observed = seen[read.post_id]
        index = bisect.bisect_left(observed, (read.started, -1))
        if index == 0:
            continue
        checked += 1
        completed_version, _ = version_of_revision(observed[index - 1][1])
        if read.version < completed_version:
            violations.append((read, completed_version))
    for post_id, raw in entries.items():
        row = rows[post_id]
        assert row is not None
        assert isinstance(raw, bytes), f"{post_id} was read but is not cached"
        assert decode_entry(raw) == entry_of(row), f"the entry of {post_id} is not the row"
    outcomes = Counter(read.outcome for read in reads)
    report(
        f"read/write race over {raced:.1f} s: {len(reads)} reads "
        f"({outcomes['hit']} hits, {outcomes['miss']} misses), "
        f"{sum(map(len, writes.values()))} writes; {behind_commit} reads older than a commit "
        f"before them (allowed until its invalidation completes); {checked} reads checked "
        f"against an observed invalidation, {len(violations)} older than it; cached entries "
        f"left after draining: {survivors}/{len(posts)}"
    )
    assert not violations, violations[:5]
    assert sum(map(len, writes.values())) >= MIN_WRITES
    assert checked >= 100
