"""SSRF: with private targets not allowed (as in production), loopback, private, link-local and
unspecified targets — however spelled — are refused when a webhook is created and, on the
resolved address, when it is delivered; the refusal comes before any connection attempt."""

# ruff: noqa: RUF001 - full-width and ideographic spellings are what is under test

from __future__ import annotations

import ipaddress
import re
import socket
from collections.abc import AsyncIterator

import asyncpg
import httpx
import pytest

from tests.conftest import MakeKey
from tests.integration.webhooks.conftest import StartWorker, insert_webhook, wait_deliveries
from tests.support.http import assert_problem, create_post
from tests.support.webhook_receiver import AcceptCounter

#: Host spellings of non-global targets; every one is also tried on the listening port.
PRIVATE_HOSTS = [
    "127.0.0.1",
    "localhost",
    "[::1]",
    "10.0.0.1",
    "169.254.169.254",
    "0.0.0.0",  # noqa: S104 - a target being refused, not a bind address
    "127.1",
    "0x7f.1",
    "2130706433",
    "[::ffff:127.0.0.1]",
    "100.100.100.200",
]


def localhost_addresses(port: int) -> set[str]:
    """Every address this machine's resolver gives for ``localhost``, in any order."""
    infos = socket.getaddrinfo("localhost", port, type=socket.SOCK_STREAM)
    return {str(ipaddress.ip_address(str(info[4][0]))) for info in infos}


@pytest.fixture
async def listener() -> AsyncIterator[AcceptCounter]:
    """A socket on 127.0.0.1 that records connection attempts: it must see none."""
    counter = await AcceptCounter().start()
    try:
        yield counter
    finally:
        await counter.stop()


@pytest.mark.parametrize(
    "host", [*PRIVATE_HOSTS, "localhost.", "LocalHost", "api.localhost", "[fe80::1]", "[fd00::1]"]
)
async def test_creating_a_webhook_for_a_private_target_is_refused(
    strict_client: httpx.AsyncClient, make_key: MakeKey, listener: AcceptCounter, host: str
) -> None:
    key = await make_key()
    for scheme in ("http", "https"):
        response = await strict_client.post(
            "/v1/webhooks",
            json={"url": f"{scheme}://{host}:{listener.port}/hook", "event_types": ["*"]},
            headers=key.headers,
        )
        body = assert_problem(response, 422)
        assert body["type"] == "/problems/webhook-url-refused"
        assert body["errors"][0]["loc"] == ["body", "url"]
    listed = await strict_client.get("/v1/webhooks", headers=key.headers)
    assert listed.json()["items"] == []
    assert listener.accepted == 0


@pytest.mark.parametrize(
    "url",
    [
        "https://127.0.0.1./hook",
        "https://０.０.０.０/hook",
        "https://127。0。0。1/hook",
        "https://１２７.０.０.１/hook",
        "https://10．0．0．1./hook",
        "https://ｌｏｃａｌｈｏｓｔ/hook",
    ],
)
async def test_a_private_target_spelled_to_look_like_a_name_is_refused_at_registration(
    strict_client: httpx.AsyncClient, make_key: MakeKey, url: str
) -> None:
    key = await make_key()
    response = await strict_client.post(
        "/v1/webhooks", json={"url": url, "event_types": ["*"]}, headers=key.headers
    )
    body = assert_problem(response, 422)
    assert body["type"] == "/problems/webhook-url-refused"
    assert body["errors"][0]["loc"] == ["body", "url"]
    listed = await strict_client.get("/v1/webhooks", headers=key.headers)
    assert listed.json()["items"] == []
    # Nor can an existing webhook be pointed there.
    created = await strict_client.post(
        "/v1/webhooks",
        json={"url": "https://93.184.216.34/hook", "event_types": ["*"]},
        headers=key.headers,
    )
    assert created.status_code == 201, created.text
    path = f"/v1/webhooks/{created.json()['id']}"
    patched = await strict_client.patch(path, json={"url": url}, headers=key.headers)
    assert assert_problem(patched, 422)["type"] == "/problems/webhook-url-refused"
    unchanged = await strict_client.get(path, headers=key.headers)
    assert unchanged.json()["url"] == "https://93.184.216.34/hook"


@pytest.mark.parametrize(
    "url",
    [
        "https://93.184.216.34./hook",
        "https://９３。１８４。２１６。３４/hook",
        "https://example.com./hook",
    ],
)
async def test_a_global_target_in_another_spelling_is_accepted(
    strict_client: httpx.AsyncClient, make_key: MakeKey, url: str
) -> None:
    key = await make_key()
    response = await strict_client.post(
        "/v1/webhooks", json={"url": url, "event_types": ["*"]}, headers=key.headers
    )
    assert response.status_code == 201, response.text


async def test_a_global_target_is_accepted_without_any_lookup(
    strict_client: httpx.AsyncClient, make_key: MakeKey
) -> None:
    key = await make_key()
    # A documentation-free global address literal: accepted without DNS or a connection.
    response = await strict_client.post(
        "/v1/webhooks",
        json={"url": "https://93.184.216.34/hook", "event_types": ["post.*"]},
        headers=key.headers,
    )
    assert response.status_code == 201, response.text


async def test_delivering_to_a_private_target_is_refused_before_connecting(
    client: httpx.AsyncClient,
    make_key: MakeKey,
    start_worker: StartWorker,
    db_pool: asyncpg.Pool,
    listener: AcceptCounter,
) -> None:
    await start_worker(allow_private=False)
    key = await make_key()
    # Written straight to the table, as if they had been allowed when made (or their DNS changed
    # since): the worker's own check on the resolved address is what is under test. "localhost"
    # is resolved (through /etc/hosts) and refused for an address it resolves to.
    hooks = {
        host: await insert_webhook(db_pool, key.account_id, f"http://{host}:{listener.port}/h")
        for host in PRIVATE_HOSTS
    }

    await create_post(client, key)

    errors: dict[str, str] = {}
    for host, webhook_id in hooks.items():
        log = await wait_deliveries(
            client,
            key,
            str(webhook_id),
            # post.created, and post.enriched once the worker has enriched the post
            lambda items: len(items) == 2 and all(i["status"] == "dead" for i in items),
            message=f"the deliveries to {host} died",
        )
        for refused in log:
            assert refused["last_error"].startswith("refused: "), refused
            assert refused["attempts"] == 0
            assert refused["last_status_code"] is None
        errors[host] = log[0]["last_error"]
    # Refused for an address "localhost" really resolves to here, whichever the resolver gives
    # first (127.0.0.1 on one machine, ::1 on another).
    resolved = re.fullmatch(
        r"refused: localhost resolves to (\S+), a loopback address", errors["localhost"]
    )
    assert resolved, errors["localhost"]
    assert resolved[1] in localhost_addresses(listener.port)
    assert "link-local" in errors["169.254.169.254"]
    assert "shared address" in errors["100.100.100.200"]
    assert "127.0.0.1 is a loopback address" in errors["0x7f.1"]
    assert listener.accepted == 0
