"""Rate limits as clients see them, with small budgets and a 2-second window.

Every test uses a Redis key prefix of its own, so its budgets (including the per-IP one of
anonymous requests) start fresh whatever ran before. Waits for time to pass are deadline-based
waits on the clock the limiter itself uses (``time.time``).
"""

from __future__ import annotations

import time
import uuid
from dataclasses import replace

import asyncpg
import httpx
import pytest

from herald_api.settings import ServerSettings, Settings
from herald_shared import accounts
from herald_shared.settings import RateLimitSettings, RedisSettings
from tests.conftest import ApiKey, MakeKey
from tests.support.apps import running_api
from tests.support.cache import REDIS_URL
from tests.support.cli import run_herald
from tests.support.http import assert_problem, create_published
from tests.support.waiting import wait_until

WINDOW = 2
READS = 5
WRITES = 3
ANONYMOUS = 3
#: For tests that never wait for a window to pass: no boundary falls inside them in practice.
LONG = 60


def limited(settings: Settings, redis_prefix: str, **overrides: object) -> Settings:
    limits = {
        "window_seconds": WINDOW,
        "read_per_window": READS,
        "write_per_window": WRITES,
        "anonymous_per_window": ANONYMOUS,
    } | overrides
    return replace(
        settings,
        rate_limit=RateLimitSettings.model_validate(limits),
        redis=RedisSettings(url=REDIS_URL, key_prefix=f"{redis_prefix}{uuid.uuid4().hex[:8]}:"),
    )


def assert_limit_headers(response: httpx.Response, limit: int, window: int = WINDOW) -> int:
    """The RateLimit headers are all there and consistent; returns the remaining budget."""
    headers = response.headers
    assert headers["RateLimit-Limit"] == str(limit), response.headers
    assert headers["RateLimit-Policy"] == f"{limit};w={window}"
    remaining = int(headers["RateLimit-Remaining"])
    assert 0 <= remaining < limit
    assert 1 <= int(headers["RateLimit-Reset"]) <= window
    return remaining


def assert_rate_limited(response: httpx.Response, limit: int, window: int = WINDOW) -> int:
    """A 429 problem with the headers; returns its Retry-After (whole seconds)."""
    body = assert_problem(response, 429)
    assert body["type"].endswith("rate-limited")
    assert assert_limit_headers(response, limit, window) == 0
    retry_after = response.headers["Retry-After"]
    assert retry_after.isdigit(), retry_after
    assert int(retry_after) > 0
    return int(retry_after)


async def wait_seconds_from(start: float, seconds: float) -> None:
    """Until ``seconds`` have passed since ``start`` (monotonic)."""

    async def passed() -> bool:
        return time.monotonic() >= start + seconds

    await wait_until(passed, seconds=seconds + 5, interval=0.01, message="time stood still")


async def wait_window_position(low: float, high: float) -> None:
    """Until the limiter's clock is between ``low`` and ``high`` seconds into a window."""

    async def inside() -> bool:
        return low <= time.time() % WINDOW <= high

    await wait_until(inside, seconds=WINDOW + 1, interval=0.005, message="window never came")


async def spend_reads(http: httpx.AsyncClient, key: ApiKey, url: str, count: int) -> list[int]:
    statuses = []
    for _ in range(count):
        response = await http.get(url, headers=key.headers)
        statuses.append(response.status_code)
    return statuses


async def test_exactly_n_reads_pass_then_429_with_a_retry_after_that_holds(
    settings: Settings, redis_prefix: str, make_key: MakeKey
) -> None:
    key = await make_key()
    async with running_api(limited(settings, redis_prefix)) as api:
        # Keep clear of a window boundary: the whole burst must fall in one window.
        await wait_window_position(0.0, WINDOW - 0.5)
        post = await create_published(api.http, key)
        url = f"/v1/posts/{post['id']}"
        remaining = []
        for n in range(READS):
            # One of the reads is of a post that does not exist: it spends budget too.
            target = f"/v1/posts/{uuid.uuid4()}" if n == 2 else url
            response = await api.http.get(target, headers=key.headers)
            assert response.status_code == (404 if n == 2 else 200), response.text
            remaining.append(assert_limit_headers(response, READS))
        assert remaining == list(range(READS - 1, -1, -1))

        refused = await api.http.get(url, headers=key.headers)
        refused_at = time.monotonic()
        retry_after = assert_rate_limited(refused, READS)
        assert retry_after <= 2 * WINDOW
        # Refused requests do not spend budget: still refused, same answer.
        assert_rate_limited(await api.http.get(url, headers=key.headers), READS)

        await wait_seconds_from(refused_at, retry_after)
        allowed = await api.http.get(url, headers=key.headers)
        assert allowed.status_code == 200, allowed.text
        assert_limit_headers(allowed, READS)


async def test_the_budget_comes_back_gradually_as_the_window_slides(
    settings: Settings, redis_prefix: str, make_key: MakeKey
) -> None:
    """Four reads early in one window; halfway through the next, the previous window still
    weighs about half, so two reads fit — a fixed window would allow all four again."""
    limit = 4
    key = await make_key()
    async with running_api(limited(settings, redis_prefix, read_per_window=limit)) as api:
        post = await create_published(api.http, key)
        url = f"/v1/posts/{post['id']}"
        await wait_window_position(0.0, WINDOW - 0.5)
        window = int(time.time() // WINDOW)
        assert await spend_reads(api.http, key, url, limit) == [200] * limit
        assert_rate_limited(await api.http.get(url, headers=key.headers), limit)
        assert int(time.time() // WINDOW) == window, "the burst crossed a window boundary"

        async def next_window() -> bool:
            return int(time.time() // WINDOW) == window + 1

        await wait_until(next_window, seconds=WINDOW + 1, interval=0.01)
        await wait_window_position(0.55 * WINDOW, 0.7 * WINDOW)
        statuses = await spend_reads(api.http, key, url, limit)
        assert int(time.time() // WINDOW) == window + 1
    assert statuses == [200, 200, 429, 429]


async def test_read_and_write_budgets_are_separate_and_per_key(
    settings: Settings, redis_prefix: str, make_key: MakeKey
) -> None:
    key = await make_key()
    other_key = await make_key(account=key.account_name)
    async with running_api(limited(settings, redis_prefix, window_seconds=LONG)) as api:
        post = await create_published(api.http, key)
        url = f"/v1/posts/{post['id']}"
        assert await spend_reads(api.http, key, url, READS) == [200] * READS
        assert_rate_limited(await api.http.get(url, headers=key.headers), READS, LONG)

        # Reads exhausted; writes still have their own budget (one spent creating the post).
        patched = await api.http.patch(url, json={"title": "Still"}, headers=key.headers)
        assert patched.status_code == 200, patched.text
        assert assert_limit_headers(patched, WRITES, LONG) == WRITES - 2
        created = await api.http.post(
            "/v1/posts", json={"title": "t", "body": "b"}, headers=key.headers
        )
        assert created.status_code == 201
        assert assert_limit_headers(created, WRITES, LONG) == 0
        assert_rate_limited(
            await api.http.patch(url, json={"title": "No"}, headers=key.headers), WRITES, LONG
        )
        # The budgets are the key's: another key of the same account has its own.
        response = await api.http.get(url, headers=other_key.headers)
        assert response.status_code == 200
        assert assert_limit_headers(response, READS, LONG) == READS - 1


async def test_a_per_account_override_applies_at_once(
    settings: Settings,
    redis_prefix: str,
    make_key: MakeKey,
    db_pool: asyncpg.Pool,
    database_dsn: str,
) -> None:
    assert settings.server.auth_cache_ttl_seconds == 0
    key = await make_key()
    async with running_api(limited(settings, redis_prefix, window_seconds=LONG)) as api:
        post = await create_published(api.http, key)
        url = f"/v1/posts/{post['id']}"
        async with db_pool.acquire() as conn:
            assert await accounts.set_limits(conn, key.account_name, read=2, write=None)
        first = await api.http.get(url, headers=key.headers)
        assert assert_limit_headers(first, 2, LONG) == 1
        assert (await api.http.get(url, headers=key.headers)).status_code == 200
        assert_rate_limited(await api.http.get(url, headers=key.headers), 2, LONG)
        # The write budget has no override: the default applies.
        patched = await api.http.patch(url, json={"title": "x"}, headers=key.headers)
        assert assert_limit_headers(patched, WRITES, LONG) == WRITES - 2

        # The operator's command raises it; the two reads already spent still count.
        result = await run_herald(
            ["limits", "set", key.account_name, "--read", "4"], {"HERALD_DB_DSN": database_dsn}
        )
        assert result.code == 0, result.output
        statuses = await spend_reads(api.http, key, url, 3)
        assert statuses == [200, 200, 429]

        async with db_pool.acquire() as conn:
            assert await accounts.set_limits(conn, key.account_name, read=None, write=None)
        back = await api.http.get(url, headers=key.headers)
        assert back.status_code == 200
        assert assert_limit_headers(back, READS, LONG) == READS - 5


@pytest.mark.parametrize("authorization", [None, "Bearer not-a-key", "Basic abc"])
async def test_anonymous_requests_are_limited_per_ip(
    settings: Settings, redis_prefix: str, make_key: MakeKey, authorization: str | None
) -> None:
    key, stranger_key = await make_key(), await make_key()
    headers = {"Authorization": authorization} if authorization else {}
    url = f"/v1/posts/{uuid.uuid4()}"
    trusting = replace(settings, server=ServerSettings(auth_cache_ttl_seconds=LONG))
    async with running_api(
        limited(trusting, redis_prefix, window_seconds=LONG), client_ip="10.1.2.3"
    ) as api:
        # A valid key looked up from this address gives the address its request back.
        assert_problem(await api.http.get(url, headers=key.headers), 404)
        for n in range(ANONYMOUS):
            response = await api.http.get(url, headers=headers)
            assert_problem(response, 401)
            assert assert_limit_headers(response, ANONYMOUS, LONG) == ANONYMOUS - 1 - n
        refused = await api.http.get(url, headers=headers)
        assert_rate_limited(refused, ANONYMOUS, LONG)
        # Posting without a key is refused the same way: the budget is the address's.
        assert_rate_limited(
            await api.http.post("/v1/posts", json={}, headers=headers), ANONYMOUS, LONG
        )

        async with api.client_from("10.1.2.4") as neighbour:
            assert_problem(await neighbour.get(url, headers=headers), 401)
        # A key this process verified lately spends its own budget, not the address's.
        authenticated = await api.http.get(url, headers=key.headers)
        assert_problem(authenticated, 404)
        assert assert_limit_headers(authenticated, READS, LONG) == READS - 2
        # Any other key would need a lookup: none happens for the exhausted address.
        assert_rate_limited(await api.http.get(url, headers=stranger_key.headers), ANONYMOUS, LONG)
