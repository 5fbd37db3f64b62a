"""``/v1/stats``: the caller's account counters, kept by the worker from post events."""

from __future__ import annotations

import uuid
from datetime import datetime

from fastapi import APIRouter
from pydantic import BaseModel, Field

from herald_api.dependencies import ReadPrincipal
from herald_api.lifespan import StateDep
from herald_api.problems import problem_responses

router = APIRouter(prefix="/v1/stats", tags=["stats"])


class AccountStats(BaseModel):
    account_id: uuid.UUID
    draft_posts: int
    published_posts: int
    total_posts: int
    total_words: int = Field(description="Words in the bodies of the account's posts.")
    updated_at: datetime | None = Field(
        description="When the worker last applied an event; null before the first post."
    )


@router.get(
    "",
    response_model=AccountStats,
    summary="The caller's account statistics",
    description="Eventually consistent: updated by the worker shortly after each change.",
    responses=problem_responses(401, 429, 503),
)
async def account_stats(state: StateDep, principal: ReadPrincipal) -> AccountStats:
    async with state.db.reader() as conn:
        row = await conn.fetchrow(
            "SELECT draft_posts, published_posts, total_words, updated_at "
            "FROM account_stats WHERE account_id = $1",
            principal.account_id,
        )
    drafts, published, words = (row[0], row[1], row[2]) if row else (0, 0, 0)
    return AccountStats(
        account_id=principal.account_id,
        draft_posts=drafts,
        published_posts=published,
        total_posts=drafts + published,
        total_words=words,
        updated_at=row["updated_at"] if row else None,
    )
