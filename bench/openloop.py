"""An open-loop HTTP writer: POSTs sent at a fixed rate whatever the responses do.

Request ``i`` is due at ``start + i / rate``; it waits for a free keep-alive connection when
all are busy, and its latency is measured from the time it was due (so a slow server shows up
as latency instead of a lower offered rate — no coordinated omission). A raw HTTP/1.1 client
over asyncio streams keeps the writer's own CPU cost small next to the server's.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Sequence
from dataclasses import dataclass, field


@dataclass(slots=True)
class WriterResult:
    offered_rate: float
    sent: int = 0
    #: (due time, seconds from due to response, status, created post id or "").
    responses: list[tuple[float, float, int, str]] = field(default_factory=list)
    errors: int = 0
    #: Requests not sent because the server was too far behind (see ``write_open_loop``).
    abandoned: int = 0
    wall_seconds: float = 0.0
    #: Seconds the writing was planned to take.
    planned_seconds: float = 0.0

    @property
    def created_ids(self) -> list[str]:
        return [post_id for _, _, status, post_id in self.responses if status == 201 and post_id]

    @property
    def achieved_rate(self) -> float:
        """Posts created per second of the writing's wall time (at least the planned time)."""
        seconds = max(self.wall_seconds, self.planned_seconds)
        return len(self.created_ids) / seconds if seconds else 0.0


class _Connection:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    async def exchange(self, request: bytes) -> tuple[int, bytes]:
        self.writer.write(request)
        head = await self.reader.readuntil(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split(" ", 2)[1])
        length = 0
        for line in lines[1:]:
            name, _, value = line.partition(":")
            if name.strip().lower() == "content-length":
                length = int(value)
        body = await self.reader.readexactly(length) if length else b""
        return status, body

    def close(self) -> None:
        self.writer.close()


def _request(port: int, token: str, body: bytes, key: str) -> bytes:
    return (
        f"POST /v1/posts HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
        f"Authorization: Bearer {token}\r\nContent-Type: application/json\r\n"
        f"Idempotency-Key: {key}\r\nContent-Length: {len(body)}\r\n\r\n"
    ).encode() + body


async def write_open_loop(
    port: int,
    token: str | Sequence[str],
    *,
    rate: float,
    seconds: float,
    connections: int = 64,
    nonce: str,
    give_up_after: float = 1.25,
) -> WriterResult:
    """POST ``rate`` posts per second for ``seconds`` to the API on loopback ``port``, with
    ``token`` (or with several in turn: the posts of as many accounts).

    A request still waiting for a connection ``give_up_after`` x ``seconds`` after the start is
    abandoned (counted, not sent): past that the server is clearly not keeping up, and waiting
    for a backlog of queued requests would only make an over-capacity rate take minutes.
    """
    body = json.dumps(
        {"title": "Pipeline post", "body": "Open-loop writer.", "status": "published"}
    ).encode()
    idle: asyncio.Queue[_Connection] = asyncio.Queue()
    for _ in range(connections):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        idle.put_nowait(_Connection(reader, writer))
    tokens = [token] if isinstance(token, str) else list(token)
    result = WriterResult(offered_rate=rate, planned_seconds=seconds)
    total = int(rate * seconds)
    loop = asyncio.get_running_loop()
    start = loop.time() + 0.05
    give_up = start + seconds * give_up_after

    async def send(i: int, due: float) -> None:
        conn = await idle.get()
        if loop.time() > give_up:
            idle.put_nowait(conn)
            result.abandoned += 1
            return
        try:
            request = _request(port, tokens[i % len(tokens)], body, f"{nonce}-{rate}-{i}")
            status, raw = await conn.exchange(request)
        except (OSError, asyncio.IncompleteReadError, ValueError):
            result.errors += 1
            conn.close()
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            idle.put_nowait(_Connection(reader, writer))
            return
        idle.put_nowait(conn)
        post_id = json.loads(raw).get("id", "") if status == 201 else ""
        result.responses.append((due, loop.time() - due, status, post_id))

    tasks: list[asyncio.Task[None]] = []
    for i in range(total):
        due = start + i / rate
        if loop.time() > give_up:
            result.abandoned += total - i
            break
        delay = due - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(send(i, due)))
        result.sent += 1
    await asyncio.gather(*tasks)
    # From the first request's due time to the last response.
    result.wall_seconds = loop.time() - start
    while not idle.empty():
        idle.get_nowait().close()
    return result
