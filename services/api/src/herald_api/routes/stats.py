"""``/v1/stats``: the caller's account counters, kept by the worker from post events."""

from __future__ import annotations

from fastapi import APIRouter

from herald_api.access.principals import ReadPrincipal
from herald_api.http.problems import problem_responses
from herald_api.lifespan import StateDep
from herald_api.stats.repository import fetch_account_stats
from herald_api.stats.schemas import AccountStats

router = APIRouter(prefix="/v1/stats", tags=["stats"])


@router.get(
    "",
    response_model=AccountStats,
    operation_id="get_account_stats",
    summary="The caller's account statistics",
    description="Eventually consistent: updated by the worker shortly after each change.",
    responses=problem_responses(401, 429, 503),
)
async def account_stats(state: StateDep, principal: ReadPrincipal) -> AccountStats:
    async with state.db.reader() as conn:
        row = await fetch_account_stats(conn, principal.account_id)
    drafts, published, words = (row[0], row[1], row[2]) if row else (0, 0, 0)
    return AccountStats(
        account_id=principal.account_id,
        draft_posts=drafts,
        published_posts=published,
        total_posts=drafts + published,
        total_words=words,
        updated_at=row["updated_at"] if row else None,
    )
