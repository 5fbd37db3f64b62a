"""``/v1/search``: full-text search over published posts and the caller's own drafts."""

from __future__ import annotations

import re
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
from herald_api.validators import NOT_BLANK_PATTERN

router = APIRouter(prefix="/v1/search", tags=["search"])

MAX_QUERY_CHARS = 256
_QUERY_RE = re.compile(NOT_BLANK_PATTERN)


def _checked(q: str | None) -> str:
    """The words of ``q``; 400 unless it is 1 to 256 characters, without NUL, not all blank
    (the rule the OpenAPI document states for ``q``)."""
    if q is None or not q.strip():
        raise Problem(400, "Give the words to search for in `q`.", type_="invalid-search")
    if len(q) > MAX_QUERY_CHARS or _QUERY_RE.fullmatch(q) is None:
        raise Problem(
            400,
            f"`q` must be at most {MAX_QUERY_CHARS} characters, without NUL.",
            type_="invalid-search",
        )
    return q.strip()


@router.get(
    "",
    response_model=PostPage,
    operation_id="search_posts",
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
    q: Annotated[
        str | None,
        Query(
            description="What to search for (required).",
            json_schema_extra={
                "minLength": 1,
                "maxLength": MAX_QUERY_CHARS,
                "pattern": NOT_BLANK_PATTERN,
                "x-required": True,
            },
        ),
    ] = None,
) -> Response:
    text = _checked(q)
    pager = Pager(state.cursors, fingerprint_of(params, "search", text), params.limit, ranked=True)
    query = visible_query(principal, params, pager.start(params.cursor))
    rows: list[asyncpg.Record] = []
    if query is not None:
        async with reader_for(state, principal.account_id) as conn:
            rows = await search_posts(conn, text, query)
    return pager.response(PostPage, rows)
