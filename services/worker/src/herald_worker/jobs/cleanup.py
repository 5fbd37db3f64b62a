"""Retention jobs: published outbox rows, expired idempotency keys, old inbox records, finished
webhook deliveries (the delivery log)."""

from __future__ import annotations

from datetime import timedelta

from herald_shared.db import Connection
from herald_worker.jobs.periodic import PeriodicJob

_BATCH = 10_000


async def _delete_in_batches(conn: Connection, table: str, condition: str, *args: object) -> int:
    total = 0
    while True:
        status: str = await conn.execute(
            f"DELETE FROM {table} WHERE ctid IN "  # noqa: S608 - fixed table and condition
            f"(SELECT ctid FROM {table} WHERE {condition} LIMIT {_BATCH})",
            *args,
        )
        deleted = int(status.split()[-1])
        total += deleted
        if deleted < _BATCH:
            return total


def cleanup_jobs(
    *,
    every: timedelta,
    outbox_retention: timedelta,
    inbox_retention: timedelta,
    delivery_retention: timedelta,
) -> list[PeriodicJob]:
    async def outbox(conn: Connection) -> str:
        n = await _delete_in_batches(
            conn, "outbox", "published_at < now() - $1::interval", outbox_retention
        )
        return f"deleted {n} published outbox rows"

    async def idempotency(conn: Connection) -> str:
        n = await _delete_in_batches(conn, "idempotency_keys", "expires_at < now()")
        return f"deleted {n} expired idempotency keys"

    async def inbox(conn: Connection) -> str:
        n = await _delete_in_batches(
            conn, "processed_events", "processed_at < now() - $1::interval", inbox_retention
        )
        return f"deleted {n} processed-event records"

    async def deliveries(conn: Connection) -> str:
        n = await _delete_in_batches(
            conn,
            "webhook_deliveries",
            "status <> 'pending' AND updated_at < now() - $1::interval",
            delivery_retention,
        )
        return f"deleted {n} finished webhook deliveries"

    return [
        PeriodicJob("cleanup.webhook_deliveries", every, deliveries),
        PeriodicJob("cleanup.outbox", every, outbox),
        PeriodicJob("cleanup.idempotency_keys", every, idempotency),
        PeriodicJob("cleanup.processed_events", every, inbox),
    ]
