"""The fault proxy in front of a real server: bytes pass, ``cut`` closes and refuses,
``blackhole`` hangs both ways, ``latency`` delays each way, ``hold`` keeps answers back, and
``restore`` brings every connection path back."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator

import pytest
import redis.asyncio as redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError

from tests.support.faults import FaultProxy
from tests.support.servers import PrivateRedis


async def _echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    with contextlib.suppress(ConnectionError):
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    writer.close()


@pytest.fixture
async def proxy() -> AsyncIterator[FaultProxy]:
    server = await asyncio.start_server(_echo, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        async with FaultProxy("127.0.0.1", port) as started:
            yield started
    finally:
        server.close()
        await server.wait_closed()


async def echo_once(proxy: FaultProxy, data: bytes = b"ping", *, wait: float = 2.0) -> bytes:
    reader, writer = await asyncio.open_connection(*proxy.address)
    try:
        writer.write(data)
        await writer.drain()
        async with asyncio.timeout(wait):
            return await reader.readexactly(len(data))
    finally:
        writer.transport.abort()


async def test_bytes_pass_both_ways(proxy: FaultProxy) -> None:
    assert await echo_once(proxy, b"x" * 200_000) == b"x" * 200_000
    assert proxy.stats().bytes_to_server == proxy.stats().bytes_to_client == 200_000


async def test_cut_closes_open_connections_and_refuses_new_ones(proxy: FaultProxy) -> None:
    reader, writer = await asyncio.open_connection(*proxy.address)
    writer.write(b"a")
    assert await reader.readexactly(1) == b"a"
    proxy.cut()
    with pytest.raises((asyncio.IncompleteReadError, ConnectionError)):
        async with asyncio.timeout(2):
            await reader.readexactly(1)
    writer.transport.abort()
    with pytest.raises((asyncio.IncompleteReadError, ConnectionError)):
        await echo_once(proxy)
    assert proxy.stats().refused == 1
    proxy.restore()
    assert await echo_once(proxy) == b"ping"


async def test_blackhole_hangs_both_ways_until_restored(proxy: FaultProxy) -> None:
    reader, writer = await asyncio.open_connection(*proxy.address)
    proxy.blackhole()
    writer.write(b"lost")
    with pytest.raises(TimeoutError):
        async with asyncio.timeout(0.5):
            await reader.readexactly(4)
    # A new connection is accepted and hangs the same way.
    with pytest.raises(TimeoutError):
        await echo_once(proxy, wait=0.5)
    assert proxy.stats().dropped_bytes >= 8
    proxy.restore()
    # The connection that lost bytes is reset; a new one works.
    with pytest.raises((asyncio.IncompleteReadError, ConnectionError)):
        async with asyncio.timeout(2):
            await reader.readexactly(4)
    writer.transport.abort()
    assert await echo_once(proxy) == b"ping"


async def test_latency_delays_every_chunk_each_way_without_queueing(proxy: FaultProxy) -> None:
    proxy.latency(0.2)
    reader, writer = await asyncio.open_connection(*proxy.address)
    try:
        started = time.monotonic()
        for _ in range(5):  # five chunks sent at once arrive together, 0.4 s later
            writer.write(b"c")
            await writer.drain()
            await asyncio.sleep(0.01)
        await reader.readexactly(5)
        elapsed = time.monotonic() - started
        assert 0.4 <= elapsed < 0.4 + 0.5, elapsed
        proxy.latency(0.2, to_client=False)
        proxy.latency(0, to_server=False)
        started = time.monotonic()
        writer.write(b"d")
        await reader.readexactly(1)
        assert 0.2 <= time.monotonic() - started < 0.4
    finally:
        writer.transport.abort()
    proxy.restore()
    started = time.monotonic()
    await echo_once(proxy)
    assert time.monotonic() - started < 0.2


async def test_hold_keeps_answers_back_without_losing_them(proxy: FaultProxy) -> None:
    reader, writer = await asyncio.open_connection(*proxy.address)
    try:
        proxy.hold()
        writer.write(b"kept")
        with pytest.raises(TimeoutError):
            async with asyncio.timeout(0.3):
                await reader.readexactly(4)
        proxy.release()
        async with asyncio.timeout(2):
            assert await reader.readexactly(4) == b"kept"
    finally:
        writer.transport.abort()


async def test_a_real_client_reconnects_through_the_proxy_after_a_cut() -> None:
    server = await PrivateRedis.create()
    try:
        async with FaultProxy("127.0.0.1", server.port) as proxy:
            client = redis.Redis(
                port=proxy.port,
                socket_timeout=0.5,
                socket_connect_timeout=0.5,
                retry=Retry(NoBackoff(), 0),  # the client's own retries would hide the fault
            )
            try:
                await client.set("k", "v")
                proxy.cut()
                with pytest.raises((RedisError, OSError)):
                    await client.get("k")
                proxy.blackhole()
                with pytest.raises((RedisError, OSError)):
                    await client.get("k")
                proxy.restore()
                assert await client.get("k") == b"v"
            finally:
                await client.aclose()
    finally:
        await server.close()
