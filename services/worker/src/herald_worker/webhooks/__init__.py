"""Webhook delivery: fan events out to subscriptions, then deliver them, signed, with retries.

``fanout.fan_out`` is a handler of the worker's table; ``run_deliveries`` is a background job
of the worker process. Between the two sits the ``webhook_deliveries`` table, which is
also the delivery log clients read through the API.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from herald_shared.webhooks.settings import WebhookSettings
from herald_shared.webhooks.ssrf import Resolver, system_resolver
from herald_worker.deps import Deps
from herald_worker.webhooks.delivery import DeliveryLoop
from herald_worker.webhooks.sender import create_http_client

__all__ = ["run_deliveries"]


async def run_deliveries(
    deps: Deps,
    settings: WebhookSettings,
    stop: asyncio.Event,
    *,
    resolver: Resolver = system_resolver,
    events_committed: Callable[[], None] | None = None,
) -> None:
    """Deliver due webhook deliveries until ``stop`` is set (a background job of ``serve``);
    ``events_committed`` is called after a commit that wrote outbox rows."""
    async with create_http_client(settings) as client:
        loop = DeliveryLoop(
            deps.db, settings, client, resolver=resolver, events_committed=events_committed
        )
        await loop.run(stop)
