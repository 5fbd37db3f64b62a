"""Publishing events with the delivery guarantees aio-pika does not default to: persistent
messages, the mandatory flag with returns raised, publisher confirms, and a deadline."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Mapping
from datetime import datetime
from typing import Any

import aio_pika
from aio_pika.abc import AbstractExchange

JSON = "application/json"


class UnroutableError(Exception):
    """The broker returned the message: no queue is bound for its routing key."""


class ChannelClosedError(ConnectionError):
    """The channel is closed (a robust one may be reconnecting): the message was not sent.

    aio-pika raises ``ChannelInvalidStateError``, a ``RuntimeError``; as a ``ConnectionError``
    it counts as the broker being away, like every other lost-connection error.
    """


def build_message(
    body: bytes,
    *,
    message_id: uuid.UUID | str,
    event_type: str,
    headers: Mapping[str, Any] | None = None,
    timestamp: datetime | None = None,
) -> aio_pika.Message:
    return aio_pika.Message(
        body,
        content_type=JSON,
        delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
        message_id=str(message_id),
        type=event_type,
        timestamp=timestamp,
        headers=dict(headers or {}),
    )


async def publish_confirmed(
    exchange: AbstractExchange,
    message: aio_pika.Message,
    routing_key: str,
    *,
    timeout: float,  # noqa: ASYNC109 - applied with asyncio.timeout below, over reconnects too
) -> None:
    """Publish and wait for the broker's confirm, within ``timeout`` overall.

    The outer deadline also covers waiting for a reconnecting channel, which aio-pika's own
    publish timeout does not.
    """
    try:
        async with asyncio.timeout(timeout):
            await exchange.publish(message, routing_key, mandatory=True, timeout=timeout)
    except aio_pika.exceptions.PublishError as exc:  # a Basic.Return, not a nack
        raise UnroutableError(routing_key) from exc
    except aio_pika.exceptions.ChannelInvalidStateError as exc:
        raise ChannelClosedError(str(exc)) from exc
