"""Client addresses behind a load balancer: the per-IP budget and the access log see the client
a trusted proxy reports, and nobody else can choose their address with X-Forwarded-For."""

from __future__ import annotations

import ipaddress
import uuid
from dataclasses import replace

import httpx
from structlog.testing import capture_logs

from herald_api.settings import ServerSettings, Settings
from herald_shared.settings import RateLimitSettings, RedisSettings
from tests.support.apps import running_api
from tests.support.cache import REDIS_URL
from tests.support.http import assert_problem

BUDGET = 2
BALANCER = "10.0.0.5"


def behind_a_balancer(settings: Settings, redis_prefix: str) -> Settings:
    return replace(
        settings,
        server=ServerSettings(
            auth_cache_ttl_seconds=0, trusted_proxies=(ipaddress.ip_network("10.0.0.0/8"),)
        ),
        redis=RedisSettings(url=REDIS_URL, key_prefix=f"{redis_prefix}{uuid.uuid4().hex[:8]}:"),
        rate_limit=RateLimitSettings(window_seconds=600, anonymous_per_window=BUDGET),
    )


async def anonymous(http: httpx.AsyncClient, forwarded_for: str | None = None) -> int:
    headers = {"X-Forwarded-For": forwarded_for} if forwarded_for else {}
    return (await http.get("/v1/posts", headers=headers)).status_code


async def test_clients_behind_a_trusted_proxy_have_budgets_of_their_own(
    settings: Settings, redis_prefix: str
) -> None:
    async with running_api(behind_a_balancer(settings, redis_prefix), client_ip=BALANCER) as api:
        first = [await anonymous(api.http, "203.0.113.9") for _ in range(BUDGET + 1)]
        assert first == [401] * BUDGET + [429]
        # Another client behind the same balancer is not limited by the first one.
        assert await anonymous(api.http, "203.0.113.10") == 401
        # A client cannot escape its budget by writing its own X-Forwarded-For: the balancer
        # appends the address it saw, and that is the one read.
        for spoofed in ("198.18.0.1", "10.0.0.1", "garbage", "203.0.113.10"):
            assert await anonymous(api.http, f"{spoofed}, 203.0.113.9") == 429


async def test_an_untrusted_peer_cannot_choose_its_address(
    settings: Settings, redis_prefix: str
) -> None:
    async with running_api(
        behind_a_balancer(settings, redis_prefix), client_ip="198.51.100.1"
    ) as api:
        statuses = [await anonymous(api.http, f"203.0.113.{n}") for n in range(BUDGET + 3)]
        assert statuses == [401] * BUDGET + [429] * 3
        # The limited address is the peer's, whatever the header says.
        async with api.client_from("198.51.100.2") as neighbour:
            assert await anonymous(neighbour, "198.51.100.1") == 401


async def test_the_access_log_names_the_client_the_proxy_reports(
    settings: Settings, redis_prefix: str
) -> None:
    async with running_api(behind_a_balancer(settings, redis_prefix), client_ip=BALANCER) as api:
        with capture_logs() as logs:
            assert_problem(
                await api.http.get(
                    "/v1/posts", headers={"X-Forwarded-For": "1.1.1.1, 203.0.113.9"}
                ),
                401,
            )
        async with api.client_from("198.51.100.1") as stranger:
            with capture_logs() as spoofed:
                await anonymous(stranger, "203.0.113.9")
    assert [line["client"] for line in logs if line["event"] == "request"] == ["203.0.113.9"]
    assert [line["client"] for line in spoofed if line["event"] == "request"] == ["198.51.100.1"]
