"""SQL of webhook deliveries: creating them for the webhooks an event concerns (fan-out),
claiming due ones under a lease, recording each outcome, and disabling an endpoint that has
failed for too long.

A claim moves ``next_attempt_at`` to the end of the lease: other workers skip the row until
then (``FOR UPDATE SKIP LOCKED`` keeps concurrent claims apart), and if this worker dies the row
comes due again by itself. The lease end doubles as the claim's token: an outcome is recorded
only while ``next_attempt_at`` still holds it, so a worker that lost its lease cannot overwrite
what the next one recorded.
"""

from __future__ import annotations

import enum
import json
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from urllib.parse import urlsplit

import asyncpg

from herald_shared.db import Connection
from herald_shared.events import EventEnvelope, WebhookDisabled
from herald_shared.outbox import enqueue_event
from herald_shared.tracecontext import current_trace_headers

#: Due rows, oldest first, skipping rows other workers hold and webhooks whose destination is
#: full; at most ``cap`` rows per webhook (what its destination can take now), ``limit`` in all.
#: Candidates are over-fetched so that one webhook's backlog cannot hide the others' rows.
_CLAIM = """
    WITH due AS MATERIALIZED (
        SELECT id, webhook_id, next_attempt_at FROM webhook_deliveries
        WHERE status = 'pending' AND next_attempt_at <= now()
          AND webhook_id <> ALL($3::uuid[])
        ORDER BY next_attempt_at
        LIMIT $4
        FOR UPDATE SKIP LOCKED
    ), picked AS (
        SELECT ranked.id FROM (
            SELECT due.id, due.next_attempt_at,
                   row_number() OVER (
                       PARTITION BY due.webhook_id ORDER BY due.next_attempt_at
                   ) AS n,
                   coalesce(caps.remaining, $7) AS cap
            FROM due
            LEFT JOIN unnest($5::uuid[], $6::integer[]) AS caps (webhook_id, remaining)
                ON caps.webhook_id = due.webhook_id
        ) AS ranked
        WHERE ranked.n <= ranked.cap
        ORDER BY ranked.next_attempt_at
        LIMIT $1
    )
    UPDATE webhook_deliveries AS d
    SET next_attempt_at = now() + $2::interval
    FROM picked, webhooks AS w
    WHERE d.id = picked.id AND w.id = d.webhook_id
    RETURNING d.id, d.webhook_id, d.event_id, d.event_type, d.payload::text AS payload,
              d.attempts, d.next_attempt_at AS lease, w.url, w.secret, w.enabled,
              CASE WHEN w.previous_secret_expires_at > now() THEN w.previous_secret END
                  AS previous_secret,
              d.trace_headers::text AS trace_headers
"""
_OVERFETCH = 4


@dataclass(frozen=True, slots=True)
class ClaimedDelivery:
    id: uuid.UUID
    webhook_id: uuid.UUID
    event_id: uuid.UUID
    event_type: str
    payload: str
    #: Attempts made before this one.
    attempts: int
    #: The end of this worker's lease, and its token.
    lease: datetime
    url: str
    secret: str = field(repr=False)
    enabled: bool
    #: The W3C trace context of the event's request, as JSON.
    trace_headers: str = "{}"
    #: The secret a rotation replaced, while its overlap lasts: it signs too.
    previous_secret: str | None = field(default=None, repr=False)


@dataclass(frozen=True, slots=True)
class Attempt:
    """What one attempt found, as the delivery log shows it."""

    status_code: int | None
    error: str | None
    latency_ms: int | None


@dataclass(frozen=True, slots=True)
class Subscription:
    webhook_id: uuid.UUID
    #: Patterns such as ``post.*`` (see ``herald_shared.webhooks.matching``).
    event_types: list[str]


async def subscriptions(conn: Connection, account_id: uuid.UUID) -> list[Subscription]:
    """The enabled webhooks of ``account_id``, with the event types each one wants."""
    rows = await conn.fetch(
        "SELECT id, event_types FROM webhooks WHERE account_id = $1 AND enabled", account_id
    )
    return [Subscription(row["id"], list(row["event_types"])) for row in rows]


async def create_deliveries(
    conn: Connection,
    webhook_ids: Sequence[uuid.UUID],
    *,
    event_id: uuid.UUID,
    event_type: str,
    payload: str,
    trace_headers: Mapping[str, str],
) -> None:
    """One pending delivery of ``payload`` per webhook; a webhook that has this event already
    keeps the delivery it has (so creating them twice is harmless)."""
    await conn.execute(
        """
        INSERT INTO webhook_deliveries
            (id, webhook_id, event_id, event_type, payload, trace_headers)
        SELECT d.id, d.webhook_id, $3, $4, $5::jsonb, $6::jsonb
        FROM unnest($1::uuid[], $2::uuid[]) AS d (id, webhook_id)
        ON CONFLICT (webhook_id, event_id) DO NOTHING
        """,
        [uuid.uuid4() for _ in webhook_ids],
        list(webhook_ids),
        event_id,
        event_type,
        payload,
        json.dumps(dict(trace_headers)),
    )


async def claim_due(
    conn: Connection,
    limit: int,
    lease: timedelta,
    *,
    room: Mapping[uuid.UUID, int] | None = None,
    per_webhook: int | None = None,
) -> list[ClaimedDelivery]:
    """Claim up to ``limit`` due deliveries, oldest due first.

    ``room`` says how many more deliveries some webhooks can take now (0: none; their rows are
    skipped); any other webhook takes up to ``per_webhook`` (default: ``limit``).
    """
    room = room or {}
    full = [webhook for webhook, free in room.items() if free <= 0]
    open_ = [(webhook, free) for webhook, free in room.items() if free > 0]
    rows = await conn.fetch(
        _CLAIM,
        limit,
        lease,
        full,
        limit * _OVERFETCH,
        [webhook for webhook, _ in open_],
        [free for _, free in open_],
        per_webhook or limit,
    )
    return [ClaimedDelivery(**dict(row)) for row in rows]


async def reschedule(conn: Connection, claimed: ClaimedDelivery, delay: timedelta) -> bool:
    """Put the delivery back, due after ``delay``, without counting an attempt."""
    status = await conn.execute(
        """
        UPDATE webhook_deliveries SET next_attempt_at = now() + $3::interval
        WHERE id = $1 AND status = 'pending' AND next_attempt_at = $2
        """,
        claimed.id,
        claimed.lease,
        delay,
    )
    return status == "UPDATE 1"


async def cancel(conn: Connection, claimed: ClaimedDelivery, reason: str) -> bool:
    status = await conn.execute(
        """
        UPDATE webhook_deliveries SET status = 'cancelled', last_error = $3, updated_at = now()
        WHERE id = $1 AND status = 'pending' AND next_attempt_at = $2
        """,
        claimed.id,
        claimed.lease,
        reason,
    )
    return status == "UPDATE 1"


async def record_success(conn: Connection, claimed: ClaimedDelivery, attempt: Attempt) -> bool:
    """Mark the delivery succeeded and the endpoint healthy again (in one transaction)."""
    async with conn.transaction():
        status = await conn.execute(
            """
            UPDATE webhook_deliveries SET
                status = 'succeeded', attempts = attempts + 1, last_status_code = $3,
                last_error = NULL, last_latency_ms = $4, updated_at = now()
            WHERE id = $1 AND status = 'pending' AND next_attempt_at = $2
            """,
            claimed.id,
            claimed.lease,
            attempt.status_code,
            attempt.latency_ms,
        )
        if status != "UPDATE 1":
            return False
        await conn.execute(
            """
            UPDATE webhooks SET consecutive_failures = 0, failing_since = NULL
            WHERE id = $1 AND (consecutive_failures <> 0 OR failing_since IS NOT NULL)
            """,
            claimed.webhook_id,
        )
    return True


@dataclass(frozen=True, slots=True)
class DisablePolicy:
    after_consecutive_dead: int
    after_failing: timedelta


class Recorded(enum.Enum):
    """What recording a failed attempt did; false when the lease was lost (nothing recorded)."""

    LEASE_LOST = "lease lost"
    RECORDED = "recorded"
    #: Recorded, and the endpoint disabled: ``webhook.disabled`` is in the outbox, committed.
    DISABLED = "disabled"

    def __bool__(self) -> bool:
        return self is not Recorded.LEASE_LOST


async def record_failure(
    conn: Connection,
    claimed: ClaimedDelivery,
    attempt: Attempt,
    *,
    retry_after: timedelta | None,
    counts_attempt: bool,
    policy: DisablePolicy,
) -> Recorded:
    """Record a failed attempt: due again after ``retry_after``, or dead when it is None.

    In the same transaction the endpoint's failure record grows, and when it has failed for too
    long the endpoint is disabled and ``webhook.disabled`` goes into the outbox.
    """
    async with conn.transaction():
        status = await conn.execute(
            """
            UPDATE webhook_deliveries SET
                status = CASE WHEN $6::interval IS NULL THEN 'dead' ELSE 'pending' END,
                attempts = attempts + $3, last_status_code = $4, last_error = $5,
                last_latency_ms = $7,
                next_attempt_at = coalesce(now() + $6::interval, next_attempt_at),
                updated_at = now()
            WHERE id = $1 AND status = 'pending' AND next_attempt_at = $2
            """,
            claimed.id,
            claimed.lease,
            1 if counts_attempt else 0,
            attempt.status_code,
            attempt.error,
            retry_after,
            attempt.latency_ms,
        )
        if status != "UPDATE 1":
            return Recorded.LEASE_LOST
        endpoint = await conn.fetchrow(
            """
            UPDATE webhooks SET
                consecutive_failures = consecutive_failures + $2,
                failing_since = coalesce(failing_since, now())
            WHERE id = $1 AND enabled
            RETURNING account_id, url, consecutive_failures,
                      failing_since <= now() - $3::interval AS failing_too_long
            """,
            claimed.webhook_id,
            1 if retry_after is None else 0,
            policy.after_failing,
        )
        reason = _disable_reason(endpoint, policy)
        if endpoint is None or reason is None:
            return Recorded.RECORDED
        await disable(conn, claimed.webhook_id, endpoint["account_id"], endpoint["url"], reason)
    return Recorded.DISABLED


def origin_of(url: str) -> str:
    """``scheme://host[:port]`` of a URL, without path, query or credentials."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    return f"{parts.scheme}://{host}" + (f":{parts.port}" if parts.port else "")


def _disable_reason(endpoint: asyncpg.Record | None, policy: DisablePolicy) -> str | None:
    if endpoint is None:
        return None
    if endpoint["consecutive_failures"] >= policy.after_consecutive_dead:
        return f"{endpoint['consecutive_failures']} deliveries in a row failed every attempt"
    if endpoint["failing_too_long"]:
        return f"every attempt failed for more than {_duration(policy.after_failing)}"
    return None


def _duration(span: timedelta) -> str:
    seconds = span.total_seconds()
    for unit, size in (("day", 86400), ("hour", 3600), ("minute", 60)):
        if seconds >= size:
            return f"{seconds / size:g} {unit}s" if seconds != size else f"1 {unit}"
    return f"{seconds:g} seconds" if seconds != 1 else "1 second"


async def disable(
    conn: Connection, webhook_id: uuid.UUID, account_id: uuid.UUID, url: str, reason: str
) -> None:
    """Inside a transaction: disable the endpoint, cancel what it still had pending, and announce
    it with ``webhook.disabled`` (published by the outbox relay once this commits)."""
    await conn.execute(
        "UPDATE webhooks SET enabled = false, disabled_reason = $2, updated_at = now() "
        "WHERE id = $1",
        webhook_id,
        reason,
    )
    await conn.execute(
        """
        UPDATE webhook_deliveries
        SET status = 'cancelled', last_error = 'the webhook was disabled', updated_at = now()
        WHERE webhook_id = $1 AND status = 'pending'
        """,
        webhook_id,
    )
    event = EventEnvelope.wrap(
        WebhookDisabled(account_id=account_id, origin=origin_of(url), reason=reason),
        aggregate_id=webhook_id,
        # Webhooks carry no version; consumers order their events by occurred_at.
        aggregate_version=1,
    )
    await enqueue_event(conn, event, current_trace_headers())
