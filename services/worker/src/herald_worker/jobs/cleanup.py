"""Retention jobs: published outbox rows, expired idempotency keys, old inbox records, finished
webhook deliveries (the delivery log), and webhook secrets whose overlap after a rotation is over.

Each deletes in batches, one transaction per batch: however large the backlog, no transaction
grows past one batch, and what a batch deleted stays deleted if a later one fails (the next run
carries on from there).
"""

from __future__ import annotations

from datetime import timedelta

from herald_worker.jobs.periodic import JobRun, PeriodicJob

#: Rows one transaction deletes.
BATCH = 10_000


async def _delete_in_batches(
    run: JobRun, table: str, condition: str, *args: object, batch: int
) -> int:
    total = 0
    while not run.stopping:
        async with run.transaction() as conn:
            status: str = await conn.execute(
                f"DELETE FROM {table} WHERE ctid IN "  # noqa: S608 - fixed table and condition
                f"(SELECT ctid FROM {table} WHERE {condition} LIMIT {batch})",
                *args,
            )
        deleted = int(status.split()[-1])
        total += deleted
        if deleted < batch:
            break
    return total


def cleanup_jobs(
    *,
    every: timedelta,
    outbox_retention: timedelta,
    inbox_retention: timedelta,
    delivery_retention: timedelta,
    batch: int = BATCH,
) -> list[PeriodicJob]:
    async def outbox(run: JobRun) -> str:
        n = await _delete_in_batches(
            run, "outbox", "published_at < now() - $1::interval", outbox_retention, batch=batch
        )
        return f"deleted {n} published outbox rows"

    async def idempotency(run: JobRun) -> str:
        n = await _delete_in_batches(run, "idempotency_keys", "expires_at < now()", batch=batch)
        return f"deleted {n} expired idempotency keys"

    async def inbox(run: JobRun) -> str:
        n = await _delete_in_batches(
            run,
            "processed_events",
            "processed_at < now() - $1::interval",
            inbox_retention,
            batch=batch,
        )
        return f"deleted {n} processed-event records"

    async def deliveries(run: JobRun) -> str:
        n = await _delete_in_batches(
            run,
            "webhook_deliveries",
            "status <> 'pending' AND updated_at < now() - $1::interval",
            delivery_retention,
            batch=batch,
        )
        return f"deleted {n} finished webhook deliveries"

    async def previous_secrets(run: JobRun) -> str:
        # Deliveries stop using them at expiry by themselves; this keeps no copy longer.
        async with run.transaction() as conn:
            status: str = await conn.execute(
                "UPDATE webhooks SET previous_secret = NULL, previous_secret_expires_at = NULL "
                "WHERE previous_secret_expires_at <= now()"
            )
        return f"forgot {status.split()[-1]} rotated webhook secrets"

    return [
        PeriodicJob("cleanup.webhook_deliveries", every, deliveries),
        PeriodicJob("cleanup.webhook_previous_secrets", every, previous_secrets),
        PeriodicJob("cleanup.outbox", every, outbox),
        PeriodicJob("cleanup.idempotency_keys", every, idempotency),
        PeriodicJob("cleanup.processed_events", every, inbox),
    ]
