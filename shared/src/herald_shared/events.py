"""The events Herald publishes: one envelope, small typed payloads, past-tense dotted types.

Events are the contract between services. Consumers ignore fields they do not know, so
adding an optional field is safe; anything else needs a new ``schema_version``, and the old
version keeps a decoder in ``RETIRED_DECODERS`` for as long as such events may still be in flight.
The committed JSON Schemas under ``event_schemas/`` record each version (see ``event_schemas.py``).
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field


class EventData(BaseModel):
    """Base of every payload model."""

    model_config = ConfigDict(frozen=True, extra="ignore")
    type: ClassVar[str]
    schema_version: ClassVar[int] = 1


class PostSnapshot(EventData):
    """What consumers of post events need without re-reading the post."""

    author_id: uuid.UUID
    status: Literal["draft", "published"]
    title: str
    tags: list[str]
    published_at: datetime | None = None


class PostCreated(PostSnapshot):
    type: ClassVar[str] = "post.created"


class PostUpdated(PostSnapshot):
    type: ClassVar[str] = "post.updated"
    previous_status: Literal["draft", "published"]


class PostDeleted(EventData):
    type: ClassVar[str] = "post.deleted"
    author_id: uuid.UUID
    status: Literal["draft", "published"]


#: The current model of every event type: what producers write today.
class PostEnriched(EventData):
    """The worker computed a post's derived fields (excerpt, counts, search vector)."""

    type: ClassVar[str] = "post.enriched"
    author_id: uuid.UUID
    status: Literal["draft", "published"]
    word_count: int
    reading_time_seconds: int


class WebhookDisabled(EventData):
    """A webhook was disabled after failing for too long; re-enable it with an update."""

    type: ClassVar[str] = "webhook.disabled"
    account_id: uuid.UUID
    #: scheme://host:port only: a URL's path and query often hold the receiver's own secret.
    origin: str
    reason: str


EVENT_TYPES: dict[str, type[EventData]] = {
    model.type: model
    for model in (PostCreated, PostUpdated, PostDeleted, PostEnriched, WebhookDisabled)
}

#: Decoders of retired schema versions, keyed by (type, schema_version). When a payload changes
#: incompatibly, keep the old model here (its ``schema_version`` left at the old number) and
#: raise the current model's ``schema_version``.
RETIRED_DECODERS: dict[tuple[str, int], type[EventData]] = {}


def decoder_for(event_type: str, schema_version: int) -> type[EventData]:
    """The model that decodes this version of this type; KeyError when none does."""
    current = EVENT_TYPES.get(event_type)
    if current is not None and current.schema_version == schema_version:
        return current
    return RETIRED_DECODERS[(event_type, schema_version)]


class EventEnvelope(BaseModel):
    """The wire format of every event; ``type`` doubles as the routing key."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    id: uuid.UUID = Field(default_factory=uuid.uuid4)
    type: str
    schema_version: int = 1
    occurred_at: datetime = Field(default_factory=lambda: datetime.now(UTC))
    aggregate_id: uuid.UUID
    aggregate_version: int
    data: dict[str, Any]

    @classmethod
    def wrap(
        cls,
        data: EventData,
        *,
        aggregate_id: uuid.UUID,
        aggregate_version: int,
        occurred_at: datetime | None = None,
    ) -> EventEnvelope:
        return cls(
            type=data.type,
            schema_version=data.schema_version,
            occurred_at=occurred_at or datetime.now(UTC),
            aggregate_id=aggregate_id,
            aggregate_version=aggregate_version,
            data=data.model_dump(mode="json"),
        )

    def payload(self) -> EventData:
        """The typed payload, decoded by the model of its (type, schema_version).

        Raises KeyError for an unknown type or version, ValidationError if malformed.
        """
        return decoder_for(self.type, self.schema_version).model_validate(self.data)
