"""One delivery attempt, against httpx's MockTransport (nothing leaves the process): the request
goes to the checked address with the original name in Host and SNI, redirects are not followed,
and bodies, time and outcomes are bounded and judged."""

from __future__ import annotations

import asyncio
import ipaddress
from collections.abc import AsyncIterator, Callable

import httpx
import pytest

from herald_shared.webhooks.settings import WebhookSettings
from herald_shared.webhooks.ssrf import IPAddress, parse_target
from herald_worker.webhooks.delivery import backoff_delay
from herald_worker.webhooks.sender import AttemptResult, send

SETTINGS = WebhookSettings(
    connect_timeout_seconds=0.05,
    read_timeout_seconds=0.1,
    resolve_timeout_seconds=0.05,
    lease_seconds=5,
    max_response_bytes=1024,
)
GLOBAL: list[IPAddress] = [ipaddress.ip_address("93.184.216.34")]
BODY = b'{"type":"post.created"}'


async def _send(
    handler: Callable[[httpx.Request], httpx.Response | asyncio.Future[httpx.Response]],
    url: str = "https://hooks.example.com:8443/in?x=1",
    addresses: list[IPAddress] = GLOBAL,
) -> tuple[AttemptResult, list[httpx.Request]]:
    seen: list[httpx.Request] = []

    async def record(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        response = handler(request)
        return await response if isinstance(response, asyncio.Future) else response

    async with httpx.AsyncClient(
        transport=httpx.MockTransport(record), follow_redirects=False
    ) as client:
        result = await send(
            client,
            parse_target(url, allow_http=True),
            addresses,
            BODY,
            {"webhook-id": "d1"},
            SETTINGS,
        )
    return result, seen


async def test_the_request_goes_to_the_checked_address_under_the_original_name() -> None:
    result, seen = await _send(lambda _: httpx.Response(204))
    assert result.outcome == "succeeded"
    assert result.status_code == 204
    (request,) = seen
    assert str(request.url) == "https://93.184.216.34:8443/in?x=1"
    assert request.headers["host"] == "hooks.example.com:8443"
    assert request.extensions["sni_hostname"] == "hooks.example.com"
    assert request.headers["webhook-id"] == "d1"
    assert request.headers["content-type"] == "application/json"
    assert request.content == BODY


async def test_a_literal_target_sends_no_server_name() -> None:
    _, seen = await _send(lambda _: httpx.Response(200), url="https://[2606:4700::1]/h")
    assert seen[0].url.host == "93.184.216.34"
    assert "sni_hostname" not in seen[0].extensions


async def test_a_redirect_to_a_private_address_is_not_followed() -> None:
    result, seen = await _send(
        lambda _: httpx.Response(307, headers={"Location": "http://169.254.169.254/latest"})
    )
    assert len(seen) == 1
    assert result.outcome == "failed"
    assert result.status_code == 307
    assert "http://169.254.169.254/latest" in str(result.error)
    assert result.host_failure is False


@pytest.mark.parametrize(
    ("status", "host_failure"), [(500, True), (503, True), (429, True), (404, False), (410, False)]
)
async def test_failures_are_judged(status: int, host_failure: bool) -> None:
    result, _ = await _send(lambda _: httpx.Response(status, text="nope\x00\n" + "x" * 500))
    assert result.outcome == "failed"
    assert result.host_failure is host_failure
    assert str(result.error).startswith(f"HTTP {status}: nope")
    assert len(str(result.error)) < 300


async def test_only_the_first_bytes_of_a_large_answer_are_read() -> None:
    pulled = 0

    async def endless() -> AsyncIterator[bytes]:
        nonlocal pulled
        while True:
            pulled += 1
            yield b"x" * 512

    result, _ = await _send(lambda _: httpx.Response(200, content=endless()))
    assert result.outcome == "succeeded"
    assert pulled <= 3


async def test_a_receiver_that_never_answers_times_out_within_the_deadline() -> None:
    result, _ = await _send(lambda _: asyncio.get_running_loop().create_future())
    assert result.outcome == "failed"
    assert result.host_failure
    assert result.error == "timed out after 0.15 s"
    assert result.latency_ms < 1000


async def test_an_unreachable_address_is_skipped_for_the_next() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.host == "2001:4860::1":
            raise httpx.ConnectError("unreachable", request=request)
        return httpx.Response(200)

    addresses: list[IPAddress] = [ipaddress.ip_address("2001:4860::1"), *GLOBAL]
    result, seen = await _send(handler, addresses=addresses)
    assert result.outcome == "succeeded"
    assert [r.url.host for r in seen] == ["2001:4860::1", "93.184.216.34"]
    failed, _ = await _send(handler, addresses=addresses[:1])
    assert failed.host_failure
    assert "ConnectError" in str(failed.error)


def test_backoff_follows_the_schedule_with_bounded_jitter() -> None:
    settings = WebhookSettings(backoff_seconds=[30, 120, 600], backoff_jitter=0.2)
    for made, base in [(1, 30), (2, 120), (3, 600), (7, 600)]:
        delays = [backoff_delay(settings, made) for _ in range(200)]
        assert all(base * 0.8 <= d <= base * 1.2 for d in delays)
        assert len({round(d, 6) for d in delays}) > 100
