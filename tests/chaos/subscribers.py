"""Webhook subscribers of a scenario: a local receiver (the verifying one the webhook tests use)
registered through the API for one account, and what the ledger asks of it."""

from __future__ import annotations

import uuid
from collections import Counter
from dataclasses import dataclass

from herald_shared.webhooks.matching import matches_any
from tests.chaos.load import Account
from tests.chaos.system import ChaosSystem, Service
from tests.support.webhook_receiver import Behaviour, Receiver


@dataclass(slots=True)
class Subscriber:
    """A receiver subscribed to ``event_types`` of ``account``. ``healthy`` ones must receive
    every event; the others only must not get anything twice beyond their recorded tries."""

    name: str
    account: Account
    webhook_id: uuid.UUID
    receiver: Receiver
    event_types: list[str]
    healthy: bool

    def wants(self, event_type: str, owner: uuid.UUID | None) -> bool:
        return owner == self.account.account_id and matches_any(self.event_types, event_type)

    def receipts(self) -> Counter[uuid.UUID]:
        """How many times each event arrived (verified deliveries only)."""
        return Counter(uuid.UUID(r.event["id"]) for r in self.receiver.events())

    def received_ids(self) -> set[uuid.UUID]:
        return set(self.receipts())


async def subscribe(
    system: ChaosSystem,
    api: Service,
    account: Account,
    *,
    name: str,
    behaviour: Behaviour | None = None,
    healthy: bool = True,
    event_types: list[str] | None = None,
) -> Subscriber:
    """Start a receiver on loopback and register it for ``account`` through the API."""
    receiver = await Receiver(behaviour).start()
    types = event_types or ["post.*"]
    webhook_id, secret = await system.subscribe(api, account, receiver.url, types)
    receiver.secret = secret
    return Subscriber(name, account, webhook_id, receiver, types, healthy)
