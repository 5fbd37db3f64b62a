"""A TCP proxy in front of PostgreSQL that counts the client's round trips on the wire.

Each round trip of the PostgreSQL protocol ends with the client waiting for the server's
``ReadyForQuery``, which answers exactly one ``Sync`` (extended protocol: Parse/Bind/Execute
then Sync) or one ``Query`` (simple protocol) message. Counting the client's ``Sync`` and
``Query`` messages therefore counts round trips, whatever the driver does above the socket
(prepared statements, type introspection, transactions), without trusting the driver's own
bookkeeping.
"""

from __future__ import annotations

import asyncio
import contextlib
import struct
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

# Messages before the startup message carry no type byte: an SSL or GSSAPI encryption request.
_ENCRYPTION_REQUESTS = {80877103, 80877104}


class _ClientStream:
    """Splits the client's byte stream into messages and counts the round-trip ends."""

    def __init__(self, counter: RoundTripCounter) -> None:
        self._counter = counter
        self._buffer = b""
        self._started = False

    def feed(self, data: bytes) -> None:
        self._buffer += data
        while True:
            if not self._started:
                if len(self._buffer) < 8:
                    return
                length, code = struct.unpack("!ii", self._buffer[:8])
                if len(self._buffer) < length:
                    return
                self._buffer = self._buffer[length:]
                self._started = code not in _ENCRYPTION_REQUESTS
                continue
            if len(self._buffer) < 5:
                return
            kind = self._buffer[:1]
            (length,) = struct.unpack("!i", self._buffer[1:5])
            if len(self._buffer) < 1 + length:
                return
            self._buffer = self._buffer[1 + length :]
            if kind in (b"S", b"Q"):
                self._counter.round_trips += 1
                self._counter.messages.append(kind.decode())


class RoundTripCounter:
    """Proxies ``127.0.0.1:<port>`` to the server; ``round_trips`` counts since the last
    ``reset()``."""

    def __init__(self, target_host: str, target_port: int) -> None:
        self._target = (target_host, target_port)
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._writers: set[asyncio.StreamWriter] = set()
        self.round_trips = 0
        self.messages: list[str] = []

    @property
    def port(self) -> int:
        assert self._server is not None
        port: int = self._server.sockets[0].getsockname()[1]
        return port

    def reset(self) -> None:
        self.round_trips = 0
        self.messages.clear()

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
        for writer in self._writers:
            writer.transport.abort()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._server is not None:
            await self._server.wait_closed()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection(*self._target)
        self._writers.update((writer, up_writer))
        stream = _ClientStream(self)
        for source, sink, seen in ((reader, up_writer, stream), (up_reader, writer, None)):
            task = asyncio.create_task(self._pipe(source, sink, seen))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _pipe(
        self, source: asyncio.StreamReader, sink: asyncio.StreamWriter, seen: _ClientStream | None
    ) -> None:
        with contextlib.suppress(ConnectionError, asyncio.CancelledError):
            while data := await source.read(65536):
                if seen is not None:
                    seen.feed(data)
                sink.write(data)
                await sink.drain()
        sink.transport.abort()


@asynccontextmanager
async def round_trip_counter(target_host: str, target_port: int) -> AsyncIterator[RoundTripCounter]:
    counter = RoundTripCounter(target_host, target_port)
    await counter.start()
    try:
        yield counter
    finally:
        await counter.stop()
