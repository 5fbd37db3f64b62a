"""A fault-injecting TCP proxy to put in front of any dependency (PostgreSQL, Redis, RabbitMQ,
a webhook receiver), so a test can break the network without touching the server.

Faults, each applying to open connections and new ones alike until ``restore()``:

- ``cut()``: close every open connection and refuse new ones (accepted, then reset at once) —
  a partition the client notices;
- ``blackhole()``: keep connections open (and accept new ones) but drop every byte in both
  directions — the client sees a hang, as behind a dead switch. ``restore()`` resets the
  connections that lost bytes, since their streams can no longer be trusted;
- ``latency(seconds)``: every chunk arrives ``seconds`` late in each direction (per direction
  with ``to_server``/``to_client``); chunks stay pipelined, so throughput is kept;
- ``hold()`` / ``release()``: the server's answers are kept back (nothing is lost) until
  ``release()`` — a query runs but its result arrives only then.

Chunks are forwarded in order by one reader and one writer task per direction; the writer waits
until each chunk's due time, so latency delays every chunk without queueing delays behind one
another.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Coroutine
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any


class Mode(StrEnum):
    PASS = "pass"
    CUT = "cut"
    BLACKHOLE = "blackhole"


@dataclass(eq=False)
class _Link:
    """One client connection and, once it is made, the upstream connection it is piped to."""

    client: asyncio.StreamWriter
    upstream: asyncio.StreamWriter | None = None
    tasks: set[asyncio.Task[None]] = field(default_factory=set)
    #: Bytes were dropped on this link: its streams are corrupt and it must not outlive a fault.
    damaged: bool = False

    def abort(self) -> None:
        for writer in (self.client, self.upstream):
            if writer is not None:
                with contextlib.suppress(Exception):
                    writer.transport.abort()
        for task in self.tasks:
            if task is not asyncio.current_task():
                task.cancel()


@dataclass(frozen=True, slots=True)
class ProxyStats:
    accepted: int
    refused: int
    open: int
    bytes_to_server: int
    bytes_to_client: int
    dropped_bytes: int


class FaultProxy:
    """A TCP proxy on 127.0.0.1 in front of ``target_host:target_port``.

    Use ``async with FaultProxy(host, port) as proxy:`` (or ``start()``/``stop()``) and point
    the client at ``proxy.port``. ``listen_port`` fixes the port (0 picks a free one).
    """

    def __init__(self, target_host: str, target_port: int, *, listen_port: int = 0) -> None:
        self.target = (target_host, target_port)
        self.port = listen_port
        self.mode = Mode.PASS
        self._latency_up = 0.0
        self._latency_down = 0.0
        self._released = asyncio.Event()
        self._released.set()
        self._server: asyncio.Server | None = None
        self._links: set[_Link] = set()
        self._accepted = 0
        self._refused = 0
        self._bytes_up = 0
        self._bytes_down = 0
        self._dropped = 0

    async def __aenter__(self) -> FaultProxy:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    @property
    def address(self) -> tuple[str, int]:
        return ("127.0.0.1", self.port)

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", self.port)
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        """Close the listener and every connection."""
        self._released.set()
        if self._server is not None:
            self._server.close()
        for link in list(self._links):
            link.abort()
        tasks = [task for link in self._links for task in link.tasks]
        self._links.clear()
        await asyncio.gather(*tasks, return_exceptions=True)
        if self._server is not None:
            await self._server.wait_closed()
            self._server = None

    def stats(self) -> ProxyStats:
        return ProxyStats(
            self._accepted,
            self._refused,
            len(self._links),
            self._bytes_up,
            self._bytes_down,
            self._dropped,
        )

    # --- faults -----------------------------------------------------------------------------

    def cut(self) -> None:
        """Close every open connection and refuse new ones until ``restore()``."""
        self.mode = Mode.CUT
        for link in list(self._links):
            self._close(link)

    def blackhole(self) -> None:
        """Keep connections open but drop every byte both ways until ``restore()``."""
        self.mode = Mode.BLACKHOLE

    def latency(self, seconds: float, *, to_server: bool = True, to_client: bool = True) -> None:
        """Delay every chunk by ``seconds`` in the chosen directions (0 removes the delay)."""
        if to_server:
            self._latency_up = seconds
        if to_client:
            self._latency_down = seconds

    def hold(self) -> None:
        """Keep the server's answers back (not lost) until ``release()``."""
        self._released.clear()

    def release(self) -> None:
        self._released.set()

    def restore(self) -> None:
        """Undo every fault: pass bytes again with no delay; reset links that lost bytes."""
        self.mode = Mode.PASS
        self._latency_up = self._latency_down = 0.0
        self._released.set()
        for link in list(self._links):
            if link.damaged:
                self._close(link)

    # --- plumbing ---------------------------------------------------------------------------

    def _close(self, link: _Link) -> None:
        self._links.discard(link)
        link.abort()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self.mode is Mode.CUT:
            self._refused += 1
            writer.transport.abort()
            return
        self._accepted += 1
        link = _Link(writer)
        self._links.add(link)
        if self.mode is Mode.BLACKHOLE:
            # No upstream yet: swallow what the client sends until the fault ends.
            link.damaged = True
            self._spawn(link, self._swallow(link, reader))
            return
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.target)
        except OSError:
            self._close(link)
            return
        if link not in self._links:  # cut while connecting
            up_writer.transport.abort()
            return
        link.upstream = up_writer
        self._pipe(link, reader, up_writer, upstream=True)
        self._pipe(link, up_reader, writer, upstream=False)

    def _spawn(self, link: _Link, coroutine: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(coroutine)
        link.tasks.add(task)
        task.add_done_callback(link.tasks.discard)

    async def _swallow(self, link: _Link, reader: asyncio.StreamReader) -> None:
        try:
            while data := await reader.read(65536):
                self._dropped += len(data)
        except (ConnectionError, OSError):
            pass
        finally:
            self._close(link)

    def _pipe(
        self,
        link: _Link,
        src: asyncio.StreamReader,
        dst: asyncio.StreamWriter,
        *,
        upstream: bool,
    ) -> None:
        chunks: asyncio.Queue[tuple[float, bytes] | None] = asyncio.Queue()
        self._spawn(link, self._read(link, src, chunks, upstream=upstream))
        self._spawn(link, self._write(link, dst, chunks, upstream=upstream))

    async def _read(
        self,
        link: _Link,
        src: asyncio.StreamReader,
        chunks: asyncio.Queue[tuple[float, bytes] | None],
        *,
        upstream: bool,
    ) -> None:
        try:
            while data := await src.read(65536):
                if self.mode is Mode.BLACKHOLE:
                    link.damaged = True
                    self._dropped += len(data)
                    continue
                delay = self._latency_up if upstream else self._latency_down
                chunks.put_nowait((time.monotonic() + delay, data))
        except (ConnectionError, OSError):
            pass
        finally:
            chunks.put_nowait(None)

    async def _write(
        self,
        link: _Link,
        dst: asyncio.StreamWriter,
        chunks: asyncio.Queue[tuple[float, bytes] | None],
        *,
        upstream: bool,
    ) -> None:
        try:
            while (item := await chunks.get()) is not None:
                due, data = item
                wait = due - time.monotonic()
                if wait > 0:
                    await asyncio.sleep(wait)
                if not upstream:
                    await self._released.wait()
                if self.mode is Mode.BLACKHOLE:
                    link.damaged = True
                    self._dropped += len(data)
                    continue
                dst.write(data)
                await dst.drain()
                if upstream:
                    self._bytes_up += len(data)
                else:
                    self._bytes_down += len(data)
        except (ConnectionError, OSError):
            pass
        finally:
            # One side closed: close the other too, as a real connection would end.
            self._close(link)


@contextlib.asynccontextmanager
async def fault_proxy(target_host: str, target_port: int) -> AsyncIterator[FaultProxy]:
    """A started ``FaultProxy``, stopped on exit."""
    async with FaultProxy(target_host, target_port) as proxy:
        yield proxy
