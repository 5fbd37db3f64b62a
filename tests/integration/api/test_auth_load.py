"""The auth-load test: strangers with random bearer tokens cannot make PostgreSQL work.

N requests with random well-formed tokens cost at most one key lookup per distinct token within
the unknown-key TTL — across API processes, which share the memory of refused tokens in Redis —
and none at all once the client IP's anonymous budget is spent. Lookups are counted at the
repository boundary: the app's real ``find_key``, against the real database, wrapped in a
counter.
"""

from __future__ import annotations

import random
import secrets
import uuid
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import replace

import pytest
import redis.asyncio as redis

from herald_api.access.keys import KeyLookup
from herald_api.settings import ServerSettings, Settings
from herald_shared.accounts import StoredKey
from herald_shared.db import Connection
from herald_shared.settings import RateLimitSettings, RedisSettings
from tests.conftest import MakeKey
from tests.support.apps import RunningApi, running_api
from tests.support.cache import REDIS_URL
from tests.support.http import assert_problem
from tests.support.waiting import wait_until

WINDOW = 600


def random_token() -> str:
    """A well-formed token no key has: a random key id and a random secret."""
    return f"hrld_{secrets.token_hex(6)}_{secrets.token_urlsafe(32)}"


class CountingLookup:
    """The app's key lookup, counting the key ids it asks PostgreSQL for."""

    def __init__(self, real: KeyLookup) -> None:
        self.real = real
        self.asked: Counter[str] = Counter()

    async def __call__(self, conn: Connection, key_id: str) -> StoredKey | None:
        self.asked[key_id] += 1
        return await self.real(conn, key_id)

    @property
    def total(self) -> int:
        return sum(self.asked.values())


def load_settings(
    settings: Settings, prefix: str, *, anonymous: int, unknown_ttl: float = 60.0
) -> Settings:
    return replace(
        settings,
        server=ServerSettings(auth_cache_ttl_seconds=0, unknown_key_cache_ttl_seconds=unknown_ttl),
        # Patient Redis deadlines: a limiter failing open on a busy machine would let lookups
        # through, and that is not what is measured here.
        redis=RedisSettings(
            url=REDIS_URL,
            key_prefix=prefix,
            socket_timeout_seconds=2,
            pool_timeout_seconds=2,
            connect_timeout_seconds=2,
        ),
        rate_limit=RateLimitSettings(
            window_seconds=WINDOW,
            read_per_window=1_000_000,
            write_per_window=1_000_000,
            anonymous_per_window=anonymous,
        ),
    )


@asynccontextmanager
async def counted_api(
    settings: Settings, lookups: CountingLookup | None = None
) -> AsyncIterator[tuple[RunningApi, CountingLookup]]:
    async with running_api(settings, client_ip="198.51.100.7") as api:
        counting = lookups or CountingLookup(api.state.keys.find)
        api.state.keys.find = counting
        yield api, counting


@pytest.fixture
def prefix(redis_prefix: str) -> str:
    return f"{redis_prefix}{uuid.uuid4().hex[:8]}:"


async def test_random_tokens_cost_one_lookup_each_within_the_ttl_across_processes(
    settings: Settings, prefix: str, make_key: MakeKey
) -> None:
    key = await make_key()
    forged = f"hrld_{key.key_id}_{secrets.token_urlsafe(32)}"  # a real key id, a wrong secret
    tokens = [random_token() for _ in range(12)] + [forged]
    requests = [token for token in tokens for _ in range(6)]
    random.Random(7).shuffle(requests)
    config = load_settings(settings, prefix, anonymous=10_000)
    async with AsyncExitStack() as stack:
        # Two API processes' worth of apps, one Redis: what one refused, the other knows.
        first, counting = await stack.enter_async_context(counted_api(config))
        second, _ = await stack.enter_async_context(counted_api(config, counting))
        for n, token in enumerate(requests):
            api = (first, second)[n % 2]
            response = await api.http.get("/v1/posts", headers={"Authorization": f"Bearer {token}"})
            assert_problem(response, 401)
        assert len(requests) == 78
        assert counting.total == len(tokens), counting.asked
        assert set(counting.asked.values()) == {1}
        # The valid key is untouched by its forgery being remembered.
        assert (await first.http.get("/v1/posts", headers=key.headers)).status_code == 200


async def test_nothing_is_looked_up_once_the_ip_budget_is_spent(
    settings: Settings, prefix: str
) -> None:
    budget = 5
    async with counted_api(load_settings(settings, prefix, anonymous=budget)) as (api, counting):
        statuses = []
        for _ in range(40):
            token = random_token()
            response = await api.http.get("/v1/posts", headers={"Authorization": f"Bearer {token}"})
            statuses.append(response.status_code)
            if response.status_code == 429:
                assert_problem(response, 429)
                assert response.headers["RateLimit-Remaining"] == "0"
                assert int(response.headers["Retry-After"]) >= 1
        assert statuses == [401] * budget + [429] * (40 - budget)
        assert counting.total == budget, counting.asked
        # Repeating a refused token after that costs nothing either.
        assert (
            await api.http.get("/v1/posts", headers={"Authorization": f"Bearer {token}"})
        ).status_code == 429
        assert counting.total == budget


async def test_a_refused_token_is_looked_up_again_once_its_ttl_has_passed(
    settings: Settings, prefix: str
) -> None:
    token = random_token()
    headers = {"Authorization": f"Bearer {token}"}
    config = load_settings(settings, prefix, anonymous=10_000, unknown_ttl=1.0)
    client = redis.Redis.from_url(REDIS_URL)
    try:
        async with counted_api(config) as (api, counting):
            for _ in range(3):
                assert_problem(await api.http.get("/v1/posts", headers=headers), 401)
            assert counting.total == 1
            remembered = [key async for key in client.scan_iter(match=f"{prefix}authx:*")]
            assert len(remembered) == 1
            # The entry names a digest of the token, never the token or its secret.
            assert token.encode() not in remembered[0]
            secret = token.split("_", 2)[2]
            assert secret.encode() not in remembered[0]
            ttl_ms = await client.pttl(remembered[0])
            assert 0 < ttl_ms <= 1000

            async def expired() -> bool:
                return not await client.exists(remembered[0])

            await wait_until(expired, seconds=5, message="the refused token was never forgotten")
            assert_problem(await api.http.get("/v1/posts", headers=headers), 401)
            assert counting.total == 2
    finally:
        await client.aclose()
