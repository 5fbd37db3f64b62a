"""Creating a post as one statement: the post, its ``post.created`` event in the outbox and,
with an ``Idempotency-Key``, the key's record with the response to replay.

Everything the response and the event carry is known before the statement runs: the id is made
here, a new post's version is 1, its enrichment is still to come, and its timestamps are the
API's clock (as the event's ``occurred_at`` already was) rather than the database's ``now()``;
the outbox row is stamped with the same time.
So the response can be stored by the same statement that inserts the post, and the whole create
is one round trip (see docs/decisions/0042-one-statement-create.md).
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from herald_api.http.preconditions import etag_for
from herald_api.idempotency import GatedWrite, StoredResponse
from herald_api.posts.schemas import PostCreate, PostOut
from herald_shared.events import EventEnvelope, PostCreated

_INSERT_POST_AND_EVENT = """
    new_post AS (
        INSERT INTO posts
            (id, author_id, title, body, tags, status, version, created_at, updated_at,
             published_at)
        SELECT {id}::uuid, {author_id}::uuid, {title}::text, {body}::text, {tags}::text[],
               {status}::text, 1, {now}::timestamptz, {now}::timestamptz,
               {published_at}::timestamptz
        FROM claimed_key
        RETURNING id
    ),
    new_event AS (
        INSERT INTO outbox
            (event_id, event_type, aggregate_id, aggregate_version, payload, headers, created_at)
        SELECT {event_id}::uuid, {event_type}::text, new_post.id, 1, {event}::jsonb,
               {trace_headers}::jsonb, {now}::timestamptz
        FROM new_post
    )"""


def new_post_row(
    author_id: uuid.UUID, payload: PostCreate, now: datetime, post_id: uuid.UUID
) -> dict[str, Any]:
    """The row the insert stores, every column of ``PostOut``."""
    return {
        "id": post_id,
        "author_id": author_id,
        "title": payload.title,
        "body": payload.body,
        "tags": list(payload.tags),
        "status": payload.status,
        "version": 1,
        "created_at": now,
        "updated_at": now,
        "published_at": now if payload.status == "published" else None,
        "excerpt": None,
        "word_count": None,
        "reading_time_seconds": None,
        "enriched_at": None,
        "enriched_version": None,
    }


def post_creation(
    author_id: uuid.UUID,
    payload: PostCreate,
    *,
    location_prefix: str,
    trace_headers: Mapping[str, str],
    now: datetime | None = None,
) -> GatedWrite[dict[str, Any]]:
    """The create as CTEs for ``create_in_one_statement``; its value is the new row."""
    now = now or datetime.now(UTC)
    row = new_post_row(author_id, payload, now, uuid.uuid4())
    event = EventEnvelope.wrap(
        PostCreated.model_validate(
            {name: row[name] for name in ("author_id", "status", "title", "tags", "published_at")}
        ),
        aggregate_id=row["id"],
        aggregate_version=1,
        occurred_at=now,
    )
    headers = {"Location": f"{location_prefix}/{row['id']}", "ETag": etag_for(1)}
    body = PostOut.model_validate(row).model_dump_json().encode()
    return GatedWrite(
        _INSERT_POST_AND_EVENT,
        {
            "id": row["id"],
            "author_id": author_id,
            "title": row["title"],
            "body": row["body"],
            "tags": row["tags"],
            "status": row["status"],
            "now": now,
            "published_at": row["published_at"],
            "event_id": event.id,
            "event_type": event.type,
            "event": event.model_dump_json(),
            "trace_headers": json.dumps(dict(trace_headers)),
        },
        row,
        StoredResponse(201, body, headers),
    )
