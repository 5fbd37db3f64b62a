"""The response body of ``/v1/stats``."""

from __future__ import annotations

import uuid
from datetime import datetime

from pydantic import BaseModel, Field


class AccountStats(BaseModel):
    account_id: uuid.UUID
    draft_posts: int
    published_posts: int
    total_posts: int
    total_words: int = Field(description="Words in the bodies of the account's posts.")
    updated_at: datetime | None = Field(
        description="When the worker last applied an event; null before the first post."
    )
