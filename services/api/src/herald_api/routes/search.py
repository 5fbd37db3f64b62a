"""``/v1/search``: full-text search over published posts and the caller's own drafts."""

from __future__ import annotations

from typing import Annotated

import asyncpg
from fastapi import APIRouter, Query
from fastapi.responses import Response

from herald_api.access.principals import ReadPrincipal
from herald_api.http.problems import Problem, problem_responses
from herald_api.lifespan import StateDep
from herald_api.paging.pages import Pager
from herald_api.posts.listing import PageParamsDep, fingerprint_of, visible_query
from herald_api.posts.repository import search_posts
from herald_api.posts.schemas import PostPage
from herald_api.replica import reader_for

router = APIRouter(prefix="/v1/search", tags=["search"])

MAX_QUERY_CHARS = 256


def _checked(q: str | None) -> str:
    text = (q or "").strip()
    if not text:
        raise Problem(400, "Give the words to search for in `q`.", type_="invalid-search")
    if len(text) > MAX_QUERY_CHARS or "\x00" in text:
        raise Problem(
            400,
            f"`q` must be at most {MAX_QUERY_CHARS} characters, without NUL.",
            type_="invalid-search",
        )
    return text


@router.get(
    "",
    response_model=PostPage,
    summary="Search posts, best match first",
    description=(
        'Web-search syntax: words, `"quoted phrases"`, `or`, `-excluded`. Title matches weigh '
        "more than tags, tags more than the body. Same filters and cursor pagination as the list."
    ),
    responses=problem_responses(400, 401, 422, 429, 503),
)
async def search(
    state: StateDep,
    principal: ReadPrincipal,
    params: PageParamsDep,
    q: Annotated[str | None, Query(description="What to search for.")] = None,
) -> Response:
    text = _checked(q)
    pager = Pager(state.cursors, fingerprint_of(params, "search", text), params.limit, ranked=True)
    query = visible_query(principal, params, pager.start(params.cursor))
    rows: list[asyncpg.Record] = []
    if query is not None:
        async with reader_for(state, principal.account_id) as conn:
            rows = await search_posts(conn, text, query)
    return pager.response(PostPage, rows)
