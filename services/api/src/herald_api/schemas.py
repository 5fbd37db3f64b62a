"""Request and response bodies of the posts API, with their limits."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Literal, Self

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator

MAX_TITLE_CHARS = 200
MAX_BODY_CHARS = 100_000
MAX_TAGS = 10
TAG_PATTERN = r"^[a-z0-9-]{1,32}$"

Status = Literal["draft", "published"]


def _no_nul(value: str) -> str:
    # PostgreSQL text cannot hold NUL; refuse it here rather than fail in the database.
    if "\x00" in value:
        raise ValueError("must not contain NUL characters")
    return value


def _not_blank(value: str) -> str:
    if not value.strip():
        raise ValueError("must not be blank")
    return value


def _unique(tags: list[str]) -> list[str]:
    if len(set(tags)) != len(tags):
        raise ValueError("tags must be unique")
    return tags


Title = Annotated[
    str,
    Field(min_length=1, max_length=MAX_TITLE_CHARS, examples=["Hello, Herald"]),
    AfterValidator(_no_nul),
    AfterValidator(_not_blank),
]
Body = Annotated[
    str,
    Field(max_length=MAX_BODY_CHARS, examples=["The first post."]),
    AfterValidator(_no_nul),
]
Tag = Annotated[str, Field(pattern=TAG_PATTERN)]
Tags = Annotated[
    list[Tag], Field(max_length=MAX_TAGS, examples=[["intro", "news"]]), AfterValidator(_unique)
]


class PostCreate(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    title: Title
    body: Body
    tags: Tags = []
    status: Status = "draft"


class PartialUpdate(BaseModel):
    """A PATCH body: only the fields present change; ``null`` is not a value."""

    model_config = ConfigDict(extra="forbid", strict=True)

    @model_validator(mode="after")
    def _check_fields(self) -> Self:
        if not self.model_fields_set:
            raise ValueError("at least one field must be given")
        for name in self.model_fields_set:
            if getattr(self, name) is None:
                raise ValueError(f"{name} must not be null")
        return self


class PostPatch(PartialUpdate):
    title: Title | None = None
    body: Body | None = None
    tags: Tags | None = None
    status: Status | None = None


class PostOut(BaseModel):
    id: uuid.UUID
    author_id: uuid.UUID
    title: str
    body: str
    tags: list[str]
    status: Status
    version: int = Field(
        description="Increases by one with every change; the ETag is built from it."
    )
    created_at: datetime
    updated_at: datetime
    published_at: datetime | None
    excerpt: str | None = Field(description="Set by the worker after each change; null until then.")
    word_count: int | None
    reading_time_seconds: int | None
    enriched_at: datetime | None
    enriched_version: int | None = Field(
        description="The version the enriched fields were computed from."
    )


class PostPage(BaseModel):
    items: list[PostOut]
    next_cursor: str | None = Field(
        description="Pass as `cursor` to get the next page; null on the last page."
    )
