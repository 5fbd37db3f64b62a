"""Connecting to RabbitMQ: a robust connection, retried at start (``connect_robust`` itself
fails at once when the broker is down), or a plain one for a caller that reconnects by itself;
with a channel that reports unroutable messages."""

from __future__ import annotations

from typing import overload

import aio_pika
import structlog
from aio_pika.abc import (
    AbstractChannel,
    AbstractConnection,
    AbstractRobustChannel,
    AbstractRobustConnection,
)
from aiormq.exceptions import AMQPConnectionError

from herald_shared.resilience import RetryPolicy, retry_transient
from herald_shared.settings import AmqpSettings

_log = structlog.get_logger(__name__)

#: Errors meaning the broker cannot be reached or the channel went away.
BROKER_ERRORS: tuple[type[BaseException], ...] = (
    AMQPConnectionError,
    aio_pika.exceptions.AMQPError,
    # A RuntimeError, raised by ack/nack/declare on a channel that closed under us.
    aio_pika.exceptions.ChannelInvalidStateError,
    ConnectionError,
    OSError,
    TimeoutError,
)


async def connect(
    settings: AmqpSettings, *, name: str, attempts: int = 30
) -> AbstractRobustConnection:
    """A robust connection; waits for the broker at start up to ``attempts`` tries."""
    url = settings.url.get_secret_value()

    async def attempt() -> AbstractRobustConnection:
        return await aio_pika.connect_robust(
            url,
            timeout=settings.connect_timeout_seconds,
            reconnect_interval=settings.reconnect_interval_seconds,
            client_properties={"connection_name": name},
        )

    policy = RetryPolicy(
        attempts=attempts, initial_delay=0.2, max_delay=2.0, retry_on=BROKER_ERRORS
    )
    connection = await retry_transient(attempt, policy=policy, log_name="amqp.connect")
    _log.info("connected to RabbitMQ", connection=name)
    return connection


async def connect_once(settings: AmqpSettings, *, name: str) -> AbstractConnection:
    """One attempt at a plain connection: when it is lost, it stays closed (the caller
    reconnects, with its own backoff)."""
    return await aio_pika.connect(
        settings.url.get_secret_value(),
        timeout=settings.connect_timeout_seconds,
        client_properties={"connection_name": name},
    )


@overload
async def open_channel(connection: AbstractRobustConnection) -> AbstractRobustChannel: ...


@overload
async def open_channel(connection: AbstractConnection) -> AbstractChannel: ...


async def open_channel(connection: AbstractConnection) -> AbstractChannel:
    """A channel with publisher confirms that raises on returned (unroutable) messages."""
    return await connection.channel(publisher_confirms=True, on_return_raises=True)
