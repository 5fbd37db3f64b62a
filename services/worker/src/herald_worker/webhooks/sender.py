"""One HTTP attempt of one webhook delivery, to addresses that were already checked.

The request goes to the checked IP address itself, never to the name (which could resolve
differently a moment later); the name travels in the ``Host`` header and, for https, as the TLS
server name, so virtual hosting and certificate checks work as usual. Redirects are never
followed, the whole attempt has one deadline, and at most ``max_response_bytes`` of the answer
are read.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any, Literal

import httpx

from herald_shared.webhooks.settings import WebhookSettings
from herald_shared.webhooks.ssrf import IPAddress, Target

USER_AGENT = "Herald-Webhooks/1.0"
_SNIPPET_CHARS = 200

Outcome = Literal["succeeded", "failed"]


@dataclass(frozen=True, slots=True)
class AttemptResult:
    outcome: Outcome
    status_code: int | None
    error: str | None
    latency_ms: int
    #: The destination itself misbehaved (unreachable, slow, 5xx, 429): counts against its breaker.
    host_failure: bool


@asynccontextmanager
async def create_http_client(settings: WebhookSettings) -> AsyncIterator[httpx.AsyncClient]:
    """The client every delivery of a process uses: strict timeouts, no redirects, no proxies
    from the environment (a proxy would connect to a name we never checked), and no keep-alive
    (a pooled connection is keyed by address, and would carry one host's verified TLS session
    into a request for another host on the same address)."""
    timeout = httpx.Timeout(
        connect=settings.connect_timeout_seconds,
        read=settings.read_timeout_seconds,
        write=settings.read_timeout_seconds,
        pool=settings.connect_timeout_seconds,
    )
    limits = httpx.Limits(max_connections=settings.concurrency, max_keepalive_connections=0)
    async with httpx.AsyncClient(
        timeout=timeout,
        limits=limits,
        follow_redirects=False,
        trust_env=False,
        headers={"User-Agent": USER_AGENT},
    ) as client:
        yield client


def _url_for(target: Target, address: IPAddress) -> str:
    host = f"[{address}]" if address.version == 6 else str(address)
    return f"{target.scheme}://{host}:{target.port}{target.path}"


def _snippet(raw: bytes) -> str:
    text = raw.decode("utf-8", errors="replace")
    return "".join(c if c.isprintable() else " " for c in text)[:_SNIPPET_CHARS].strip()


def _judge(status: int, location: str | None, body: bytes, latency_ms: int) -> AttemptResult:
    if 200 <= status < 300:
        return AttemptResult("succeeded", status, None, latency_ms, host_failure=False)
    if 300 <= status < 400:
        error = f"HTTP {status}: redirect to {location or '(no location)'} not followed"
        return AttemptResult("failed", status, error[:500], latency_ms, host_failure=False)
    detail = _snippet(body)
    error = f"HTTP {status}" + (f": {detail}" if detail else "")
    # A 4xx is the receiver's considered answer: the host is up. 5xx and 429 mean it is not well.
    return AttemptResult(
        "failed", status, error, latency_ms, host_failure=status >= 500 or status == 429
    )


async def send(
    client: httpx.AsyncClient,
    target: Target,
    addresses: Sequence[IPAddress],
    body: bytes,
    headers: dict[str, str],
    settings: WebhookSettings,
) -> AttemptResult:
    """POST ``body`` to ``target`` at the first of ``addresses`` that accepts a connection."""
    request_headers = {
        **headers,
        "Host": target.host_header,
        "Content-Type": "application/json",
        "Accept-Encoding": "identity",
    }
    extensions: dict[str, Any] = {}
    if target.scheme == "https" and target.literal is None:
        extensions["sni_hostname"] = target.host
    deadline = settings.connect_timeout_seconds + settings.read_timeout_seconds
    started = time.perf_counter()

    def elapsed_ms() -> int:
        return round((time.perf_counter() - started) * 1000)

    try:
        async with asyncio.timeout(deadline):
            for index, address in enumerate(addresses):
                try:
                    async with client.stream(
                        "POST",
                        _url_for(target, address),
                        content=body,
                        headers=request_headers,
                        extensions=extensions,
                    ) as response:
                        received = await _read_capped(response, settings.max_response_bytes)
                        return _judge(
                            response.status_code,
                            response.headers.get("location"),
                            received,
                            elapsed_ms(),
                        )
                except httpx.ConnectError:
                    if index == len(addresses) - 1:
                        raise
    except (TimeoutError, httpx.TimeoutException):
        return AttemptResult(
            "failed", None, f"timed out after {deadline:g} s", elapsed_ms(), host_failure=True
        )
    except httpx.HTTPError as exc:
        error = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
        return AttemptResult("failed", None, error[:500], elapsed_ms(), host_failure=True)
    raise AssertionError("unreachable: no addresses to send to")  # pragma: no cover


async def _read_capped(response: httpx.Response, limit: int) -> bytes:
    """Up to ``limit`` bytes of the body as sent (no decompression); the rest is dropped."""
    kept = bytearray()
    if limit == 0:
        return bytes(kept)
    if response.is_stream_consumed:  # already in memory (an in-process transport's response)
        return response.content[:limit]
    async for chunk in response.aiter_raw():
        kept += chunk[: limit - len(kept)]
        if len(kept) >= limit:
            break
    return bytes(kept)
