"""Each private server starts from the installed binaries, serves, survives SIGKILL and a
restart on the same port (clients reconnect, durable data stays), pauses and resumes, and leaves
no process or directory behind."""

from __future__ import annotations

import asyncio
import os
import uuid

import aio_pika
import asyncpg
import pytest
import redis.asyncio as redis
from redis.exceptions import RedisError

from tests.support.network import port_is_free
from tests.support.servers import (
    PrivatePgBouncer,
    PrivatePostgres,
    PrivateRabbitMQ,
    PrivateRedis,
    PrivateRedisCluster,
)
from tests.support.waiting import wait_until

SHARED_PORTS = (5432, 6379, 5672)


def assert_gone(pid: int | None, *paths: os.PathLike[str]) -> None:
    assert pid is not None
    try:
        os.killpg(pid, 0)
    except ProcessLookupError:
        pass
    else:
        raise AssertionError(f"process group {pid} is still alive")
    for path in paths:
        assert not os.path.exists(path), f"{path} was left behind"


async def test_private_postgres_survives_sigkill_and_restarts_on_its_port() -> None:
    server = await PrivatePostgres.create()
    try:
        assert server.port not in SHARED_PORTS
        pool = await asyncpg.create_pool(server.dsn(), min_size=1, max_size=2)
        try:
            await pool.execute("CREATE TABLE kept (n int)")
            await pool.execute("INSERT INTO kept VALUES (1)")
            assert await pool.fetchval("SHOW wal_level") == "replica"
            await server.kill()
            assert not server.running
            # Whatever asyncpg says of a server gone under its connection: refused, closed, or
            # (when the query races the socket's end) its protocol out of step.
            broken = (
                OSError,
                asyncpg.PostgresError,
                asyncpg.InterfaceError,
                asyncpg.exceptions.InternalClientError,
            )
            with pytest.raises(broken):
                await pool.fetchval("SELECT 1")
            await server.restart()
            # The same pool reconnects to the same port; the committed row survived the crash.
            assert await pool.fetchval("SELECT n FROM kept") == 1
        finally:
            await pool.close()
        server.pause()
        with pytest.raises(TimeoutError):
            await asyncpg.connect(server.dsn(), timeout=0.5)
        server.resume()
        conn = await server.connect()
        try:
            assert await conn.fetchval("SELECT 1") == 1
        finally:
            await conn.close()
    finally:
        pid, root = server.process.pid, server.root
        await server.close()
    assert_gone(pid, root)


async def test_a_streaming_replica_lags_by_its_apply_delay_then_catches_up() -> None:
    primary = await PrivatePostgres.create()
    try:
        await primary.execute("CREATE TABLE marks (n int)")
        replica = await primary.create_replica(apply_delay_seconds=1.5)
        # The table above was copied by the base backup; what follows arrives by streaming.
        await primary.execute("INSERT INTO marks VALUES (1)")
        lsn = await primary.current_lsn()
        conn = await replica.connect()
        try:
            assert await conn.fetchval("SELECT pg_is_in_recovery()")
            assert await conn.fetchval("SELECT count(*) FROM marks") == 0, "no lag at all"
            assert await replica.lag_bytes(primary) > 0
            await replica.wait_replayed(lsn, seconds=15)
            assert await conn.fetchval("SELECT count(*) FROM marks") == 1
            delay = await replica.replay_delay_seconds()
            assert delay is not None
            assert delay >= 1.5
        finally:
            await conn.close()
    finally:
        roots = [primary.root, *(r.root for r in primary.replicas)]
        await primary.close()
    for root in roots:
        assert not root.exists()


async def test_pgbouncer_pools_transactions_in_front_of_a_private_postgres() -> None:
    server = await PrivatePostgres.create()
    try:
        bouncer = await PrivatePgBouncer.create("127.0.0.1", server.port, pool_size=2)
        try:
            pool = await asyncpg.create_pool(
                bouncer.dsn(),
                min_size=5,
                max_size=5,
                statement_cache_size=0,
                server_settings={"application_name": "test", "statement_timeout": "1000"},
            )
            try:
                backends = await asyncio.gather(
                    *(pool.fetchval("SELECT pg_backend_pid()") for _ in range(20))
                )
            finally:
                await pool.close()
            # Five clients, at most two server connections behind them: transaction pooling.
            assert 1 <= len(set(backends)) <= 2
            pools = await bouncer.show("pools")
            modes = {row["pool_mode"] for row in pools if row["database"] == "postgres"}
            assert modes == {"transaction"}
            await server.kill()
            await server.restart()
            conn = await asyncpg.connect(bouncer.dsn(), statement_cache_size=0)
            try:
                assert await conn.fetchval("SELECT 1") == 1
            finally:
                await conn.close()
        finally:
            pid, root = bouncer.process.pid, bouncer.root
            await bouncer.close()
        assert_gone(pid, root)
    finally:
        await server.close()


async def test_private_redis_comes_back_empty_on_its_port_after_sigkill() -> None:
    server = await PrivateRedis.create()
    client = redis.Redis.from_url(server.url, socket_timeout=1)
    try:
        assert server.port not in SHARED_PORTS
        await client.set("k", "v")
        await server.kill()
        with pytest.raises((RedisError, OSError)):
            await client.get("k")
        await server.restart()
        assert await client.get("k") is None, "a cache node restarts without persistence"
        await client.set("k", "again")
        server.pause()
        with pytest.raises((RedisError, OSError)):
            await client.get("k")
        server.resume()
        await client.aclose()
        client = redis.Redis.from_url(server.url, socket_timeout=1)
        assert await client.get("k") == b"again"
    finally:
        await client.aclose()
        pid, root = server.process.pid, server.root
        await server.close()
    assert_gone(pid, root)


async def test_a_private_redis_cluster_spreads_slots_over_three_masters() -> None:
    cluster = await PrivateRedisCluster.create()
    client = cluster.client()
    try:
        keys = [f"k{n}" for n in range(30)]
        for key in keys:
            await client.set(key, key)
        masters = {getattr(client.get_node_from_key(key), "port", None) for key in keys}
        assert masters == {node.port for node in cluster.nodes}
        assert [await client.get(key) for key in keys] == [k.encode() for k in keys]
    finally:
        await client.aclose()
        pids = [node.process.pid for node in cluster.nodes]
        root = cluster.root
        await cluster.close()
    for pid in pids:
        assert_gone(pid)
    assert not root.exists()


@pytest.mark.slow
async def test_private_rabbitmq_keeps_durable_messages_across_sigkill() -> None:
    node = await PrivateRabbitMQ.create()
    try:
        assert node.port not in SHARED_PORTS
        assert node.node_name.startswith("rabbit-chaos-")
        queue = f"kept.{uuid.uuid4().hex[:6]}"
        await node.round_trip(queue)
        connection = await node.connect()
        try:
            channel = await connection.channel()
            await channel.default_exchange.publish(
                aio_pika.Message(b"kept", delivery_mode=aio_pika.DeliveryMode.PERSISTENT), queue
            )
        finally:
            await connection.close()
        await node.settled()
        await node.kill()
        assert port_is_free(node.port)
        await node.restart()
        # After a restart the quorum queue needs a moment to elect its leader again.
        kept: list[bytes] = []

        async def got_it() -> bool:
            connection = await aio_pika.connect(node.url)
            try:
                channel = await connection.channel()
                declared = await channel.declare_queue(queue, passive=True)
                message = await declared.get(fail=False, timeout=2)
                if message is not None:
                    kept.append(message.body)
                    await message.ack()
            finally:
                await connection.close()
            return bool(kept)

        await wait_until(got_it, seconds=30, interval=0.2, message="the message was lost")
        assert kept == [b"kept"]
    finally:
        pid, root = node.process.pid, node.root
        await node.close()
    assert_gone(pid, root)
