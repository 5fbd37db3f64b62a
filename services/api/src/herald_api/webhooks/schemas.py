"""Request and response bodies of the webhooks API, with their limits.

The URL's shape is checked here only for length; whether it may be called (scheme, credentials,
private addresses) depends on the deployment's settings and is checked by the route.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, Field

from herald_api.paging.pages import NextCursor
from herald_api.validators import NO_NUL_PATTERN, PartialUpdate, StrictBody, no_nul, unique
from herald_shared.events import EVENT_TYPES
from herald_shared.webhooks.matching import MAX_PATTERNS, check_pattern
from herald_shared.webhooks.ssrf import MAX_URL_CHARS

MAX_DESCRIPTION_CHARS = 500

DeliveryStatus = Literal["pending", "succeeded", "dead", "cancelled"]


def _known_pattern(pattern: str) -> str:
    return check_pattern(pattern)


def subscribable_patterns() -> list[str]:
    """Every pattern ``check_pattern`` accepts: ``*``, each event type, and each prefix of one
    (ending at a dot) followed by ``.*``; the enum of the OpenAPI document."""
    patterns = {"*", *EVENT_TYPES}
    for event_type in EVENT_TYPES:
        segments = event_type.split(".")
        patterns.update(".".join(segments[:i]) + ".*" for i in range(1, len(segments)))
    return sorted(patterns)


Url = Annotated[
    str,
    Field(
        min_length=1,
        max_length=MAX_URL_CHARS,
        examples=["https://example.com/hooks/herald"],
        json_schema_extra={"pattern": NO_NUL_PATTERN},
    ),
    AfterValidator(no_nul),
]
EventPattern = Annotated[
    str,
    Field(max_length=100, json_schema_extra={"enum": subscribable_patterns()}),
    AfterValidator(_known_pattern),
]
EventPatterns = Annotated[
    list[EventPattern],
    Field(
        min_length=1,
        max_length=MAX_PATTERNS,
        description="Event types to receive: exact (`post.created`), `post.*`, or `*` for all.",
        examples=[["post.*"]],
        json_schema_extra={"uniqueItems": True},
    ),
    AfterValidator(unique("event types")),
]
Description = Annotated[
    str,
    Field(
        max_length=MAX_DESCRIPTION_CHARS,
        examples=["Search indexer"],
        json_schema_extra={"pattern": NO_NUL_PATTERN},
    ),
    AfterValidator(no_nul),
]


class WebhookCreate(StrictBody):
    url: Url
    event_types: EventPatterns
    description: Description = ""


class WebhookPatch(PartialUpdate):
    url: Url | None = None
    event_types: EventPatterns | None = None
    description: Description | None = None
    enabled: bool | None = Field(
        default=None,
        description="`true` re-enables a disabled webhook and clears its failure record.",
    )


class WebhookOut(BaseModel):
    id: uuid.UUID
    url: str
    event_types: list[str]
    description: str
    enabled: bool
    disabled_reason: str | None = Field(
        description="Why Herald disabled the webhook; null when enabled or disabled by its owner."
    )
    consecutive_failures: int = Field(description="Deliveries that died since the last success.")
    failing_since: datetime | None = Field(
        description="The first failed attempt since the last success; null when healthy."
    )
    created_at: datetime
    updated_at: datetime


class WebhookCreated(WebhookOut):
    secret: str = Field(
        description=(
            "The signing secret (Standard Webhooks, `whsec_…`). Shown only in this response: "
            "store it now; rotate it to get a new one."
        ),
        examples=["whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"],
    )


class WebhookSecret(BaseModel):
    id: uuid.UUID
    secret: str = Field(
        description="The new signing secret, shown only in this response. Every attempt from "
        "now on is signed with it."
    )
    previous_secret_expires_at: datetime | None = Field(
        description=(
            "Until then every attempt is also signed with the previous secret (one more "
            "signature in `webhook-signature`), so the receiver can switch without refusing "
            "any; null when the previous secret stopped signing at once."
        )
    )


class WebhookPage(BaseModel):
    items: list[WebhookOut]
    next_cursor: NextCursor


class DeliveryOut(BaseModel):
    id: uuid.UUID = Field(description="Also the `webhook-id` header of every attempt.")
    event_id: uuid.UUID
    event_type: str
    status: DeliveryStatus
    attempts: int
    last_status_code: int | None = Field(description="The HTTP status of the last attempt.")
    last_error: str | None = Field(description="What went wrong in the last attempt.")
    last_latency_ms: int | None
    next_attempt_at: datetime | None = Field(
        description="When the next attempt is due (pending deliveries only)."
    )
    created_at: datetime
    updated_at: datetime


class DeliveryPage(BaseModel):
    items: list[DeliveryOut]
    next_cursor: NextCursor
