"""Fixtures for the webhook tests: the API with chosen webhook settings, a real worker process
with short timeouts and backoff, local receivers, and helpers over the webhook tables.

``client`` is the API allowing http:// and loopback targets (the receivers run on 127.0.0.1);
``strict_client`` refuses private targets as production does. The worker starts with the same
permissive settings unless a test passes others. After each test, deliveries still pending are
cancelled, so no later test's worker calls a receiver that is gone (or a new one on its port).
"""

from __future__ import annotations

import dataclasses
import json
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import asynccontextmanager
from typing import Any

import asyncpg
import httpx
import pytest

from herald_api.settings import Settings
from herald_shared.webhooks.settings import WebhookSettings
from tests.conftest import ApiKey
from tests.support.apps import in_process_client
from tests.support.processes import ServiceProcess
from tests.support.services import Processes
from tests.support.waiting import wait_until
from tests.support.webhook_receiver import Behaviour, Receiver

#: The worker's webhook settings in these tests: fractions of a second instead of minutes.
FAST_WORKER_ENV: dict[str, str] = {
    "HERALD_WEBHOOKS_ALLOW_PRIVATE": "true",
    "HERALD_WEBHOOKS_ALLOW_HTTP": "true",
    "HERALD_WEBHOOKS_BACKOFF_SECONDS": json.dumps([0.2, 0.3, 0.4]),
    "HERALD_WEBHOOKS_BACKOFF_JITTER": "0.1",
    "HERALD_WEBHOOKS_CONNECT_TIMEOUT_SECONDS": "0.5",
    "HERALD_WEBHOOKS_READ_TIMEOUT_SECONDS": "1.0",
    "HERALD_WEBHOOKS_RESOLVE_TIMEOUT_SECONDS": "1.0",
    "HERALD_WEBHOOKS_LEASE_SECONDS": "10",
    "HERALD_WEBHOOKS_POLL_INTERVAL_SECONDS": "0.05",
    "HERALD_WEBHOOKS_BREAKER_FAILURES": "10",
    "HERALD_WEBHOOKS_BREAKER_RESET_SECONDS": "1.0",
    "HERALD_LOG_LEVEL": "WARNING",
}

PERMISSIVE = WebhookSettings(allow_http=True, allow_private=True)
STRICT = WebhookSettings(allow_http=True, allow_private=False)


@asynccontextmanager
async def api_client(
    settings: Settings, webhooks: WebhookSettings
) -> AsyncIterator[httpx.AsyncClient]:
    """The API in-process with ``webhooks`` as its webhook settings."""
    async with in_process_client(dataclasses.replace(settings, webhooks=webhooks)) as http:
        yield http


@pytest.fixture
async def client(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    async with api_client(settings, PERMISSIVE) as http:
        yield http


@pytest.fixture
async def strict_client(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    async with api_client(settings, STRICT) as http:
        yield http


@pytest.fixture(autouse=True)
async def _cancel_leftover_deliveries(db_pool: asyncpg.Pool) -> AsyncIterator[None]:
    yield
    await db_pool.execute(
        "UPDATE webhook_deliveries SET status = 'cancelled', last_error = 'test ended' "
        "WHERE status = 'pending'"
    )


StartWorker = Callable[..., Awaitable[ServiceProcess]]


@pytest.fixture
def start_worker(processes: Processes) -> StartWorker:
    """Start a real worker process (``python -m herald_worker``) with fast webhook settings;
    keyword arguments override them (``read_timeout_seconds=2`` → HERALD_WEBHOOKS_...)."""

    async def start(**overrides: Any) -> ServiceProcess:
        env = dict(FAST_WORKER_ENV)
        for name, value in overrides.items():
            rendered = json.dumps(value) if isinstance(value, list | bool) else str(value)
            env[f"HERALD_WEBHOOKS_{name.upper()}"] = rendered
        return await processes.start_service("herald_worker", "worker", env)

    return start


@pytest.fixture
async def receivers() -> AsyncIterator[Callable[..., Awaitable[Receiver]]]:
    """Start local receivers (each on a port of its own); all are stopped when the test ends."""
    started: list[Receiver] = []

    async def make(behaviour: Behaviour | None = None) -> Receiver:
        receiver = await Receiver(behaviour).start()
        started.append(receiver)
        return receiver

    try:
        yield make
    finally:
        for receiver in started:
            await receiver.stop()


async def subscribe(
    client: httpx.AsyncClient,
    key: ApiKey,
    receiver: Receiver,
    event_types: list[str] | None = None,
) -> dict[str, Any]:
    """Register ``receiver`` for ``key``'s account and give it the secret; returns the webhook."""
    response = await client.post(
        "/v1/webhooks",
        json={"url": receiver.url, "event_types": event_types or ["post.*"]},
        headers=key.headers,
    )
    assert response.status_code == 201, response.text
    webhook: dict[str, Any] = response.json()
    receiver.secret = webhook["secret"]
    return webhook


async def deliveries(
    client: httpx.AsyncClient, key: ApiKey, webhook_id: str, **params: Any
) -> list[dict[str, Any]]:
    """Every entry of the webhook's delivery log through the API, newest first."""
    items: list[dict[str, Any]] = []
    cursor = None
    while True:
        query = {**params, "limit": 100} | ({"cursor": cursor} if cursor else {})
        response = await client.get(
            f"/v1/webhooks/{webhook_id}/deliveries", params=query, headers=key.headers
        )
        assert response.status_code == 200, response.text
        page = response.json()
        items += page["items"]
        cursor = page["next_cursor"]
        if cursor is None:
            return items


async def wait_deliveries(
    client: httpx.AsyncClient,
    key: ApiKey,
    webhook_id: str,
    done: Callable[[list[dict[str, Any]]], bool],
    *,
    seconds: float = 20.0,
    message: str = "the delivery log",
) -> list[dict[str, Any]]:
    """Poll the delivery log until ``done(items)``; returns the items."""
    latest: list[dict[str, Any]] = []

    async def met() -> bool:
        nonlocal latest
        latest = await deliveries(client, key, webhook_id)
        return done(latest)

    await wait_until(met, seconds=seconds, interval=0.05, message=message)
    return latest


async def insert_webhook(
    pool: asyncpg.Pool,
    account_id: uuid.UUID,
    url: str,
    *,
    event_types: list[str] | None = None,
    secret: str = "whsec_" + "A" * 43 + "=",
) -> uuid.UUID:
    """A webhook written straight to the table, bypassing the API's checks (as if the URL had
    been allowed when it was made, or its DNS changed since)."""
    webhook_id = uuid.uuid4()
    await pool.execute(
        "INSERT INTO webhooks (id, account_id, url, event_types, secret) "
        "VALUES ($1, $2, $3, $4, $5)",
        webhook_id,
        account_id,
        url,
        event_types or ["post.*"],
        secret,
    )
    return webhook_id


def by_status(items: list[dict[str, Any]]) -> Mapping[str, int]:
    counts: dict[str, int] = {}
    for item in items:
        counts[item["status"]] = counts.get(item["status"], 0) + 1
    return counts
