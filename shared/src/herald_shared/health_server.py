"""A small HTTP endpoint for consuming services: ``/livez``, ``/readyz`` and ``/metrics``.

Plain asyncio (no framework): each request is one short GET from a probe or a scraper.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable

import structlog
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, generate_latest

_log = structlog.get_logger(__name__)

Check = Callable[[], Awaitable[bool]]
Refresh = Callable[[], Awaitable[None]]


def _response(status: str, body: bytes, content_type: str = "text/plain; charset=utf-8") -> bytes:
    head = (
        f"HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\n"
        f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    )
    return head.encode("ascii") + body


async def serve_health(
    host: str, port: int, *, ready: Check, refresh_metrics: Refresh, stop: asyncio.Event
) -> None:
    """Serve until ``stop`` is set."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            async with asyncio.timeout(5):
                request_line = await reader.readline()
                while (await reader.readline()) not in (b"\r\n", b"\n", b""):
                    pass
            parts = request_line.decode("latin-1").split()
            path = parts[1] if len(parts) > 1 else ""
            if path == "/livez":
                reply = _response("200 OK", b"ok\n")
            elif path == "/readyz":
                ok = await ready()
                reply = _response(
                    "200 OK" if ok else "503 Service Unavailable", b"ok\n" if ok else b"not ready\n"
                )
            elif path == "/metrics":
                await refresh_metrics()
                reply = _response("200 OK", generate_latest(REGISTRY), CONTENT_TYPE_LATEST)
            else:
                reply = _response("404 Not Found", b"not found\n")
            writer.write(reply)
            await writer.drain()
        except (TimeoutError, ConnectionError):
            pass
        finally:
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()

    try:
        server = await asyncio.start_server(handle, host, port)
    except OSError as exc:
        # Consuming matters more than being probed: keep running, loudly.
        _log.error("health endpoint could not listen", host=host, port=port, error=repr(exc))
        await stop.wait()
        return
    bound = server.sockets[0].getsockname()[1]
    _log.info("health endpoint listening", host=host, port=bound)
    async with server:
        await stop.wait()
