"""Real local HTTP endpoints for webhook tests: a receiver that verifies and records deliveries,
and a listener that only counts connection attempts.

The receiver is a minimal HTTP/1.1 server on ``asyncio.start_server`` (one request per
connection, as the worker sends them). It checks each delivery's signature with the independent
``standardwebhooks`` package, never with Herald's own code.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from tests.support.waiting import wait_until


@dataclass(frozen=True)
class Reply:
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b"ok"


#: What to answer the n-th request (0-based) with; None means never answer (hang).
Behaviour = Callable[[int], Reply | None]


def always(status: int = 200) -> Behaviour:
    return lambda _: Reply(status)


def fail_first(times: int, status: int = 500) -> Behaviour:
    return lambda n: Reply(status) if n < times else Reply(200)


def hang() -> Behaviour:
    return lambda _: None


@dataclass(frozen=True)
class Received:
    at: float  # time.monotonic() when the body was in
    path: str
    headers: dict[str, str]
    body: bytes
    #: The JSON payload when the signature verified with the receiver's secret; else None.
    payload: dict[str, Any] | None
    error: str | None

    @property
    def verified(self) -> bool:
        return self.payload is not None

    @property
    def event(self) -> dict[str, Any]:
        data: dict[str, Any] = json.loads(self.body)
        return data


class Receiver:
    """An HTTP endpoint on 127.0.0.1 that records every request and answers per ``behaviour``."""

    def __init__(self, behaviour: Behaviour | None = None, *, path: str = "/hooks") -> None:
        self.behaviour = behaviour or always(200)
        self.path = path
        self.secret: str | None = None
        self.requests: list[Received] = []
        self.accepted = 0
        #: Connections open at once, now and at most so far.
        self.open = 0
        self.most_open = 0
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self.port = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}{self.path}"

    async def start(self) -> Receiver:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def stop(self) -> None:
        for writer in list(self._writers):
            writer.transport.abort()
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    def events(self, event_type: str | None = None) -> list[Received]:
        """Verified deliveries (of ``event_type`` when given), in arrival order."""
        return [
            r
            for r in self.requests
            if r.verified and (event_type is None or r.event["type"] == event_type)
        ]

    def find_all(self, aggregate_id: str) -> list[Received]:
        """Verified deliveries of every event about ``aggregate_id``."""
        return [r for r in self.events() if r.event["aggregate_id"] == aggregate_id]

    def find(self, event_type: str, aggregate_id: str) -> list[Received]:
        return [r for r in self.events(event_type) if r.event["aggregate_id"] == aggregate_id]

    async def wait_for(
        self, condition: Callable[[], bool], *, seconds: float = 20.0, message: str = ""
    ) -> None:
        async def met() -> bool:
            return condition()

        await wait_until(met, seconds=seconds, message=message or "the receiver's condition")

    def _verify(self, body: bytes, headers: dict[str, str]) -> tuple[dict[str, Any] | None, str]:
        if self.secret is None:
            return None, "no secret set"
        try:
            payload = Webhook(self.secret).verify(body, headers)
        except WebhookVerificationError as exc:
            return None, str(exc)
        return payload, ""

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.accepted += 1
        self.open += 1
        self.most_open = max(self.most_open, self.open)
        self._writers.add(writer)
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            lines = head.decode("latin-1").split("\r\n")
            _method, path, _version = lines[0].split(" ", 2)
            headers = {}
            for line in lines[1:]:
                if ":" in line:
                    name, value = line.split(":", 1)
                    headers[name.strip().lower()] = value.strip()
            body = await reader.readexactly(int(headers.get("content-length", "0")))
            payload, error = self._verify(body, headers)
            index = len(self.requests)
            self.requests.append(
                Received(time.monotonic(), path, headers, body, payload, error or None)
            )
            reply = self.behaviour(index)
            if reply is None:
                await reader.read()  # hang until the caller gives up or the receiver stops
                return
            extra = "".join(f"{k}: {v}\r\n" for k, v in reply.headers.items())
            writer.write(
                f"HTTP/1.1 {reply.status} X\r\nContent-Length: {len(reply.body)}\r\n"
                f"Connection: close\r\n{extra}\r\n".encode()
                + reply.body
            )
            await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            self.open -= 1
            self._writers.discard(writer)
            with contextlib.suppress(ConnectionError):
                writer.close()


class AcceptCounter:
    """A listening socket on 127.0.0.1 that counts connection attempts and closes them."""

    def __init__(self) -> None:
        self.accepted = 0
        self.port = 0
        self._server: asyncio.Server | None = None

    async def start(self) -> AcceptCounter:
        self._server = await asyncio.start_server(self._count, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    async def _count(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.accepted += 1
        writer.transport.abort()
