"""SQL for webhooks and their delivery log, always scoped to the owning account.

Every statement takes the account id, so a webhook of another account is indistinguishable from
one that does not exist. Lists are keyset-paginated on (created_at, id), newest first, over the
indexes of migration 0004.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import asyncpg

from herald_api.paging.cursors import Position
from herald_shared.db import Connection

WEBHOOK_COLUMNS = (
    "id, url, event_types, description, enabled, disabled_reason, consecutive_failures, "
    "failing_since, created_at, updated_at"
)
DELIVERY_COLUMNS = (
    "id, event_id, event_type, status, attempts, last_status_code, last_error, last_latency_ms, "
    "CASE WHEN status = 'pending' THEN next_attempt_at END AS next_attempt_at, "
    "created_at, updated_at"
)
_LOCK_CLASS = 0x5748  # "WH": serialises an account's webhook creations (the per-account limit)


async def lock_account_webhooks(conn: Connection, account_id: uuid.UUID) -> None:
    """Inside a transaction: one creation at a time per account, so the limit holds."""
    await conn.execute(
        "SELECT pg_advisory_xact_lock($1, hashtext($2))", _LOCK_CLASS, str(account_id)
    )


async def count_webhooks(conn: Connection, account_id: uuid.UUID) -> int:
    count: int = await conn.fetchval(
        "SELECT count(*) FROM webhooks WHERE account_id = $1", account_id
    )
    return count


async def insert_webhook(
    conn: Connection,
    *,
    account_id: uuid.UUID,
    url: str,
    event_types: list[str],
    description: str,
    secret: str,
) -> asyncpg.Record:
    row = await conn.fetchrow(
        f"""
        INSERT INTO webhooks (id, account_id, url, event_types, description, secret)
        VALUES ($1, $2, $3, $4, $5, $6)
        RETURNING {WEBHOOK_COLUMNS}
        """,  # noqa: S608 - a constant column list
        uuid.uuid4(),
        account_id,
        url,
        event_types,
        description,
        secret,
    )
    assert row is not None
    return row


async def fetch_webhook(
    conn: Connection, account_id: uuid.UUID, webhook_id: uuid.UUID
) -> asyncpg.Record | None:
    return await conn.fetchrow(
        f"SELECT {WEBHOOK_COLUMNS} FROM webhooks WHERE id = $1 AND account_id = $2",  # noqa: S608
        webhook_id,
        account_id,
    )


def _keyset(conditions: list[str], args: list[Any], after: Position | None) -> str:
    """The WHERE clause, with the page's start when there is one. Separate statements with and
    without the cursor keep (created_at, id) an index condition under generic plans."""
    if after is not None:
        args += [after.created_at, after.id]
        conditions.append(f"(created_at, id) < (${len(args) - 1}, ${len(args)})")
    return " AND ".join(conditions)


async def list_webhooks(
    conn: Connection, account_id: uuid.UUID, limit: int, after: Position | None
) -> list[asyncpg.Record]:
    """Up to ``limit + 1`` rows, newest first: the extra one tells whether another page exists."""
    args: list[Any] = [account_id]
    where = _keyset(["account_id = $1"], args, after)
    args.append(limit + 1)
    rows = await conn.fetch(
        f"SELECT {WEBHOOK_COLUMNS} FROM webhooks WHERE {where} "  # noqa: S608
        f"ORDER BY created_at DESC, id DESC LIMIT ${len(args)}",
        *args,
    )
    return list(rows)


async def update_webhook(
    conn: Connection, account_id: uuid.UUID, webhook_id: uuid.UUID, changes: dict[str, Any]
) -> asyncpg.Record | None:
    """Apply ``changes`` (url, event_types, description, enabled); None when not the account's.

    Re-enabling clears the failure record; disabling cancels the deliveries still pending.
    """
    args: list[Any] = [webhook_id, account_id]
    assignments = ["updated_at = now()"]
    for column in ("url", "event_types", "description"):
        if column in changes:
            args.append(changes[column])
            assignments.append(f"{column} = ${len(args)}")
    if "enabled" in changes:
        args.append(changes["enabled"])
        flag = f"${len(args)}::boolean"
        assignments += [
            f"enabled = {flag}",
            # On the right of SET a column name means the old value: only a disabled webhook
            # being turned back on loses its failure record.
            f"disabled_reason = CASE WHEN {flag} THEN NULL ELSE disabled_reason END",
            f"consecutive_failures = CASE WHEN {flag} AND NOT enabled THEN 0 "
            "ELSE consecutive_failures END",
            f"failing_since = CASE WHEN {flag} AND NOT enabled THEN NULL ELSE failing_since END",
        ]
    row = await conn.fetchrow(
        f"""
        UPDATE webhooks SET {", ".join(assignments)}
        WHERE id = $1 AND account_id = $2
        RETURNING {WEBHOOK_COLUMNS}
        """,  # noqa: S608 - column names come from the fixed list above
        *args,
    )
    if row is not None and not row["enabled"]:
        await cancel_pending(conn, webhook_id, "the webhook was disabled")
    return row


async def cancel_pending(conn: Connection, webhook_id: uuid.UUID, reason: str) -> None:
    await conn.execute(
        """
        UPDATE webhook_deliveries SET status = 'cancelled', last_error = $2, updated_at = now()
        WHERE webhook_id = $1 AND status = 'pending'
        """,
        webhook_id,
        reason,
    )


async def delete_webhook(conn: Connection, account_id: uuid.UUID, webhook_id: uuid.UUID) -> bool:
    """Delete the webhook and (by cascade) its delivery log; False when not the account's."""
    deleted = await conn.fetchval(
        "DELETE FROM webhooks WHERE id = $1 AND account_id = $2 RETURNING true",
        webhook_id,
        account_id,
    )
    return bool(deleted)


@dataclass(frozen=True, slots=True)
class Rotated:
    """A rotation done: until when the previous secret signs too (None: not at all)."""

    previous_secret_expires_at: datetime | None


async def replace_secret(
    conn: Connection,
    account_id: uuid.UUID,
    webhook_id: uuid.UUID,
    secret: str,
    *,
    overlap: timedelta,
) -> Rotated | None:
    """Sign from now on with ``secret``, and with the current one too for ``overlap`` (none
    when zero); None when the webhook is not the account's.

    Rotating again within an overlap ends the older secret's at once: two secrets sign at most.
    """
    row = await conn.fetchrow(
        """
        UPDATE webhooks
        SET previous_secret = CASE WHEN $4::interval > interval '0' THEN secret END,
            previous_secret_expires_at =
                CASE WHEN $4::interval > interval '0' THEN now() + $4::interval END,
            secret = $3,
            updated_at = now()
        WHERE id = $1 AND account_id = $2
        RETURNING previous_secret_expires_at
        """,
        webhook_id,
        account_id,
        secret,
        overlap,
    )
    return None if row is None else Rotated(row["previous_secret_expires_at"])


async def list_deliveries(
    conn: Connection,
    webhook_id: uuid.UUID,
    limit: int,
    after: Position | None,
    status: str | None,
) -> list[asyncpg.Record]:
    """A page of the webhook's delivery log, newest first (up to ``limit + 1`` rows)."""
    args: list[Any] = [webhook_id]
    conditions = ["webhook_id = $1"]
    if status is not None:
        args.append(status)
        conditions.append(f"status = ${len(args)}")
    where = _keyset(conditions, args, after)
    args.append(limit + 1)
    rows = await conn.fetch(
        f"SELECT {DELIVERY_COLUMNS} FROM webhook_deliveries WHERE {where} "  # noqa: S608
        f"ORDER BY created_at DESC, id DESC LIMIT ${len(args)}",
        *args,
    )
    return list(rows)
