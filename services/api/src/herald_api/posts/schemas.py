"""Request and response bodies of the posts API, with their limits."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, Field

from herald_api.paging.pages import NextCursor
from herald_api.validators import (
    NO_NUL_PATTERN,
    NOT_BLANK_PATTERN,
    PartialUpdate,
    StrictBody,
    no_nul,
    not_blank,
    unique,
)

MAX_TITLE_CHARS = 200
MAX_BODY_CHARS = 100_000
MAX_TAGS = 10
TAG_PATTERN = r"^[a-z0-9-]{1,32}$"

Status = Literal["draft", "published"]


Title = Annotated[
    str,
    Field(
        min_length=1,
        max_length=MAX_TITLE_CHARS,
        examples=["Hello, Herald"],
        json_schema_extra={"pattern": NOT_BLANK_PATTERN},
    ),
    AfterValidator(no_nul),
    AfterValidator(not_blank),
]
Body = Annotated[
    str,
    Field(
        max_length=MAX_BODY_CHARS,
        examples=["The first post."],
        json_schema_extra={"pattern": NO_NUL_PATTERN},
    ),
    AfterValidator(no_nul),
]
Tag = Annotated[str, Field(pattern=TAG_PATTERN)]
Tags = Annotated[
    list[Tag],
    Field(
        max_length=MAX_TAGS, examples=[["intro", "news"]], json_schema_extra={"uniqueItems": True}
    ),
    AfterValidator(unique("tags")),
]


class PostCreate(StrictBody):
    title: Title
    body: Body
    tags: Tags = []
    status: Status = "draft"


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
    next_cursor: NextCursor
